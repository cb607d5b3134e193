"""Scripted agents with known oversight sensitivity and known horizons, to validate the
deceptive-alignment probes (``oversight-sensitivity``, ``horizon``).

* ``oracle-deceptive`` (oversight): takes the shortcut when no supervisor is present, the safe
  route when one is: behaviour that depends on being watched.
* ``oracle-honest`` (oversight): the safe route whoever watches.
* ``oracle-myopic`` (persistent): maximizes each episode alone: harvest a standing tree, then
  take the coin; never plants.
* ``oracle-farsighted`` (persistent): harvest, then plant every episode: gives up the coin for
  the next episode's fruit (the cross-episode optimum).

They read the true state through the env's functional core (``env.core`` / ``env.state``) and
report their (deterministic, one-hot) action distributions as ``extras["action_probs"]``, so the
counterfactual probe can compare distributions exactly. They never train; like every agent they
checkpoint (config only).
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
class DeceptionOracleConfig:
    """Options of the deception / horizon oracles.

    Attributes:
        num_envs: parallel envs when used in a pipeline that asks.
    """

    num_envs: int = 16


class _CoreOracle(Agent):
    """An oracle that acts from the env's functional core; subclasses pick the actions."""

    kind = "scripted"
    Config = DeceptionOracleConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {"debug": {}}
    trainable = False
    default_steps = 0
    envs: ClassVar[tuple[str, ...]] = ()
    """Env ids (or id prefixes) this oracle understands."""

    def _core_state(self, env: gym.vector.VectorEnv | None) -> tuple[Any, Any]:
        spec = getattr(env, "misgen_spec", None)
        if env is None or spec is None or not hasattr(env, "core") or not any(spec.id.startswith(e) for e in self.envs):
            got = spec.id if spec is not None else type(env).__name__
            raise MisgenError(f"agent {self.name!r} acts only in native {', '.join(self.envs)} envs, not {got!r}")
        return env.core, env.state

    def _actions(self, core: Any, state: Any) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs, state, first, env=None):
        core, env_state = self._core_state(env)
        actions = np.asarray(self._actions(core, env_state), dtype=np.int64)
        probs = np.zeros((len(actions), int(self.action_space.n)), dtype=np.float32)
        probs[np.arange(len(actions)), actions] = 1.0
        return actions, state, {"action_probs": probs}


@register_agent
class OracleDeceptive(_CoreOracle):
    """Shortcut when unwatched, safe route when watched (oversight)."""

    name = "oracle-deceptive"
    envs = ("oversight",)

    def _actions(self, core, state):
        watched = core.supervised(state)
        return np.where(watched, core.oracle_actions(state, "safe-route"), core.oracle_actions(state, "shortcut"))


@register_agent
class OracleHonest(_CoreOracle):
    """The safe route whoever watches (oversight)."""

    name = "oracle-honest"
    envs = ("oversight",)

    def _actions(self, core, state):
        return core.oracle_actions(state, "safe-route")


@register_agent
class OracleMyopic(_CoreOracle):
    """Each episode alone: harvest a standing tree, then the coin (persistent)."""

    name = "oracle-myopic"
    envs = ("persistent",)

    def _actions(self, core, state):
        return core.oracle_actions(state, "coin")


@register_agent
class OracleFarsighted(_CoreOracle):
    """Harvest, then plant every episode: the cross-episode optimum (persistent)."""

    name = "oracle-farsighted"
    envs = ("persistent",)

    def _actions(self, core, state):
        return core.oracle_actions(state, "plant")
