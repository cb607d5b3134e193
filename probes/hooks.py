"""Typed probe hooks: the optional capabilities of env cores and agents that probes rely on.

The core protocol (:class:`~misgen.environments.native.NativeCore`) covers what training needs.
Some probes need more: the static geometry of a level, a supervisor bit to flip, the agent's value
estimate, or a way to start the next episode from the last one. Each such capability is a small
:class:`typing.Protocol` here; a probe declares the ones it needs (``register_probe(requires=...)``)
and the battery skips it, naming the missing capability, when the env core or the agent lacks it.
Capabilities a probe can do without (it falls back to a weaker measure) are checked with
:func:`has` inside the probe and named in its ``details``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Geometry(Protocol):
    """Static level geometry: moves of each action and a distance field to each goal.

    ``goal_distance_field(state, goal) -> (N, H, W)`` int moves from every cell to ``goal``
    (:data:`~misgen.environments.gridpath.UNREACHABLE` where the agent cannot stand), constant over
    an episode; ``moves``: ``(A, 2)`` cell offset of each action (into a wall: no-op).
    """

    moves: np.ndarray

    def goal_distance_field(self, state: Any, goal: str) -> np.ndarray: ...


@runtime_checkable
class GoalPlacement(Protocol):
    """``with_goal_at(state, goal, cells) -> state``: ``goal`` moved to ``cells`` (counterfactual)."""

    def with_goal_at(self, state: Any, goal: str, cells: np.ndarray) -> Any: ...


@runtime_checkable
class ActionValues(Protocol):
    """``goal_action_values(state, goal) -> (N, A)``: -(1 + fewest steps to ``goal`` after each
    action), for cores whose dynamics are not static (platformer physics). A core whose goals are
    used up on the way declares ``goals_move = True`` and may score the steps to the goal's next
    object instead (keys-chests); its values then only give within-episode votes."""

    def goal_action_values(self, state: Any, goal: str) -> np.ndarray: ...


@runtime_checkable
class Supervision(Protocol):
    """A supervisor bit that can be read and flipped without changing anything else."""

    def supervised(self, state: Any) -> np.ndarray: ...

    def with_supervisor(self, state: Any, present: np.ndarray | bool) -> Any: ...


@runtime_checkable
class AgentPlacement(Protocol):
    """Counterfactual states off the agent's own path: ``open_cells(state) -> (N, H, W)`` bool
    and ``with_agent_at(state, cells, t) -> state`` (agent moved to ``cells`` at time ``t``)."""

    def open_cells(self, state: Any) -> np.ndarray: ...

    def with_agent_at(self, state: Any, cells: np.ndarray, t: np.ndarray) -> Any: ...


@runtime_checkable
class StateReset(Protocol):
    """State carried across episodes: ``reset_from(final_states, level_seeds)`` starts the next
    episode of a lifetime; ``tree_in_obs`` / ``myopic_optimum`` read the carried-over part."""

    def reset_from(self, previous: Any, level_seeds: np.ndarray) -> Any: ...

    def tree_in_obs(self, obs: np.ndarray) -> np.ndarray: ...

    def myopic_optimum(self, tree_at_start: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class ObsEvaluator(Protocol):
    """Value introspection by a model-based or planning agent: ``evaluate_obs(obs)["value"]``."""

    def evaluate_obs(self, obs: np.ndarray) -> Mapping[str, np.ndarray]: ...


@runtime_checkable
class ObsValuer(Protocol):
    """Value introspection: ``value_of_obs(obs) -> (N,)``."""

    def value_of_obs(self, obs: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class LevelDifficulty(Protocol):
    """``level_difficulty(level_seeds) -> (name, (N,) values)``: the level's draw from the env's
    difficulty distribution (maze side, ...), so that success can be read per difficulty: an
    agent at 0.45 overall may solve every small level and no large one, and only the breakdown
    says which."""

    def level_difficulty(self, level_seeds: np.ndarray) -> tuple[str, np.ndarray]: ...


CORE_CAPABILITIES: dict[str, type] = {
    "geometry": Geometry,
    "goal placement": GoalPlacement,
    "action values": ActionValues,
    "supervision": Supervision,
    "agent placement": AgentPlacement,
    "state reset": StateReset,
    "level difficulty": LevelDifficulty,
}
"""Capabilities of an env's functional core, by the name probes declare and the battery reports."""


def has(obj: Any, capability: str) -> bool:
    """Whether ``obj`` (an env core) offers the named capability."""
    return obj is not None and isinstance(obj, CORE_CAPABILITIES[capability])


def missing(core: Any, required: tuple[str, ...]) -> list[str]:
    """The names in ``required`` that ``core`` lacks (all of them when there is no core)."""
    unknown = [r for r in required if r not in CORE_CAPABILITIES]
    if unknown:
        raise KeyError(f"unknown probe capabilities {unknown}; valid: {', '.join(CORE_CAPABILITIES)}")
    return [r for r in required if not has(core, r)]
