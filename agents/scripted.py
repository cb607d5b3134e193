"""Scripted agents with known goals: the ground truth every probe is validated against.

* ``oracle-intended`` pursues the env's intended goal with the true state.
* ``oracle-proxy`` pursues a proxy goal (the first declared, or ``goal=`` by name).
* ``oracle-mixed`` pursues the proxy in a known share ``p_proxy`` of episodes, the intended goal
  otherwise (drawn per episode at its first step), so a probe's estimate can be checked against p.
* ``random`` acts uniformly at random.

Oracles read the env through ``env.oracle_actions(goal)``, which every misgen vector env provides.
They never train; they still checkpoint (config only) so the whole pipeline treats them like others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from misgen.agents import register_agent
from misgen.agents.base import Agent
from misgen.errors import MisgenError


@dataclass(frozen=True)
class ScriptedConfig:
    """Scripted agent options.

    Attributes:
        goal: candidate goal to pursue by name; empty means the role's default (the intended goal
            for ``oracle-intended``, the first proxy for ``oracle-proxy`` / ``oracle-mixed``).
        p_proxy: for ``oracle-mixed``, the share of episodes that pursue the proxy.
        num_envs: parallel envs when used in a pipeline that asks.
    """

    goal: str = ""
    p_proxy: float = 0.5
    num_envs: int = 16


class ScriptedAgent(Agent):
    kind = "scripted"
    Config = ScriptedConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {"debug": {}}
    trainable = False
    default_steps = 0

    def __init__(self, config: ScriptedConfig, observation_space: gym.Space, action_space: gym.Space, seed: int) -> None:
        super().__init__(config, observation_space, action_space, seed)
        self.rng = np.random.default_rng(seed)

    def _goal(self, env: gym.vector.VectorEnv | None, role: str) -> str:
        if env is None or not hasattr(env, "oracle_actions"):
            raise MisgenError(f"agent {self.name!r} needs a misgen env (it reads the true state)")
        spec = env.misgen_spec
        if self.config.goal:
            if self.config.goal not in spec.goal_names:
                raise MisgenError(f"unknown goal {self.config.goal!r} for env {spec.id!r}; valid: {', '.join(spec.goal_names)}")
            return self.config.goal
        if role == "intended":
            return spec.intended_goal.name
        if not spec.proxy_goals:
            raise MisgenError(f"env {spec.id!r} declares no proxy goal")
        return spec.proxy_goals[0].name


@register_agent
class OracleIntended(ScriptedAgent):
    """Pursues the intended goal with the true state."""

    name = "oracle-intended"

    def act(self, obs, state, first, env=None):
        return env_actions(env, self._goal(env, "intended")), state, {}


@register_agent
class OracleProxy(ScriptedAgent):
    """Pursues a proxy goal with the true state."""

    name = "oracle-proxy"

    def act(self, obs, state, first, env=None):
        return env_actions(env, self._goal(env, "proxy")), state, {}


@register_agent
class OracleMixed(ScriptedAgent):
    """Pursues the proxy in a share ``p_proxy`` of episodes, the intended goal otherwise."""

    name = "oracle-mixed"

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros(n, dtype=bool)

    def act(self, obs, state, first, env=None):
        pursue_proxy = np.array(state, dtype=bool, copy=True)
        first = np.asarray(first, dtype=bool)
        pursue_proxy[first] = self.rng.random(int(first.sum())) < self.config.p_proxy
        spec = env.misgen_spec
        proxy = self.config.goal or spec.proxy_goals[0].name
        actions = np.where(pursue_proxy, env_actions(env, proxy), env_actions(env, spec.intended_goal.name))
        return actions, pursue_proxy, {"pursues_proxy": pursue_proxy.astype(np.float32)}


@register_agent
class RandomAgent(ScriptedAgent):
    """Uniformly random actions (a capability floor for probes)."""

    name = "random"

    def act(self, obs, state, first, env=None):
        n = len(obs) if not isinstance(obs, dict) else len(next(iter(obs.values())))
        return self.rng.integers(0, self.action_space.n, size=n), state, {}


def env_actions(env: gym.vector.VectorEnv | None, goal: str) -> np.ndarray:
    if env is None or not hasattr(env, "oracle_actions"):
        raise MisgenError("scripted agents need a misgen env that offers oracle_actions(goal)")
    return np.asarray(env.oracle_actions(goal), dtype=np.int64)
