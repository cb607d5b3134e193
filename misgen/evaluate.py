"""Evaluation summaries: success on the intended and proxy goals per split, with intervals.

This is the quick look of ``misgen eval``; the full probe battery (revealed goals, consistency,
internals) lives in :mod:`misgen.probes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from misgen.agents.base import Agent
from misgen.agents.checkpoint import load_agent
from misgen.environments import get_env
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


def summarize(rollouts: Rollouts, seed: int = 0) -> SplitSummary:
    outcomes = sorted({*rollouts.goal_names, *np.unique(rollouts.outcome)} - {""})
    return SplitSummary(
        split=rollouts.split,
        episodes=rollouts.episodes,
        intended_success=bootstrap(rollouts.reached(rollouts.intended).astype(float), seed=seed),
        proxy_reached={g: bootstrap(rollouts.reached(g).astype(float), seed=seed) for g in rollouts.proxies},
        first_goal={o: bootstrap((rollouts.outcome == o).astype(float), seed=seed) for o in outcomes},
        mean_return=bootstrap(rollouts.intended_return.astype(float), seed=seed),
        mean_length=bootstrap(rollouts.length.astype(float), seed=seed),
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
        out.append(summarize(rollouts, seed=derive_seed(root, "bootstrap", split)))
    return agent, out
