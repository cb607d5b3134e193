"""Training-only exploration for PPO: an episodic novelty bonus on the rewards.

Maze-cheese shows why it helps: a uniformly random walk reaches the cheese in 0.5% of 128-step
training episodes, so for its first ~100k steps PPO sees a handful of rewards and its policy
drifts on value-noise advantages (seen here: entropy 1.39 -> 1.2 and train success 0.00 after
200k steps on one seed, 0.15 on another). Paying ``bonus`` for every step that lands on an
observation not yet seen in the current episode (the episodic novelty of Badia et al. 2020,
"Never Give Up", with exact matching, which suits small deterministic symbolic observations) makes
"go somewhere new" the early objective, which sweeps the maze and finds the cheese.

The bonus is an exploration device, not part of the objective: it decays linearly to zero over
``explore_steps`` env steps, success and returns in the training curves are the env's own, and
acting (evaluation, probes) never sees it. The planner uses the same device inside its search
(:mod:`misgen.agents.planner.explore`), so the two classes explore alike.

Observations are compared by a 64-bit hash (a random linear map of the bytes, wrapping
arithmetic), one vectorised matrix product per step, and each env's hashes of the episode so far
are kept in a row of one array, so there is no per-env Python loop.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn


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

    def visit(self, obs: np.ndarray, envs: np.ndarray | None = None) -> np.ndarray:
        """Record the observations of ``envs`` (default: all, in order); returns whether each was
        new to its env's episode."""
        envs = np.arange(len(self.count)) if envs is None else np.asarray(envs)
        h = self.hash(obs)
        width = self.seen.shape[1]
        if self.count[envs].max(initial=0) >= width:
            self.seen = np.concatenate([self.seen, np.zeros_like(self.seen)], axis=1)
            width *= 2
        known = (self.seen[envs] == h[:, None]) & (np.arange(width)[None, :] < self.count[envs, None])
        novel = ~known.any(axis=1)
        rows = envs[novel]
        self.seen[rows, self.count[rows]] = h[novel]
        self.count[rows] += 1
        return novel


class NoveltyBonusVecEnv(VecEnvWrapper):
    """Adds ``bonus_now()`` to the reward of every step onto a novel observation.

    ``bonus_now`` is read each step (the schedule lives with the agent). Episode returns and
    success in ``infos`` come from the wrapped env and exclude the bonus.
    """

    def __init__(self, venv: VecEnv, bonus_now: Callable[[], float], seed: int = 0) -> None:
        super().__init__(venv)
        size = int(np.prod(venv.observation_space.shape))
        self.bonus_now = bonus_now
        self.novelty = EpisodicNovelty(venv.num_envs, size, seed)

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self.novelty.restart(np.arange(self.num_envs))
        self.novelty.visit(obs)
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, done, infos = self.venv.step_wait()
        bonus = self.bonus_now()
        if bonus <= 0:
            return obs, reward, done, infos
        # A finished env's ``obs`` is already the next episode's first: the arrival that ended
        # the episode earns no bonus, and the new episode starts its own record.
        going = np.flatnonzero(~done)
        novel = self.novelty.visit(obs[going], going)
        reward = reward.copy()
        reward[going] += np.float32(bonus) * novel.astype(np.float32)
        ended = np.flatnonzero(done)
        if len(ended):
            self.novelty.restart(ended)
            self.novelty.visit(obs[ended], ended)
        return obs, reward, done, infos
