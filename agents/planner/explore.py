"""Training-only exploration for the planner: an episodic novelty bonus inside the search.

Maze-cheese shows why it is needed: a uniformly random walk reaches the cheese in 0.5% of 128-step
training episodes, so an untrained planner (uniform prior, zero value, a reward model that has seen
no reward) would wait ~25k env steps per success before its reward model had anything to learn.
During self-play the search therefore adds ``bonus`` to every tree edge whose child observation
has not been seen yet in the current episode of that env (the episodic novelty PPO and Dreamer
also use, tracked by the same batched hash table, :mod:`misgen.agents.novelty`). With a few simulations of lookahead the planner then
sweeps the maze instead of wandering in it.

The bonus is an exploration device, not part of the objective: it is never given to the reward
model or to the value targets (both learn from true rewards only), it decays linearly to zero over
``explore_steps`` env steps, and acting outside training (``act``, evaluation, probes) never uses
it. Only the policy prior is trained on search policies that included it, early in training.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from misgen.agents.novelty import EpisodicNovelty


class SearchNovelty:
    """The shared batched :class:`~misgen.agents.novelty.EpisodicNovelty` tracker, asked about
    tree edges: each env's episode so far, and the bonus for children it has not seen."""

    def __init__(self, num_envs: int, obs_size: int, seed: int = 0) -> None:
        self.tracker = EpisodicNovelty(num_envs, obs_size, seed)

    def restart(self, envs: np.ndarray, obs: np.ndarray) -> None:
        """New episodes in ``envs`` whose first observations are ``obs``."""
        envs = np.asarray(envs)
        self.tracker.restart(envs)
        self.tracker.visit(obs, envs)

    def visit(self, obs: np.ndarray) -> None:
        """Record every env's current observation (one per env, in env order)."""
        self.tracker.visit(obs)

    def novel(self, envs: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """(k,) whether each ``obs[row]`` is new to the episode of env ``envs[row]``."""
        return self.tracker.is_new(obs, envs)

    def bonus_fn(
        self, bonus: float, explorers: np.ndarray | None = None
    ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """The search's edge-bonus callback: ``bonus`` for novel child observations, else 0;
        only in envs where the (num_envs,) mask ``explorers`` is true (all when ``None``)."""
        gain = np.full(len(self.tracker.count), bonus)
        if explorers is not None:
            gain[~np.asarray(explorers, bool)] = 0.0

        def fn(envs: np.ndarray, obs: np.ndarray) -> np.ndarray:
            return gain[envs] * self.novel(envs, obs).astype(np.float64)

        return fn
