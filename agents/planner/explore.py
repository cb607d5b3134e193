"""Training-only exploration for the planner: an episodic novelty bonus inside the search.

Maze-cheese shows why it is needed: a uniformly random walk reaches the cheese in 0.5% of 128-step
training episodes, so an untrained planner (uniform prior, zero value, a reward model that has seen
no reward) would wait ~25k env steps per success before its reward model had anything to learn.
During self-play the search therefore adds ``bonus`` to every tree edge whose child observation
has not been seen yet in the current episode of that env (a count-free form of the episodic
novelty of Badia et al. 2020, "Never Give Up", with exact observation matching, which suits
small deterministic symbolic observations). With a few simulations of lookahead the planner then
sweeps the maze instead of wandering in it.

The bonus is an exploration device, not part of the objective: it is never given to the reward
model or to the value targets (both learn from true rewards only), it decays linearly to zero over
``explore_steps`` env steps, and acting outside training (``act``, evaluation, probes) never uses
it. Only the policy prior is trained on search policies that included it, early in training.
"""

from __future__ import annotations

import numpy as np


class EpisodicNovelty:
    """Per-env sets of observations seen in the current episode, and the bonus for unseen ones."""

    def __init__(self, num_envs: int) -> None:
        self.seen: list[set[bytes]] = [set() for _ in range(num_envs)]

    def restart(self, envs: np.ndarray, obs: np.ndarray) -> None:
        """New episodes in ``envs`` whose first observations are ``obs``."""
        for row, i in enumerate(np.asarray(envs)):
            self.seen[i] = {obs[row].tobytes()}

    def visit(self, obs: np.ndarray) -> None:
        """Record every env's current observation (one per env, in env order)."""
        for i, o in enumerate(obs):
            self.seen[i].add(o.tobytes())

    def novel(self, envs: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """(k,) whether each ``obs[row]`` is new to the episode of env ``envs[row]``."""
        return np.array([o.tobytes() not in self.seen[i] for i, o in zip(np.asarray(envs), obs, strict=True)], dtype=bool)

    def bonus_fn(self, bonus: float):
        """The search's edge-bonus callback: ``bonus`` for novel child observations, else 0."""

        def fn(envs: np.ndarray, obs: np.ndarray) -> np.ndarray:
            return bonus * self.novel(envs, obs).astype(np.float64)

        return fn
