"""Level geometry for probes: re-create a recorded episode's level and measure paths to each goal.

Rollouts store positions, not levels. For native envs the level is recovered exactly: level content
is a pure function of the level seed (environments/levelrng.py), so the first state of any recorded
episode is ``spec.make_core(config).reset(level_seeds)`` with the config of the episode's split and
the run's env overrides (:func:`first_states`). That regeneration is checked against the recorded
t = 0 facts, so a probe never reasons about a level other than the one the agent saw.

Optional core capabilities (typed in :mod:`.hooks`; a native env implements them to unlock the
exact probes; without them the probes fall back to position-only measures and say so in their
details):

* ``geometry``: ``goal_distance_field(state, goal) -> (N, H, W)`` int moves from every cell to
  ``goal`` (:data:`~misgen.environments.gridpath.UNREACHABLE` where the agent cannot stand, or may
  not stand while pursuing that goal), static over an episode, so computed once per level; and
  ``moves``: ``(A, 2)`` cell offset of each action (a move into a cell no goal's field reaches is
  a no-op).
* ``goal placement``: ``with_goal_at(state, goal, cells) -> state`` (value map).
* ``action values``: ``goal_action_values(state, goal) -> (N, A)`` for envs whose dynamics are not
  static (platformer physics with velocity); the revealed-goal probe replays each recorded episode
  through the core (:mod:`.goals`).

maze-cheese and oversight implement geometry (maze-cheese also goal placement), coinrun-shift,
persistent and keys-chests action values.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from misgen.environments.gridpath import UNREACHABLE
from misgen.environments.spec import EnvSpec
from misgen.errors import MisgenError
from misgen.probes.hooks import has
from misgen.probes.rollout import Rollouts

T = TypeVar("T")
_MEMO: dict[tuple[int, str], Any] = {}


def memo_on(rollouts: Rollouts, key: str, compute: Callable[[], T]) -> T:
    """Compute once per (rollouts object, key) and keep it while the rollouts object lives.

    Several probes of one battery (revealed-goal, goal-consistency, proxy-pursuit) need the same
    level analysis of the same rollouts; this shares it without making probes stateful.
    """
    slot = (id(rollouts), key)
    if slot not in _MEMO:
        _MEMO[slot] = compute()
        weakref.finalize(rollouts, _MEMO.pop, slot, None)
    return _MEMO[slot]


def memo_key(name: str, spec: EnvSpec, overrides: Mapping[str, Any]) -> str:
    """A :func:`memo_on` key for an analysis that depends on the spec object and the overrides."""
    return f"{name}:{id(spec)}:{json.dumps(dict(overrides), sort_keys=True, default=str)}"


def make_core(spec: EnvSpec, split: str, overrides: Mapping[str, Any]) -> Any | None:
    """The functional core of ``split`` with the run's overrides; ``None`` for non-native envs."""
    return spec.core(split, overrides)


def first_states(spec: EnvSpec, rollouts: Rollouts, overrides: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """(core, state at t = 0 of every recorded episode), verified against the recorded facts.

    Returns ``None`` for envs without a functional core. Raises MisgenError when the regenerated
    levels disagree with the rollouts (wrong overrides, or a level generator that is not a pure
    function of the level seed).
    """
    core = make_core(spec, rollouts.split, overrides)
    if core is None:
        return None
    state = core.reset(np.asarray(rollouts.level_seed, dtype=np.int64))
    facts = core.facts(state)
    same = np.array_equal(facts.agent_pos, rollouts.agent_pos[:, 0])
    for i, goal in enumerate(rollouts.goal_names):
        same &= np.array_equal(facts.goal_pos[goal], rollouts.goal_pos[:, 0, i])
    if not same:
        raise MisgenError(
            f"levels regenerated from level seeds do not match the recorded {rollouts.env_id} {rollouts.split} rollouts "
            "(were they collected with other env overrides?)"
        )
    return core, state


@dataclass(frozen=True)
class Geometry:
    """Static path geometry of every recorded episode's level (needs the core hooks).

    Attributes:
        fields: (E, G, H, W) moves from each cell to each candidate goal (goal order of the rollouts);
            a cell is open when any goal's field reaches it.
        moves: (A, 2) cell offset of each action.
        start: (E, 2) the agent's first cell.
    """

    fields: np.ndarray
    moves: np.ndarray
    start: np.ndarray

    def distance(self, goal: int, cells: np.ndarray) -> np.ndarray:
        """Moves from ``cells`` (E, ..., 2) to goal index ``goal``, per episode."""
        e = np.arange(len(self.fields)).reshape(-1, *([1] * (cells.ndim - 2)))
        return self.fields[e, goal, cells[..., 0], cells[..., 1]]

    def successors(self, cells: np.ndarray) -> np.ndarray:
        """(E, ..., A, 2) the cell each action leads to from ``cells`` (E, ..., 2); blocked -> stay."""
        target = cells[..., None, :] + self.moves
        h, w = self.fields.shape[-2:]
        inside = (target[..., 0] >= 0) & (target[..., 0] < h) & (target[..., 1] >= 0) & (target[..., 1] < w)
        clipped = np.stack([np.clip(target[..., 0], 0, h - 1), np.clip(target[..., 1], 0, w - 1)], axis=-1)
        e = np.arange(len(self.fields)).reshape(-1, *([1] * (clipped.ndim - 2)))
        open_ = inside & (self.fields[e, :, clipped[..., 0], clipped[..., 1]] < UNREACHABLE).any(axis=-1)
        return np.where(open_[..., None], clipped, cells[..., None, :])


def has_geometry_hooks(core: Any) -> bool:
    return has(core, "geometry")


def geometry(spec: EnvSpec, rollouts: Rollouts, overrides: Mapping[str, Any]) -> Geometry | None:
    """The :class:`Geometry` of the rollouts' levels, or ``None`` when the env lacks the hooks."""

    def compute() -> Geometry | None:
        if not has_geometry_hooks(make_core(spec, rollouts.split, overrides)):
            return None
        found = first_states(spec, rollouts, overrides)
        assert found is not None
        core, state = found
        fields = np.stack(
            [np.asarray(core.goal_distance_field(state, g)) for g in rollouts.goal_names], axis=1
        )
        return Geometry(
            fields.astype(np.int64),
            np.asarray(core.moves, dtype=np.int64),
            rollouts.agent_pos[:, 0].astype(np.int64),
        )

    return memo_on(rollouts, memo_key("geometry", spec, overrides), compute)


def discriminating(geom: Geometry, rollouts: Rollouts) -> np.ndarray:
    """(E,) levels where intended goal and every proxy come apart from the start.

    A level does *not* discriminate when the intended goal lies on a shortest path from the start to
    a proxy (an agent heading for the proxy collects it on the way) or a proxy lies on a shortest
    path to the intended goal. Outcome counts ("which goal was reached first") only say which goal
    an agent pursued on discriminating levels.
    """
    i = rollouts.goal_index(rollouts.intended)
    goal_cells = rollouts.goal_pos[:, 0].astype(np.int64)
    d_start_i = geom.distance(i, geom.start)
    ok = d_start_i < UNREACHABLE
    for proxy in rollouts.proxies:
        p = rollouts.goal_index(proxy)
        d_start_p = geom.distance(p, geom.start)
        d_i_p = geom.distance(p, goal_cells[:, i])
        d_p_i = geom.distance(i, goal_cells[:, p])
        ok &= d_start_p < UNREACHABLE
        ok &= d_start_i + d_i_p != d_start_p
        ok &= d_start_p + d_p_i != d_start_i
    return ok


def goal_separation(rollouts: Rollouts, geom: Geometry | None = None) -> np.ndarray:
    """(E,) distance between the intended goal and the nearest proxy at t = 0.

    Path length when the level geometry is known, Manhattan distance otherwise.
    """
    i = rollouts.goal_index(rollouts.intended)
    cells = rollouts.goal_pos[:, 0].astype(np.int64)
    out = np.full(rollouts.episodes, np.inf)
    for proxy in rollouts.proxies:
        p = rollouts.goal_index(proxy)
        if geom is not None:
            d = geom.distance(p, cells[:, i]).astype(float)
        else:
            d = np.abs(cells[:, i] - cells[:, p]).sum(axis=1).astype(float)
        out = np.minimum(out, d)
    return out
