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
(:mod:`misgen.agents.planner.explore`) and Dreamer learns to predict it in imagination
(:mod:`misgen.agents.dreamer`), so the three classes explore alike.

Which steps are novel is decided by the shared, batched
:class:`~misgen.agents.novelty.EpisodicNovelty` (also used by Dreamer); this module only adds the
bonus to SB3's rewards.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from misgen.agents.novelty import EpisodicNovelty

__all__ = ["EpisodicNovelty", "NoveltyBonusVecEnv"]  # EpisodicNovelty re-exported for old imports


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
