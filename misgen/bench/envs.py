"""``misgen bench envs``: environment throughput, misgen envs beside raw procgen and MiniGrid.

Every registered env whose backend is importable is stepped with uniformly random actions at batch
sizes 1, 16 and 256, in this process, one after the other, together with two references measured
the same way: procgen's CoinRun through its own batched ``ProcgenGym3Env`` (only where procgen is
installed; imported lazily) and a MiniGrid env of similar size (``MiniGrid-DoorKey-8x8-v0``, image
observations) in a Gymnasium ``SyncVectorEnv``. Reported per measurement:

* ``steps_per_s``: env steps (batch x iterations) per wall-clock second;
* ``steps_per_cpu_s``: env steps per second of CPU time of this process, all threads included.
  This is the per-core figure: it does not flatter a backend that runs worker threads (procgen
  may) and is less sensitive to other jobs sharing the machine than wall-clock time.

Ratios compare each misgen env at batch 256 with each reference's *best* per-core figure over the
batch sizes, so they are conservative. Timed targets live here, never in unit tests.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from misgen.errors import MisgenError

BATCH_SIZES = (1, 16, 256)
TARGET_BATCH = 256
PROCGEN_REF = "procgen:coinrun"
MINIGRID_ID = "MiniGrid-DoorKey-8x8-v0"
MINIGRID_REF = f"minigrid:{MINIGRID_ID}"


@dataclass(frozen=True)
class Measurement:
    """One (env, batch size) timing."""

    env: str
    source: str  # "misgen" or "reference"
    backend: str
    batch: int
    steps: int
    wall_s: float
    cpu_s: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / max(self.wall_s, 1e-9)

    @property
    def steps_per_cpu_s(self) -> float:
        return self.steps / max(self.cpu_s, 1e-9)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "steps_per_s": self.steps_per_s, "steps_per_cpu_s": self.steps_per_cpu_s}


def time_steps(
    step: Callable[[int], None], batch: int, seconds: float, min_iters: int = 3, warmup: int = 2
) -> tuple[int, float, float]:
    """Call ``step(i)`` until ``seconds`` of wall time have passed; (env steps, wall s, CPU s)."""
    for i in range(warmup):
        step(i)
    iters = 0
    w0, c0 = time.perf_counter(), time.process_time()
    while iters < min_iters or time.perf_counter() - w0 < seconds:
        step(iters)
        iters += 1
    return iters * batch, time.perf_counter() - w0, time.process_time() - c0


def bench_misgen_env(env_id: str, batch: int, seconds: float, seed: int = 0) -> Measurement:
    """Throughput of a registered env's batched ``train`` env under random actions (autoreset on)."""
    from misgen.environments import get_env

    spec = get_env(env_id)
    env = spec.make("train", batch, seed)
    try:
        env.reset(seed=seed)
        n_actions = int(env.single_action_space.n)
        actions = np.random.default_rng(seed).integers(0, n_actions, size=(64, batch))
        steps, wall, cpu = time_steps(lambda i: env.step(actions[i % 64]), batch, seconds)
    finally:
        env.close()
    return Measurement(env_id, "misgen", spec.backend, batch, steps, wall, cpu)


def bench_procgen(batch: int, seconds: float, seed: int = 0) -> Measurement:
    """Raw procgen CoinRun (``ProcgenGym3Env``, easy mode) stepped with random actions."""
    from procgen import ProcgenGym3Env

    env = ProcgenGym3Env(num=batch, env_name="coinrun", distribution_mode="easy", rand_seed=seed)
    actions = np.random.default_rng(seed).integers(0, 15, size=(64, batch)).astype(np.int32)

    def step(i: int) -> None:
        env.act(actions[i % 64])
        env.observe()

    steps, wall, cpu = time_steps(step, batch, seconds)
    return Measurement(PROCGEN_REF, "reference", "procgen", batch, steps, wall, cpu)


def bench_minigrid(batch: int, seconds: float, seed: int = 0) -> Measurement:
    """A raw MiniGrid env (image observations) in a Gymnasium ``SyncVectorEnv``."""
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the MiniGrid ids)
    from minigrid.wrappers import ImgObsWrapper

    env = gym.vector.SyncVectorEnv([lambda: ImgObsWrapper(gym.make(MINIGRID_ID)) for _ in range(batch)])
    try:
        env.reset(seed=seed)
        actions = np.random.default_rng(seed).integers(0, int(env.single_action_space.n), size=(64, batch))
        steps, wall, cpu = time_steps(lambda i: env.step(actions[i % 64]), batch, seconds)
    finally:
        env.close()
    return Measurement(MINIGRID_REF, "reference", "minigrid", batch, steps, wall, cpu)


def _available_references() -> tuple[dict[str, Callable[[int, float], Measurement]], dict[str, str]]:
    import importlib.util

    refs: dict[str, Callable[[int, float], Measurement]] = {}
    skipped: dict[str, str] = {}
    if importlib.util.find_spec("procgen") is not None:
        refs[PROCGEN_REF] = bench_procgen
    else:
        skipped[PROCGEN_REF] = "procgen is not installed (pip install 'misgen[procgen]')"
    if importlib.util.find_spec("minigrid") is not None:
        refs[MINIGRID_REF] = bench_minigrid
    else:
        skipped[MINIGRID_REF] = "minigrid is not installed"
    return refs, skipped


def ratios(results: list[Measurement]) -> list[dict[str, Any]]:
    """Per-core speed of each misgen env at batch 256 over each reference's best per-core figure."""
    best_ref: dict[str, float] = {}
    for m in results:
        if m.source == "reference":
            best_ref[m.env] = max(best_ref.get(m.env, 0.0), m.steps_per_cpu_s)
    out = []
    for m in results:
        if m.source == "misgen" and m.batch == TARGET_BATCH:
            for ref, value in best_ref.items():
                out.append({"env": m.env, "reference": ref, "ratio_per_core": m.steps_per_cpu_s / value})
    return out


def run_env_bench(
    out: Path,
    seconds: float,
    env_ids: list[str],
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    console: Console | None = None,
) -> dict[str, Any]:
    """Measure, print rich tables to ``console``, write the JSON to ``out`` and return it."""
    from rich.markup import escape
    from rich.table import Table

    from misgen.environments import ENVS, get_env
    from misgen.progress import console as default_console
    from misgen.provenance import package_versions

    console = console or default_console
    from misgen.runstore import atomic_write_json

    if seconds <= 0:
        raise MisgenError(f"--seconds must be > 0, got {seconds}")
    skipped: dict[str, str] = {}
    if env_ids:
        specs = [get_env(e) for e in env_ids]
        for spec in specs:
            if not spec.available():
                raise MisgenError(f"env {spec.id!r} needs {', '.join(spec.requires)}, which is not installed")
    else:
        every = [spec for _, spec in ENVS.items()]
        specs = [s for s in every if s.available()]
        skipped.update({s.id: f"needs {', '.join(s.requires)}" for s in every if not s.available()})
    refs, ref_skipped = _available_references()
    skipped.update(ref_skipped)

    jobs: list[tuple[str, Callable[[int, float], Measurement]]] = [
        (s.id, partial(bench_misgen_env, s.id)) for s in specs
    ]
    jobs += list(refs.items())
    results: list[Measurement] = []
    with console.status("benchmarking envs") as status:
        for name, run in jobs:
            for batch in batch_sizes:
                status.update(f"benchmarking {name} at batch {batch}")
                results.append(run(batch, seconds))

    table = Table(title=f"env steps/s ({seconds:g} s per cell; per core = per CPU-second of this process)")
    for col in ("env", "source", "batch", "steps/s (wall)", "steps/s per core"):
        table.add_column(col, justify="right" if col.startswith(("batch", "steps")) else "left")
    for m in results:
        table.add_row(m.env, m.source, str(m.batch), f"{m.steps_per_s:,.0f}", f"{m.steps_per_cpu_s:,.0f}")
    console.print(table)
    rows = ratios(results)
    if rows:
        rt = Table(title=f"misgen env at batch {TARGET_BATCH} / best reference, per core (target >= 10x)")
        for col in ("env", "reference", "ratio"):
            rt.add_column(col)
        for r in rows:
            rt.add_row(r["env"], r["reference"], f"{r['ratio_per_core']:.1f}x")
        console.print(rt)
    for name, why in skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {escape(why)}")

    record = {
        "seconds": seconds,
        "batch_sizes": list(batch_sizes),
        "machine": {
            "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": package_versions(),
        "results": [m.as_json() for m in results],
        "ratios": rows,
        "skipped": skipped,
    }
    atomic_write_json(Path(out), record)
    console.print(f"wrote {out}")
    return record
