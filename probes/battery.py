"""The probe battery: collect a checkpoint's rollouts on every split once, run every probe, store it.

``run_battery(run, (step, path))`` loads the checkpoint, collects ``episodes`` episodes on each split
(``train``, ``test-iid``, ``test-shift``) through the run's rollout cache, runs every registered probe
that applies to the env and agent, and writes ``probes/step_N.json`` atomically::

    {"format": 1, "run": ..., "env": ..., "agent": ..., "step": N, "episodes": E,
     "seeds": {"root": ..., "rollouts": {split: seed}, "probes": ...},
     "rollouts": {split: {"file": "rollouts/step_N/<split>-eE-sS.npz", "cached": bool}},
     "probes": {name: {"name", "version", "metrics": {metric: Estimate JSON}, "higher_is_better",
                       "details", "n", "seconds"}},
     "skipped": {name: reason}, "errors": {name: message},
     "timing": {"load_s", "rollouts_s", "probes_s", "total_s", "cpu_s"}, "versions": ..., "git_commit": ...}

Seeds: the rollouts of split ``s`` use ``derive_seed(root, "probe", s)`` with ``root`` the run's seed
(or ``seed=``), so every checkpoint of a run is probed on the same levels (paired across training)
and a rerun reads the cache. A probe that raises is recorded under ``errors`` (with the other
probes' results kept) and reported; nothing is silently dropped.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console

from misgen.environments.spec import SPLIT_NAMES
from misgen.errors import MisgenError
from misgen.probes.base import PROBES, ProbeInput
from misgen.probes.rollout import cached_collect
from misgen.seeding import derive_seed

BATTERY_FORMAT = 1
COLLECT_BATCH = 256  # env slots per rollout chunk; part of the rollouts' identity (see cached_collect)


class _EpisodeCounter:
    """Turns ``collect``'s per-step "slots still running" callbacks into finished-episode counts."""

    def __init__(self, episodes: int, advance: Any) -> None:
        self.episodes = episodes
        self.finished = 0
        self.chunk_done = 0
        self.chunk_size = min(COLLECT_BATCH, episodes)
        self.prev_active = self.chunk_size
        self.advance = advance

    def __call__(self, active: int) -> None:
        if active > self.prev_active:  # a new chunk of env slots started
            self.chunk_done += self.chunk_size
            self.chunk_size = min(COLLECT_BATCH, self.episodes - self.chunk_done)
        finished = self.chunk_done + self.chunk_size - active
        if finished > self.finished:
            self.advance(finished - self.finished)
            self.finished = finished
        self.prev_active = active


def _resolve(run: Any, checkpoint: tuple[int, Path] | str | None) -> tuple[int, Path]:
    if isinstance(checkpoint, tuple):
        return int(checkpoint[0]), Path(checkpoint[1])
    found = run.resolve_checkpoint(checkpoint)
    if len(found) != 1:
        raise MisgenError(f"run_battery probes one checkpoint at a time; {checkpoint!r} names {len(found)}")
    return found[0]


def run_battery(
    run: Any,
    checkpoint: tuple[int, Path] | str | None = None,
    episodes: int = 200,
    seed: int | None = None,
    *,
    probes: Iterable[str] | None = None,
    console: Console | None = None,
    write: bool = True,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Probe one checkpoint of ``run`` and write ``probes/step_N.json``; returns the same dict.

    Args:
        run: a :class:`misgen.runstore.Run`.
        checkpoint: ``(step, path)`` or a name for ``run.resolve_checkpoint`` (``latest``, ``step_N``).
        episodes: episodes per split.
        seed: root seed of the rollouts and bootstraps (default: the run's seed).
        probes: names of the probes to run (default: all registered).
        console: where to draw progress bars; ``None`` draws nothing.
        write: write ``probes/step_N.json`` (tests may skip it).
        threads: torch and BLAS threads while probing (restored afterwards); ``None`` leaves them.
            Rollout and probe batches are small, and multi-threaded torch spins its threads against
            other work: on a busy 2-core machine a PPO battery took 214 s wall / 55 s CPU with the
            default threads and 20 s / 6 s with one.
    """
    if threads is None:
        return _run_battery(run, checkpoint, episodes, seed, probes, console, write)
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            return _run_battery(run, checkpoint, episodes, seed, probes, console, write)
    finally:
        torch.set_num_threads(before)


def _run_battery(
    run: Any,
    checkpoint: tuple[int, Path] | str | None,
    episodes: int,
    seed: int | None,
    probes: Iterable[str] | None,
    console: Console | None,
    write: bool,
) -> dict[str, Any]:
    from misgen.agents.checkpoint import load_agent
    from misgen.environments import get_env
    from misgen.progress import make_progress
    from misgen.provenance import git_commit, package_versions
    from misgen.runstore import atomic_write_json

    if episodes < 1:
        raise MisgenError(f"--episodes must be >= 1, got {episodes}")
    start, cpu_start = time.perf_counter(), time.process_time()
    step, path = _resolve(run, checkpoint)
    spec = get_env(run.env_id)
    wanted = list(probes) if probes is not None else PROBES.names()
    for name in wanted:
        PROBES.get(name)  # unknown names: one-line error with the valid choices
    root = run.seed if seed is None else int(seed)
    overrides = dict(run.config.get("env_overrides", {}))
    policy = load_agent(path)
    t_loaded = time.perf_counter()

    splits = [s for s in SPLIT_NAMES if s in spec.splits]
    rollout_seeds = {s: derive_seed(root, "probe", s) for s in splits}
    rollouts, files = {}, {}
    progress = make_progress("episodes", console) if console is not None else None
    if progress is not None:
        progress.start()
    try:
        for split in splits:
            counter = None
            if progress is not None:
                task = progress.add_task(f"rollouts {split}", total=episodes, status="")
                counter = _EpisodeCounter(episodes, lambda k, task=task: progress.advance(task, k))
            r, file, cached = cached_collect(
                run, step, policy, spec, split, episodes, rollout_seeds[split],
                overrides=overrides, on_step=counter, batch=COLLECT_BATCH,
            )  # fmt: skip
            if progress is not None:
                progress.update(task, completed=episodes, status="cached" if cached else "")
            rollouts[split] = r
            files[split] = {"file": str(file.relative_to(run.path)), "cached": cached}
    finally:
        if progress is not None:
            progress.stop()
    t_rollouts = time.perf_counter()

    probe_seed = derive_seed(root, "probe", "bootstrap")
    inp = ProbeInput(spec, rollouts, policy, seed=probe_seed, overrides=overrides)
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    status = console.status("probes") if console is not None else nullcontext()
    with status:
        for name in wanted:
            pdef = PROBES.get(name)
            if console is not None:
                status.update(f"probe {name}")
            t0 = time.perf_counter()
            if not pdef.applies(spec, has_policy=True):
                skipped[name] = f"not for env {spec.id}"
                continue
            try:
                result = pdef.run(inp)
            except Exception as err:  # noqa: BLE001 - one broken probe must not lose the others
                errors[name] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=-2)}"
                continue
            if result is None:
                skipped[name] = "not applicable to these rollouts or this agent"
                continue
            entry = result.to_json()
            entry["n"] = max((e.n for e in result.metrics.values()), default=0)
            entry["seconds"] = round(time.perf_counter() - t0, 3)
            results[name] = entry
    end = time.perf_counter()
    out = {
        "format": BATTERY_FORMAT,
        "run": run.name,
        "env": run.env_id,
        "agent": run.agent_name,
        "step": step,
        "checkpoint": str(Path(path).relative_to(run.path)) if Path(path).is_relative_to(run.path) else str(path),
        "episodes": episodes,
        "seeds": {"root": root, "rollouts": rollout_seeds, "probes": probe_seed},
        "rollouts": files,
        "probes": results,
        "skipped": skipped,
        "errors": errors,
        "timing": {
            "load_s": round(t_loaded - start, 3),
            "rollouts_s": round(t_rollouts - t_loaded, 3),
            "probes_s": round(end - t_rollouts, 3),
            "total_s": round(end - start, 3),
            "cpu_s": round(time.process_time() - cpu_start, 3),  # this process, all threads
        },
        "versions": package_versions(),
        "git_commit": git_commit(),
    }
    if write:
        atomic_write_json(run.probes_dir / f"step_{step}.json", out)
    return out
