"""Report inputs read back from the run store: cached rollouts, value maps, replayed frames.

Frames are not stored during rollouts; for native envs they are re-created by replaying the recorded
actions on the level regenerated from its level seed (level content is a pure function of the seed
and the core is deterministic), so the report stays small and reads only from disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from misgen.errors import MisgenError
from misgen.probes.rollout import Rollouts, load_rollouts
from misgen.report.data import RunRecord


def _final_rollouts(record: RunRecord, split: str) -> Rollouts | None:
    step = record.final_step
    if step is None:
        return None
    named = (record.probes[step].get("rollouts") or {}).get(split) or {}
    if named.get("file") and (record.run.path / named["file"]).is_file():
        files = [record.run.path / named["file"]]
    else:  # older results without the file name: the newest cache of that split
        folder = record.run.rollouts_dir / f"step_{step}"
        files = (
            sorted(folder.glob(f"{split}-*.npz"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
        )
    if not files:
        return None
    try:
        return load_rollouts(files[-1])
    except MisgenError:
        return None


def _one_per_agent(records: list[RunRecord]) -> dict[str, RunRecord]:
    """The lowest-seed probed run of each agent (figures show one representative run per agent)."""
    out: dict[str, RunRecord] = {}
    for record in sorted(records, key=lambda r: r.run.seed):
        if record.final_step is not None:
            out.setdefault(record.run.agent_name, record)
    return out


def end_rollouts(records: list[RunRecord]) -> dict[str, Rollouts | None]:
    return {agent: _final_rollouts(r, "test-shift") for agent, r in _one_per_agent(records).items()}


def value_maps(records: list[RunRecord]) -> list[tuple[str, np.ndarray, list[tuple[str, tuple[int, int]]]]]:
    """(agent, value grid, markers) from each agent's value-map probe details, where present."""
    out = []
    for agent, record in _one_per_agent(records).items():
        result = record.probes[record.final_step]
        probes = result.get("probes", {})
        entry = (
            probes.get("value-map")
            if isinstance(probes, dict)
            else next((p for p in probes if p.get("name") == "value-map"), None)
        )
        details = (entry or {}).get("details") or {}
        grid = details.get("heatmap") or details.get("value_map")
        if grid is None:
            continue
        markers = []
        for name, pos in (details.get("markers") or {}).items():
            markers.append((name, (int(pos[0]), int(pos[1]))))
        out.append((agent, np.asarray(grid, dtype=float), markers))
    return out


def _core_for(record: RunRecord, split: str) -> Any | None:
    from misgen.environments import get_env

    return get_env(record.run.env_id).core(split, record.run.env_overrides)


def replay_frames(record: RunRecord, rollouts: Rollouts, episode: int, frames: int = 6) -> list[np.ndarray]:
    """Re-render ``frames`` evenly spaced frames of one recorded episode (native envs only).

    Raises MisgenError if the replay does not reproduce the recorded positions (the frames would lie).
    """
    core = _core_for(record, rollouts.split)
    if core is None:
        return []
    state = core.reset(np.array([rollouts.level_seed[episode]], dtype=np.int64))
    length = int(rollouts.length[episode])
    keep = set(np.linspace(0, length, num=min(frames, length + 1)).round().astype(int).tolist())
    out = []
    for t in range(length + 1):
        if not np.array_equal(core.facts(state).agent_pos[0], rollouts.agent_pos[episode, t]):
            raise MisgenError(f"replay of {record.run.name} episode {episode} diverged at step {t}")
        if t in keep:
            out.append(core.render(state, 0))
        if t < length:
            state, *_ = core.step(state, rollouts.actions[episode, t : t + 1])
    return out


def misgeneralizing_frames(records: list[RunRecord]) -> dict[str, list[np.ndarray]]:
    """Per agent, frames of a test-shift episode that missed the intended goal (proxy-first preferred)."""
    out = {}
    for agent, record in _one_per_agent(records).items():
        rollouts = _final_rollouts(record, "test-shift")
        if rollouts is None:
            continue
        missed = ~rollouts.reached(rollouts.intended)
        proxy_first = np.isin(rollouts.outcome, list(rollouts.proxies)) & missed
        candidates = np.flatnonzero(proxy_first) if proxy_first.any() else np.flatnonzero(missed)
        if len(candidates) == 0:
            continue
        try:
            out[agent] = replay_frames(record, rollouts, int(candidates[0]))
        except (MisgenError, ValueError, IndexError):
            continue
    return out
