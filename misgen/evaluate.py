"""Evaluation summaries: success on the intended and proxy goals per split, with intervals.

This is the quick look of ``misgen eval``; the full probe battery (revealed goals, consistency,
internals) lives in :mod:`misgen.probes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from misgen.agents.base import Agent
from misgen.agents.checkpoint import load_agent
from misgen.environments import get_env
from misgen.environments.spec import EnvSpec
from misgen.probes.hooks import has
from misgen.probes.rollout import Rollouts, collect
from misgen.probes.stats import Estimate, bootstrap
from misgen.runstore import Run
from misgen.seeding import derive_seed


@dataclass(frozen=True)
class SplitSummary:
    """Per-split evaluation numbers (each an :class:`Estimate` over episodes)."""

    split: str
    episodes: int
    intended_success: Estimate
    proxy_reached: dict[str, Estimate]
    first_goal: dict[str, Estimate]  # outcome shares: goal reached first, died, timeout
    mean_return: Estimate
    mean_length: Estimate
    difficulty: str = ""  # name of the per-level difficulty measure ("" when the env has none)
    by_difficulty: dict[int, Estimate] = field(default_factory=dict)  # value -> intended success


def success_by_difficulty(
    spec: EnvSpec, rollouts: Rollouts, overrides: Mapping[str, Any] | None = None, seed: int = 0
) -> tuple[str, dict[int, Estimate]]:
    """Intended success per value of the env's per-level difficulty draw (maze side, ...).

    Needs the core's ``level difficulty`` hook (:class:`~misgen.probes.hooks.LevelDifficulty`);
    ``("", {})`` without it. Why: overall success mixes easy and hard levels; an agent at 0.45 may
    solve every small maze and no large one, which is a different agent from one at 0.45 on all.
    """
    core = spec.core(rollouts.split, overrides)
    if not has(core, "level difficulty"):
        return "", {}
    name, values = core.level_difficulty(np.asarray(rollouts.level_seed, dtype=np.int64))
    success = rollouts.reached(rollouts.intended).astype(float)
    return name, {int(v): bootstrap(success[values == v], seed=seed) for v in np.unique(values)}


def summarize(
    rollouts: Rollouts,
    seed: int = 0,
    spec: EnvSpec | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SplitSummary:
    """Per-split numbers; with ``spec``, also intended success per level difficulty."""
    outcomes = sorted({*rollouts.goal_names, *np.unique(rollouts.outcome)} - {""})
    difficulty, by_difficulty = (
        success_by_difficulty(spec, rollouts, overrides, seed) if spec is not None else ("", {})
    )
    return SplitSummary(
        split=rollouts.split,
        episodes=rollouts.episodes,
        intended_success=bootstrap(rollouts.reached(rollouts.intended).astype(float), seed=seed),
        proxy_reached={g: bootstrap(rollouts.reached(g).astype(float), seed=seed) for g in rollouts.proxies},
        first_goal={o: bootstrap((rollouts.outcome == o).astype(float), seed=seed) for o in outcomes},
        mean_return=bootstrap(rollouts.intended_return.astype(float), seed=seed),
        mean_length=bootstrap(rollouts.length.astype(float), seed=seed),
        difficulty=difficulty,
        by_difficulty=by_difficulty,
    )


def evaluate_checkpoint(
    run: Run, checkpoint: Path, splits: list[str], episodes: int, seed: int | None = None
) -> tuple[Agent, list[SplitSummary]]:
    """Load a run's checkpoint and evaluate it on ``splits``."""
    spec = get_env(run.env_id)
    for split in splits:
        spec.split(split)
    agent = load_agent(checkpoint)
    root = run.seed if seed is None else seed
    out = []
    for split in splits:
        rollouts = collect(
            agent, spec, split, episodes, derive_seed(root, "eval", split), overrides=run.env_overrides
        )
        out.append(summarize(rollouts, derive_seed(root, "bootstrap", split), spec, run.env_overrides))
    return agent, out
