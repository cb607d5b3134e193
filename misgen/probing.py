"""The probe harness: checkpoint in, ``probes/step_N.json`` out.

``run_battery(run, (step, path))`` loads the checkpoint, collects ``episodes`` episodes on each split
(``train``, ``test-iid``, ``test-shift``) through the run's rollout cache, collects the uniform-random
agent on the same levels (cached once per env, split, overrides and level set under the runs root's
``.chance/``), runs every registered probe that applies (:func:`misgen.probes.battery.run_probes`),
and writes ``probes/step_N.json`` atomically::

    {"format": 2, "run": ..., "env": ..., "agent": ..., "step": N, "episodes": E,
     "seeds": {"root": ..., "rollouts": {split: seed}, "probes": ...},
     "rollouts": {split: {"file": "rollouts/step_N/<split>-eE-sS.npz", "cached": bool}},
     "chance_rollouts": {split: {"file": <path>, "cached": bool}},
     "probes": {name: {"name", "version", "metrics": {metric: Estimate JSON},
                       "chance": {metric: Estimate JSON}, "higher_is_better", "details", "n", "seconds"}},
     "skipped": {name: reason}, "errors": {name: message},
     "timing": {"load_s", "rollouts_s", "probes_s", "total_s", "cpu_s"}, "versions": ..., "git_commit": ...}

``chance`` holds, for every metric the random agent also has, the same metric on its rollouts.
Seeds: the rollouts of split ``s`` use ``derive_seed(root, "probe", s)`` with ``root`` the run's seed
(or ``seed=``), so every checkpoint of a run is probed on the same levels (paired across training)
and a rerun reads the cache. Nothing is silently dropped: skipped probes carry their reasons.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from misgen.environments.spec import SPLIT_NAMES, EnvSpec
from misgen.errors import MisgenError
from misgen.probes.base import ProbeInput
from misgen.probes.battery import run_probes
from misgen.probes.rollout import (
    Rollouts,
    chance_agent,
    collect,
    collect_chance,
    load_rollouts,
    save_rollouts,
)
from misgen.probes.stats import MIN_N
from misgen.seeding import derive_seed

BATTERY_FORMAT = 2
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


def rollout_cache_path(rollouts_dir: Path, step: int, split: str, episodes: int, seed: int) -> Path:
    """Where :func:`cached_collect` keeps one split's rollouts of one checkpoint."""
    return Path(rollouts_dir) / f"step_{step}" / f"{split}-e{episodes}-s{seed}.npz"


def _read_cached(path: Path, spec: EnvSpec, split: str, seed: int, episodes: int) -> Rollouts:
    cached = load_rollouts(path)
    if (cached.env_id, cached.split, cached.seed, cached.episodes) != (spec.id, split, seed, episodes):
        raise MisgenError(
            f"cached rollouts {path} do not match env {spec.id!r}, split {split!r}, seed {seed}, {episodes} episodes"
        )
    return cached


def cached_collect(
    run: Any,
    step: int,
    policy: Any,
    spec: EnvSpec,
    split: str,
    episodes: int,
    seed: int,
    *,
    overrides: Mapping[str, Any] | None = None,
    on_step: Callable[[int], None] | None = None,
    batch: int = COLLECT_BATCH,
) -> tuple[Rollouts, Path, bool]:
    """:func:`~misgen.probes.rollout.collect` through the run's ``rollouts/`` cache.

    Rollouts of a checkpoint are a pure function of (checkpoint, split, episodes, seed, the run's env
    overrides), so a file keyed by those is reused instead of stepping the env again. A cached file
    whose env, split or seed disagree with the request is an error, not silently used. ``batch``
    is part of a rollout's identity (chunk ``k`` samples its levels from its own seed), so callers
    sharing a cache must use the same batch.

    Returns:
        (rollouts, path of the cache file, whether it was read from the cache).
    """
    path = rollout_cache_path(run.rollouts_dir, step, split, episodes, seed)
    if path.is_file():
        return _read_cached(path, spec, split, seed, episodes), path, True
    overrides = run.env_overrides if overrides is None else overrides
    rollouts = collect(policy, spec, split, episodes, seed, batch=batch, overrides=overrides, on_step=on_step)
    save_rollouts(rollouts, path)
    return rollouts, path, False


def chance_cache_path(
    root: Path, spec: EnvSpec, split: str, episodes: int, seed: int, overrides: Mapping[str, Any]
) -> Path:
    """Where the random agent's rollouts of one level set live (shared by every run that uses it)."""
    import hashlib

    key = hashlib.sha256(json.dumps(dict(overrides), sort_keys=True, default=str).encode()).hexdigest()[:10]
    return (
        Path(root)
        / ".chance"
        / spec.id
        / f"overrides-{key}"
        / f"{split}-e{episodes}-s{seed}-b{COLLECT_BATCH}.npz"
    )


def cached_chance(
    root: Path,
    spec: EnvSpec,
    split: str,
    episodes: int,
    seed: int,
    overrides: Mapping[str, Any],
    on_step: Callable[[int], None] | None = None,
) -> tuple[Rollouts, Path, bool]:
    """:func:`~misgen.probes.rollout.collect_chance` through the runs root's ``.chance/`` cache."""
    path = chance_cache_path(root, spec, split, episodes, seed, overrides)
    if path.is_file():
        return _read_cached(path, spec, split, seed, episodes), path, True
    rollouts = collect_chance(
        spec, split, episodes, seed, batch=COLLECT_BATCH, overrides=overrides, on_step=on_step
    )
    save_rollouts(rollouts, path)
    return rollouts, path, False


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
    chance: bool = True,
) -> dict[str, Any]:
    """Probe one checkpoint of ``run`` and write ``probes/step_N.json``; returns the same dict.

    Args:
        run: a :class:`misgen.runstore.Run`.
        checkpoint: ``(step, path)`` or a name for ``run.resolve_checkpoint`` (``latest``, ``step_N``).
        episodes: episodes per split (at least :data:`~misgen.probes.stats.MIN_N`).
        seed: root seed of the rollouts and bootstraps (default: the run's seed).
        probes: names of the probes to run (default: all registered).
        console: where to draw progress bars; ``None`` draws nothing.
        write: write ``probes/step_N.json`` (tests may skip it).
        threads: torch and BLAS threads while probing (restored afterwards); ``None`` leaves them.
            Rollout and probe batches are small, and multi-threaded torch spins its threads against
            other work on a busy machine.
        chance: also collect (or read from cache) the uniform-random agent on the same levels and
            report every probe's chance baseline.
    """
    if threads is None:
        return _run_battery(run, checkpoint, episodes, seed, probes, console, write, chance)
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            return _run_battery(run, checkpoint, episodes, seed, probes, console, write, chance)
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
    chance: bool,
) -> dict[str, Any]:
    from misgen.agents.checkpoint import load_agent
    from misgen.environments import get_env
    from misgen.probes.base import PROBES
    from misgen.progress import make_progress
    from misgen.provenance import git_commit, package_versions
    from misgen.runstore import atomic_write_json

    if episodes < MIN_N:
        raise MisgenError(f"--episodes must be >= {MIN_N} (fewer gives no usable interval), got {episodes}")
    start, cpu_start = time.perf_counter(), time.process_time()
    step, path = _resolve(run, checkpoint)
    spec = get_env(run.env_id)
    wanted = list(probes) if probes is not None else PROBES.names()
    for name in wanted:
        PROBES.get(name)  # unknown names: one-line error with the valid choices
    root = run.seed if seed is None else int(seed)
    overrides = run.env_overrides
    policy = load_agent(path)
    t_loaded = time.perf_counter()

    splits = [s for s in SPLIT_NAMES if s in spec.splits]
    rollout_seeds = {s: derive_seed(root, "probe", s) for s in splits}
    rollouts: dict[str, Rollouts] = {}
    baseline: dict[str, Rollouts] = {}
    files: dict[str, Any] = {}
    chance_files: dict[str, Any] = {}
    progress = make_progress("episodes", console) if console is not None else None
    if progress is not None:
        progress.start()
    try:
        jobs = [(s, False) for s in splits] + ([(s, True) for s in splits] if chance else [])
        for split, is_chance in jobs:
            counter = None
            if progress is not None:
                label = f"{'chance' if is_chance else 'rollouts'} {split}"
                task = progress.add_task(label, total=episodes, status="")
                counter = _EpisodeCounter(episodes, lambda k, task=task: progress.advance(task, k))
            if is_chance:
                r, file, cached = cached_chance(
                    run.path.parents[2], spec, split, episodes, rollout_seeds[split], overrides, counter
                )
                if not np.array_equal(r.level_seed, rollouts[split].level_seed):
                    raise MisgenError(f"chance rollouts {file} are not on the probed levels of {split}")
                baseline[split] = r
                chance_files[split] = {"file": str(file), "cached": cached}
            else:
                r, file, cached = cached_collect(
                    run,
                    step,
                    policy,
                    spec,
                    split,
                    episodes,
                    rollout_seeds[split],
                    overrides=overrides,
                    on_step=counter,
                )
                rollouts[split] = r
                files[split] = {"file": str(file.relative_to(run.path)), "cached": cached}
            if progress is not None:
                progress.update(task, completed=episodes, status="cached" if cached else "")
    finally:
        if progress is not None:
            progress.stop()
    t_rollouts = time.perf_counter()

    probe_seed = derive_seed(root, "probe", "bootstrap")
    random_policy = chance_agent(spec, probe_seed) if chance else None
    inp = ProbeInput(
        spec,
        rollouts,
        policy,
        seed=probe_seed,
        overrides=overrides,
        chance=baseline,
        chance_policy=random_policy,
    )
    status = console.status("probes") if console is not None else nullcontext()
    with status:
        results, skipped, errors = run_probes(
            inp,
            wanted,
            on_probe=(lambda name: status.update(f"probe {name}")) if console is not None else None,
        )
    end = time.perf_counter()
    out = {
        "format": BATTERY_FORMAT,
        "run": run.name,
        "env": run.env_id,
        "agent": run.agent_name,
        "step": step,
        "checkpoint": str(Path(path).relative_to(run.path))
        if Path(path).is_relative_to(run.path)
        else str(path),
        "episodes": episodes,
        "seeds": {"root": root, "rollouts": rollout_seeds, "probes": probe_seed},
        "rollouts": files,
        "chance_rollouts": chance_files,
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
