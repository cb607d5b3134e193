"""Scripted agents with known goals: the ground truth every probe is validated against.

* ``oracle-intended`` pursues the env's intended goal with the true state.
* ``oracle-proxy`` pursues a proxy goal (the first declared, or ``goal=`` by name).
* ``oracle-mixed`` pursues the proxy in a known share ``p_proxy`` of episodes, the intended goal
  otherwise (drawn per episode at its first step), so a probe's estimate can be checked against p.
* ``oracle-switching`` follows the proxy oracle's action with probability ``p_proxy`` at *every
  step*, the intended oracle's otherwise: the same goals as ``oracle-mixed`` on average, but
  inconsistent within each episode.
* ``random`` acts uniformly at random (the chance baseline of every probe).
* ``stand-still`` never moves (an action that leaves its position unchanged, found on the core);
  ``dither`` steps back and forth between its start cell and a neighbour. Null agents: neither
  pursues any goal, and a probe that gives them a goal label is wrong.

``epsilon`` makes any oracle noisy: a uniformly random action with that probability at each step.

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
        p_proxy: for ``oracle-mixed``, the share of episodes that pursue the proxy; for
            ``oracle-switching``, the probability of the proxy's action at each step.
        epsilon: probability of a uniformly random action instead of the oracle's, at each step.
        num_envs: parallel envs when used in a pipeline that asks.
    """

    goal: str = ""
    p_proxy: float = 0.5
    epsilon: float = 0.0
    num_envs: int = 16


class ScriptedAgent(Agent):
    kind = "scripted"
    Config = ScriptedConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {"debug": {}}
    trainable = False
    default_steps = 0

    def __init__(
        self, config: ScriptedConfig, observation_space: gym.Space, action_space: gym.Space, seed: int
    ) -> None:
        super().__init__(config, observation_space, action_space, seed)
        self.rng = np.random.default_rng(seed)

    def _goal(self, env: gym.vector.VectorEnv | None, role: str) -> str:
        if env is None or not hasattr(env, "oracle_actions"):
            raise MisgenError(f"agent {self.name!r} needs a misgen env (it reads the true state)")
        spec = env.misgen_spec
        if self.config.goal:
            if self.config.goal not in spec.goal_names:
                raise MisgenError(
                    f"unknown goal {self.config.goal!r} for env {spec.id!r}; valid: {', '.join(spec.goal_names)}"
                )
            return self.config.goal
        if role == "intended":
            return spec.intended_goal.name
        if not spec.proxy_goals:
            raise MisgenError(f"env {spec.id!r} declares no proxy goal")
        return spec.proxy_goals[0].name

    def _noisy(self, actions: np.ndarray) -> np.ndarray:
        """``actions`` with each replaced by a uniform one with probability ``epsilon``."""
        if self.config.epsilon <= 0:
            return actions
        flip = self.rng.random(len(actions)) < self.config.epsilon
        return np.where(flip, self.rng.integers(0, self.action_space.n, size=len(actions)), actions)


@register_agent
class OracleIntended(ScriptedAgent):
    """Pursues the intended goal with the true state."""

    name = "oracle-intended"

    def act(self, obs, state, first, env=None):
        return self._noisy(env_actions(env, self._goal(env, "intended"))), state, {}


@register_agent
class OracleProxy(ScriptedAgent):
    """Pursues a proxy goal with the true state."""

    name = "oracle-proxy"

    def act(self, obs, state, first, env=None):
        return self._noisy(env_actions(env, self._goal(env, "proxy"))), state, {}


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
        return self._noisy(actions), pursue_proxy, {"pursues_proxy": pursue_proxy.astype(np.float32)}


@register_agent
class OracleSwitching(ScriptedAgent):
    """At every step, the proxy oracle's action with probability ``p_proxy``, else the intended one's."""

    name = "oracle-switching"

    def act(self, obs, state, first, env=None):
        spec = env.misgen_spec if env is not None else None
        proxy = self._goal(env, "proxy")
        intended = spec.intended_goal.name
        n = len(first)
        pick = self.rng.random(n) < self.config.p_proxy
        actions = np.where(pick, env_actions(env, proxy), env_actions(env, intended))
        return self._noisy(actions), state, {"pursues_proxy": pick.astype(np.float32)}


@register_agent
class RandomAgent(ScriptedAgent):
    """Uniformly random actions (a capability floor for probes)."""

    name = "random"

    def act(self, obs, state, first, env=None):
        n = len(obs) if not isinstance(obs, dict) else len(next(iter(obs.values())))
        return self.rng.integers(0, self.action_space.n, size=n), state, {}


def _successor_cells(env: Any) -> np.ndarray:
    """(N, A, 2) the agent's position after each action from the current state (functional core)."""
    core, state = getattr(env, "core", None), getattr(env, "state", None)
    if core is None or state is None:
        raise MisgenError(
            "stand-still and dither agents need a native misgen env (they test moves on its core)"
        )
    n_actions = int(core.action_space.n)
    out = []
    for a in range(n_actions):
        nxt, *_ = core.step(state.copy(), np.full(len(state), a, dtype=np.int64))
        out.append(core.facts(nxt).agent_pos)
    return np.stack(out, axis=1)


@register_agent
class StandStill(ScriptedAgent):
    """Never moves: the first action that leaves its position unchanged (a null agent). In envs
    with no such action in open space (persistent's room) it takes action 0 and so walks to a
    wall, where it then stays."""

    name = "stand-still"

    def act(self, obs, state, first, env=None):
        here = env.core.facts(env.state).agent_pos if hasattr(env, "core") else None
        succ = _successor_cells(env)
        same = (succ == here[:, None, :]).all(axis=-1)
        return np.where(same.any(axis=1), same.argmax(axis=1), 0), state, {}


@register_agent
class Dither(ScriptedAgent):
    """Steps back and forth between its start cell and one neighbour, forever (a null agent)."""

    name = "dither"

    def initial_state(self, n: int) -> np.ndarray:
        return np.full((n, 2), -1, dtype=np.int64)

    def act(self, obs, state, first, env=None):
        here = env.core.facts(env.state).agent_pos if hasattr(env, "core") else None
        home = np.array(state, dtype=np.int64, copy=True)
        home[np.asarray(first, bool)] = here[np.asarray(first, bool)]
        succ = _successor_cells(env)
        moves = ~(succ == here[:, None, :]).all(axis=-1)  # actions that leave the cell
        back = (succ == home[:, None, :]).all(axis=-1)  # actions that return home
        at_home = (here == home).all(axis=1)
        away = np.where(moves.any(axis=1), moves.argmax(axis=1), 0)
        ret = np.where(back.any(axis=1), back.argmax(axis=1), away)
        return np.where(at_home, away, ret), home, {}


def env_actions(env: gym.vector.VectorEnv | None, goal: str) -> np.ndarray:
    if env is None or not hasattr(env, "oracle_actions"):
        raise MisgenError("scripted agents need a misgen env that offers oracle_actions(goal)")
    return np.asarray(env.oracle_actions(goal), dtype=np.int64)
