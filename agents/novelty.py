"""Episodic novelty: which observations are new to the current episode of each env (batched).

The training-only exploration device shared by the learned agents (PPO adds it to the env reward,
:mod:`misgen.agents.ppo.novelty`; Dreamer stores it in replay and learns to predict it,
:mod:`misgen.agents.dreamer`). The planner uses the same signal inside its search
(:mod:`misgen.agents.planner.explore`). It is the episodic novelty of
Badia et al. 2020, "Never Give Up", with exact matching, which suits small deterministic symbolic
observations: a step is novel when it lands on an observation not yet seen in the current episode.

Why: on maze-cheese a uniformly random walk reaches the cheese in 0.5% of 128-step training
episodes, so an agent rewarded only by the env sees a handful of rewards in its first ~100k steps.
Rewarding "go somewhere new" early sweeps the maze and finds the cheese.

Observations are compared by a 64-bit hash (a random linear map of the bytes, wrapping
arithmetic), one vectorised matrix product per step, and each env's hashes of the episode so far
are kept in a row of one array, so there is no per-env Python loop.
"""

from __future__ import annotations

import numpy as np


def decayed_bonus(bonus: float, steps_done: int, decay_steps: int) -> float:
    """The bonus after ``steps_done`` env steps: linear from ``bonus`` to 0 at ``decay_steps``, then
    0, so every agent's training ends on the env's own objective."""
    if bonus <= 0 or steps_done >= decay_steps:
        return 0.0
    return bonus * (1.0 - steps_done / decay_steps)


class EpisodicNovelty:
    """Per-env hashes of the observations seen in the current episode (batched)."""

    def __init__(self, num_envs: int, obs_size: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.weights = rng.integers(1, 2**63 - 1, size=obs_size, dtype=np.int64) | 1
        self.seen = np.zeros((num_envs, 256), dtype=np.int64)
        self.count = np.zeros(num_envs, dtype=np.int64)

    def hash(self, obs: np.ndarray) -> np.ndarray:
        """(N,) int64 hashes of (N, ...) observations."""
        flat = np.asarray(obs).reshape(len(obs), self.weights.size).astype(np.int64)
        with np.errstate(over="ignore"):
            return flat @ self.weights

    def restart(self, envs: np.ndarray) -> None:
        """Forget the episodes of ``envs`` (their next observation is the first of a new one)."""
        self.count[envs] = 0

    def _is_new(self, hashes: np.ndarray, envs: np.ndarray) -> np.ndarray:
        width = self.seen.shape[1]
        known = (self.seen[envs] == hashes[:, None]) & (np.arange(width)[None, :] < self.count[envs, None])
        return ~known.any(axis=1)

    def is_new(self, obs: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Whether each ``obs[k]`` is new to the episode of env ``envs[k]``, without recording it
        (``envs`` may repeat: the planner asks about several children per env)."""
        return self._is_new(self.hash(obs), np.asarray(envs))

    def visit(self, obs: np.ndarray, envs: np.ndarray | None = None) -> np.ndarray:
        """Record the observations of ``envs`` (default: all, in order; no env twice); returns
        whether each was new to its env's episode."""
        envs = np.arange(len(self.count)) if envs is None else np.asarray(envs)
        h = self.hash(obs)
        if self.count[envs].max(initial=0) >= self.seen.shape[1]:
            self.seen = np.concatenate([self.seen, np.zeros_like(self.seen)], axis=1)
        novel = self._is_new(h, envs)
        rows = envs[novel]
        self.seen[rows, self.count[rows]] = h[novel]
        self.count[rows] += 1
        return novel
