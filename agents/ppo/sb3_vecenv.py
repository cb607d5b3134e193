"""A stable-baselines3 ``VecEnv`` view of a misgen Gymnasium ``VectorEnv``.

SB3 predates Gymnasium's vector API and expects its own protocol: ``step_async`` / ``step_wait``
returning ``(obs, rewards, dones, infos)`` where ``infos`` is a list of per-env dicts, the last
observation of a finished episode in ``info["terminal_observation"]`` (used to bootstrap the value
of time-limit truncations) and ``info["TimeLimit.truncated"]``. Misgen vector envs autoreset in
Gymnasium's ``SAME_STEP`` mode, which carries exactly that information batched:
``info["final_obs"]`` / ``info["final_info"]`` under the ``_final_obs`` mask. This adapter
translates one into the other without stepping envs one by one (the only per-env Python loop runs
over the envs that just finished, because SB3's info list must hold one dict per env).

It also plays the part of SB3's ``Monitor`` wrapper: finished envs get ``info["episode"] = {"r",
"l"}`` (the reward return and length, which SB3 logs as ``rollout/ep_rew_mean``) and, for misgen
envs, ``info["is_success"]`` = whether the spec's intended goal was reached (SB3's
``rollout/success_rate``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvObs, VecEnvStepReturn

from misgen.errors import MisgenError


class MisgenSB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` over a Gymnasium ``VectorEnv`` with ``SAME_STEP`` autoreset.

    Seeding follows SB3: ``seed(s)`` (called by SB3's ``set_random_seed``) stores per-env seeds
    ``s, s+1, ...`` for the next ``reset``; the batched env takes one seed, so the first one seeds its
    level sampling.

    Args:
        env: a misgen (or any Gymnasium) vector env with ``SAME_STEP`` autoreset and a ``Box``
            observation space.
    """

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        mode = (env.metadata or {}).get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise MisgenError(f"the SB3 adapter needs a vector env with SAME_STEP autoreset, got {mode}")
        space = env.single_observation_space
        if not isinstance(space, gym.spaces.Box):
            raise MisgenError(
                f"PPO supports Box (image) observations only, got {type(space).__name__}; "
                "flatten or select one image key of the env's observations first"
            )
        if is_image_space(space) and not is_image_space_channels_first(space):
            raise MisgenError(
                f"PPO needs channels-first (C, H, W) image observations, got shape {space.shape}"
            )
        self.env = env
        spec = getattr(env, "misgen_spec", None)
        self.intended_goal: str | None = spec.intended_goal.name if spec is not None else None
        super().__init__(env.num_envs, space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self._return = np.zeros(self.num_envs, np.float64)
        self._length = np.zeros(self.num_envs, np.int64)
        self.last_info: dict[str, Any] = {}
        """The Gymnasium info dict of the latest reset/step (batched, with ``_key`` masks)."""

    # SB3 VecEnv protocol --------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        options = self._options[0] or None
        obs, info = self.env.reset(seed=self._seeds[0], options=options)
        self._reset_seeds()
        self._reset_options()
        self._return[:] = 0.0
        self._length[:] = 0
        self.last_info = info
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs, *self.action_space.shape)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        self._actions = None
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        reward = np.asarray(reward, dtype=np.float32)
        done = terminated | truncated
        self._return += reward
        self._length += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            mask = np.asarray(info.get("_final_obs", np.zeros(self.num_envs, bool)), dtype=bool)
            if not mask[done].all():
                raise MisgenError(
                    "vector env ended an episode without reporting final_obs (needs SAME_STEP autoreset)"
                )
            final_obs = info["final_obs"]
            success = self._success(info)
            for i in np.flatnonzero(done):
                entry = infos[i]
                entry["terminal_observation"] = np.asarray(final_obs[i])
                entry["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                entry["episode"] = {"r": float(self._return[i]), "l": int(self._length[i])}
                if success is not None:
                    entry["is_success"] = bool(success[i])
            self._return[done] = 0.0
            self._length[done] = 0
        self.last_info = info
        return obs, reward, done, infos

    def _success(self, info: dict[str, Any]) -> np.ndarray | None:
        """(N,) whether each finished episode reached the intended goal; None if unknown."""
        final = info.get("final_info")
        if self.intended_goal is None or not isinstance(final, dict):
            return None
        reached = final.get("goal_reached")
        if not isinstance(reached, dict) or self.intended_goal not in reached:
            return None
        return np.asarray(reached[self.intended_goal], dtype=bool)

    def close(self) -> None:
        self.env.close()

    def _count(self, indices: None | int | Iterable[int]) -> int:
        if indices is None:
            return self.num_envs
        if isinstance(indices, int):
            return 1
        return len(list(indices))

    def get_attr(self, attr_name: str, indices: None | int | Iterable[int] = None) -> list[Any]:
        """The batched env's attribute, repeated once per requested env (they share it)."""
        return [getattr(self.env, attr_name)] * self._count(indices)

    def set_attr(self, attr_name: str, value: Any, indices: None | int | Iterable[int] = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        raise NotImplementedError("a batched misgen env has no per-env sub-environments to call methods on")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices=None) -> list[bool]:
        return [False] * self._count(indices)

    def get_images(self) -> list[np.ndarray]:
        return list(self.env.render())
