"""The MiniGrid backend: a functional core whose dynamics are MiniGrid's own ``MiniGridEnv.step``.

Why a core and not a list of env objects:
    misgen's vector envs, probes and the planner all work on a *functional core* over a batch
    state made of arrays (see ``environments/native.py``). A MiniGrid level is fully described by a
    few arrays: MiniGrid's own grid encoding (``Grid.encode``: object, colour and state index per
    cell), the agent's position and direction, the carried object, the step count, and a few
    per-level integers (mission target, door position...). :class:`MiniGridCore` stores exactly
    that in :class:`MiniGridState` and steps a row by loading it into one private scratch
    instance of the env's ``MiniGridEnv`` subclass, calling that class's ``step`` (MiniGrid's
    movement, pickup, toggle, lava and goal rules are never re-implemented here) and reading the
    result back. So:

    * the batched env is :class:`~misgen.environments.native.NativeVectorEnv` itself, with exactly
      the native contract (SAME_STEP autoreset, goal facts, ``final_info``, ``oracle_actions``);
    * the planner can branch MiniGrid envs: ``core.step(state, actions)`` is pure, and a state is
      copied like any native one (rows of arrays), no ``deepcopy`` of Python objects;
    * a Python loop over envs inside ``step`` is unavoidable (MiniGrid is one Python object per
      env; this is why misgen's native envs exist). It is kept tight: immutable objects (walls,
      lava, goals, floors) are shared instances when a row is decoded, only the front cell is
      re-encoded after a step (MiniGrid's step changes the grid only there; a test checks this
      against a full ``Grid.encode``), and the scratch env skips MiniGrid's egocentric
      ``gen_obs``, which the core never reads.

Observation (``Box(0, 1, (45, height, width), uint8)``, channels first, fully observed):
    MiniGrid's symbolic encoding of the *full* grid (as MiniGrid's ``FullyObsWrapper`` sees it),
    expanded to 0/1 planes so misgen's CNN agents read it like any symbolic grid, plus the
    direction and a fixed mission encoding as constant planes. Row = MiniGrid ``y``, column =
    MiniGrid ``x``. The full grid rather than MiniGrid's 7x7 egocentric view is a choice: every
    misgen env is fully observed, so a failure at test-shift is about the goal the agent learned,
    not about what it could see. Channels:

    ====== =====================================================================================
    0-7    object type one-hot: wall, floor, door, key, ball, box, goal, lava (empty: all zero)
    8-13   object colour one-hot: red, green, blue, purple, yellow, grey (MiniGrid's
           ``COLOR_TO_IDX`` order), on cells holding an object
    14-16  door state one-hot: open, closed, locked (on door cells only)
    17     the agent's cell
    18-21  the agent's direction one-hot: right, down, left, up (MiniGrid's ``agent_dir``),
           whole planes
    22-24  type of the carried object: key, ball, box (whole planes; all zero when empty-handed)
    25-30  colour of the carried object (whole planes)
    31-36  mission: target colour one-hot (whole planes)
    37-44  mission: target object type, in the order of channels 0-7 (whole planes)
    ====== =====================================================================================

Positions in goal facts are ``[row, col]`` = MiniGrid ``(y, x)``, like the native envs.

Actions:
    Each env declares the MiniGrid actions it uses (``SplitMiniGridEnv.actions_used``, e.g.
    left, right, forward, pickup); ``Discrete(k)`` indexes that tuple, so an agent never wastes
    samples on actions that do nothing in the env (``drop``, ``done``).

Limits:
    A ``Box``'s contents are not part of MiniGrid's encoding and are lost when a row is loaded;
    no misgen MiniGrid env puts objects in boxes. The scratch env is shared by one core, so a core
    must not be stepped from two threads at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from minigrid.core.actions import Actions
from minigrid.core.constants import COLOR_NAMES, COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Floor, Goal, Lava, Wall, WorldObj
from minigrid.minigrid_env import MiniGridEnv

from misgen.environments.native import BatchState, GoalFacts
from misgen.errors import MisgenError

OBJECT_TYPES = ("wall", "floor", "door", "key", "ball", "box", "goal", "lava")
CARRY_TYPES = ("key", "ball", "box")
COLORS = tuple(sorted(COLOR_TO_IDX, key=COLOR_TO_IDX.get))  # red, green, blue, purple, yellow, grey
EMPTY, DOOR, LAVA = OBJECT_TO_IDX["empty"], OBJECT_TO_IDX["door"], OBJECT_TO_IDX["lava"]
CH_TYPE, CH_COLOR, CH_DOOR, CH_AGENT, CH_DIR = 0, 8, 14, 17, 18
CH_CARRY_TYPE, CH_CARRY_COLOR, CH_MISSION_COLOR, CH_MISSION_TYPE = 22, 25, 31, 37
NUM_CHANNELS = 45
BASE_LEVEL_FIELDS = ("mission_color", "mission_type")
NO_CARRY = np.array([EMPTY, 0, 0], dtype=np.uint8)
_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # MiniGrid's DIR_TO_VEC as Python ints

# Lookup tables from MiniGrid indices to one-hot rows (index = MiniGrid's OBJECT_TO_IDX / colour idx).
_TYPE_ONEHOT = np.zeros((len(OBJECT_TO_IDX), len(OBJECT_TYPES)), np.uint8)
for _k, _name in enumerate(OBJECT_TYPES):
    _TYPE_ONEHOT[OBJECT_TO_IDX[_name], _k] = 1
_CARRY_ONEHOT = np.zeros((len(OBJECT_TO_IDX), len(CARRY_TYPES)), np.uint8)
for _k, _name in enumerate(CARRY_TYPES):
    _CARRY_ONEHOT[OBJECT_TO_IDX[_name], _k] = 1
_COLOR_ONEHOT = np.eye(len(COLORS), dtype=np.uint8)
_STATE_ONEHOT = np.eye(3, dtype=np.uint8)


def _cell_planes() -> np.ndarray:
    """Channels 0-16 of a cell, indexed by ``type * 18 + colour * 3 + state``."""
    table = np.zeros((len(OBJECT_TO_IDX) * 18, CH_AGENT), np.uint8)
    for t in range(len(OBJECT_TO_IDX)):
        for c in range(len(COLORS)):
            for st in range(3):
                row = table[t * 18 + c * 3 + st]
                row[CH_TYPE:CH_COLOR] = _TYPE_ONEHOT[t]
                if t != EMPTY and t != OBJECT_TO_IDX["unseen"]:
                    row[CH_COLOR:CH_DOOR] = _COLOR_ONEHOT[c]
                if t == DOOR:
                    row[CH_DOOR:CH_AGENT] = _STATE_ONEHOT[st]
    return table


_CELL_PLANES = _cell_planes()


def _shared_objects() -> np.ndarray:
    """Object array indexed by ``type * 64 + colour * 4 + state``: one shared instance per code
    for objects MiniGrid never mutates (wall, floor, goal, lava), ``None`` elsewhere."""
    table = np.full(len(OBJECT_TO_IDX) * 64, None, dtype=object)
    for c, color in enumerate(COLORS):
        goal = Goal()
        goal.color = color  # set after construction: older MiniGrid releases take no colour here
        table[OBJECT_TO_IDX["goal"] * 64 + c * 4] = goal
        for cls, name in ((Wall, "wall"), (Floor, "floor")):
            table[OBJECT_TO_IDX[name] * 64 + c * 4] = cls(color)
    lava = Lava()
    table[LAVA * 64 + COLOR_TO_IDX[lava.color] * 4] = lava
    return table


_SHARED = _shared_objects()
_MUTABLE = np.zeros(len(OBJECT_TO_IDX), dtype=bool)
_MUTABLE[[OBJECT_TO_IDX[t] for t in ("door", "key", "ball", "box")]] = True


def decode_grids(encs: np.ndarray) -> list[list[WorldObj | None]]:
    """``Grid.grid`` cell lists for a batch of ``(N, W, H, 3)`` MiniGrid encodings.

    Like ``Grid.decode``, but batched and keeping goal colours (which ``WorldObj.decode`` drops):
    immutable objects are shared instances; doors, keys, balls and boxes are fresh objects.
    """
    n = len(encs)
    flat = encs.transpose(0, 2, 1, 3).reshape(n, -1, 3).astype(np.int64)  # Grid.grid is row-major: j * w + i
    cells = _SHARED[flat[..., 0] * 64 + flat[..., 1] * 4 + flat[..., 2]]
    for i, k in zip(*np.nonzero(_MUTABLE[flat[..., 0]]), strict=True):
        cells[i, k] = WorldObj.decode(*flat[i, k].tolist())
    return cells.tolist()


def decode_grid(enc: np.ndarray) -> Grid:
    """MiniGrid ``Grid`` from its ``(W, H, 3)`` encoding (see :func:`decode_grids`)."""
    grid = Grid(enc.shape[0], enc.shape[1])
    grid.grid = decode_grids(enc[None])[0]
    return grid


def encode_obj(obj: WorldObj | None) -> tuple[int, int, int]:
    return (EMPTY, 0, 0) if obj is None else obj.encode()


class SplitMiniGridEnv(MiniGridEnv):
    """Base of misgen's MiniGrid envs: a plain ``MiniGridEnv`` plus goal bookkeeping.

    ``_gen_grid`` (MiniGrid's level hook) retries the subclass's ``_try_gen_grid``, which builds
    one candidate level with all randomness from ``self.np_random`` (seeded by
    ``reset(seed=level_seed)``, so a level depends only on its seed and the config) and sets
    ``self.goal_cells`` (goal name -> ``(x, y)``), ``self.mission_color`` / ``mission_type``
    (indices into :data:`COLORS` / :data:`OBJECT_TYPES`) and the class's ``level_fields``.
    Subclasses may override ``step`` (as MiniGrid's Fetch does), but must change the grid only through
    ``MiniGridEnv.step``'s actions on the front cell. The class is usable on its own as a MiniGrid
    env (dict observations, all seven actions) by people who bring MiniGrid wrappers.

    Class attributes:
        goal_names: candidate goals, intended first (the order of the EnvSpec's goals).
        actions_used: the MiniGrid actions misgen's ``Discrete`` action space maps to.
        level_fields: per-level integers the env's ``step`` / ``goal_events`` / oracle read.
    """

    goal_names: ClassVar[tuple[str, ...]] = ()
    actions_used: ClassVar[tuple[Actions, ...]] = (Actions.left, Actions.right, Actions.forward)
    level_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, render_mode: str | None = None, **kwargs: Any) -> None:
        self.config = config
        self.goal_cells: dict[str, tuple[int, int]] = {}
        self.mission_color = 0
        self.mission_type = 0
        super().__init__(
            mission_space=MissionSpace(mission_func=lambda: self.mission_text()),
            width=config.width,
            height=config.height,
            max_steps=config.max_steps,
            see_through_walls=True,
            render_mode=render_mode,
            **kwargs,
        )

    def _gen_grid(self, width: int, height: int) -> None:
        """Retry :meth:`_try_gen_grid` until it yields a level where every goal is feasible.

        Rejection sampling keeps layouts simple to describe; retries draw from the same
        ``np_random``, so a level still depends only on its seed.
        """
        for _ in range(1000):
            self.grid = Grid(width, height)
            self.goal_cells = {}
            self.carrying = None
            if self._try_gen_grid(width, height):
                self.mission = self.mission_text()
                return
        raise MisgenError(
            f"{type(self).__name__}: no valid level in 1000 tries with {self.config}; use a larger room"
        )

    def mission_text(self) -> str:
        """MiniGrid's mission string (fixed per config; its encoding is ``mission_color/type``)."""
        raise NotImplementedError

    def _try_gen_grid(self, width: int, height: int) -> bool:
        """Build one candidate level; return whether it is valid."""
        raise NotImplementedError

    def goal_events(
        self, action: int, carried_before: WorldObj | None, front: tuple[int, int]
    ) -> dict[str, bool]:
        """Goals reached by the step just taken (the core ORs them into the episode's flags).

        Args:
            action: the MiniGrid action taken.
            carried_before: what the agent held before the step.
            front: the cell the agent faced before the step (where pickup/toggle acted).
        """
        raise NotImplementedError

    def oracle_action(self, goal: str) -> int:
        """The MiniGrid action a scripted agent pursuing ``goal`` takes now (true state)."""
        raise NotImplementedError

    def pos(self) -> tuple[int, int]:
        return int(self.agent_pos[0]), int(self.agent_pos[1])

    def picked_up(self, action: int, carried_before: WorldObj | None) -> WorldObj | None:
        """The object picked up by this step, if any."""
        if action == Actions.pickup and carried_before is None and self.carrying is not None:
            return self.carrying
        return None


@dataclass(frozen=True)
class MiniGridState(BatchState):
    """A batch of MiniGrid levels as arrays (see the module docstring)."""

    grid: np.ndarray  # (N, W, H, 3) uint8: MiniGrid's Grid.encode()
    agent: np.ndarray  # (N, 2) int64: MiniGrid (x, y)
    direction: np.ndarray  # (N,) int64: MiniGrid agent_dir
    carrying: np.ndarray  # (N, 3) uint8: encoding of the carried object; (1, 0, 0) when none
    t: np.ndarray  # (N,) int64: MiniGrid step_count
    level: np.ndarray  # (N, K) int64: BASE_LEVEL_FIELDS + the env's level_fields
    goal_cells: np.ndarray  # (N, G, 2) int64: (x, y) of each goal, fixed per level
    reached: np.ndarray  # (N, G) bool: goal reached this episode
    died: np.ndarray  # (N,) bool: stepped into lava
    level_seed: np.ndarray  # (N,) int64


def _skip_obs() -> None:
    return None


class MiniGridCore:
    """Functional core over a :class:`SplitMiniGridEnv` subclass (set ``env_type`` in a subclass).

    ``step`` is pure (inputs are never mutated); see the module docstring for how it runs
    MiniGrid's own dynamics.
    """

    env_type: ClassVar[type[SplitMiniGridEnv]]

    def __init__(self, config: Any) -> None:
        self.config = config
        self._env = self.env_type(config)
        self._env.gen_obs = _skip_obs  # the core builds its own observation from the state arrays
        self.goal_names = self.env_type.goal_names
        self.intended_goal = self.goal_names[0]
        self._fields = BASE_LEVEL_FIELDS + self.env_type.level_fields
        self._actions = np.array([int(a) for a in self.env_type.actions_used], dtype=np.int64)
        self._action_index = {int(a): k for k, a in enumerate(self._actions)}
        self.action_space = gym.spaces.Discrete(len(self._actions))
        self.observation_space = gym.spaces.Box(0, 1, (NUM_CHANNELS, config.height, config.width), np.uint8)

    # -- loading rows into the scratch env -------------------------------------------------------
    def _rows(self, state: MiniGridState, index: np.ndarray | None = None) -> list[tuple[Any, ...]]:
        """Per-row Python values of ``state`` (rows ``index``), extracted batch-wide for speed."""
        s = state if index is None else state.take(index)
        return list(
            zip(
                decode_grids(s.grid),
                s.agent.tolist(),
                s.direction.tolist(),
                s.carrying.tolist(),
                s.t.tolist(),
                s.level.tolist(),
                s.goal_cells.tolist(),
                strict=True,
            )
        )

    def _load(self, row: tuple[Any, ...]) -> SplitMiniGridEnv:
        cells, agent, direction, carry, t, level, goal_cells = row
        env = self._env
        env.grid = Grid(env.width, env.height)
        env.grid.grid = cells
        env.agent_pos = tuple(agent)
        env.agent_dir = direction
        env.carrying = None if carry[0] == EMPTY else WorldObj.decode(*carry)
        env.step_count = t
        for name, value in zip(self._fields, level, strict=True):
            setattr(env, name, value)
        env.goal_cells = {g: tuple(c) for g, c in zip(self.goal_names, goal_cells, strict=True)}
        return env

    def load(self, state: MiniGridState, index: int) -> SplitMiniGridEnv:
        """The scratch MiniGrid env set to row ``index`` (valid until the core's next call)."""
        return self._load(self._rows(state, np.array([index]))[0])

    # -- the core protocol -----------------------------------------------------------------------
    def reset(self, level_seeds: np.ndarray) -> MiniGridState:
        seeds = np.asarray(level_seeds, dtype=np.int64)
        n, env = len(seeds), self._env
        w, h, g = self.config.width, self.config.height, len(self.goal_names)
        grid = np.zeros((n, w, h, 3), np.uint8)
        agent = np.zeros((n, 2), np.int64)
        direction = np.zeros(n, np.int64)
        level = np.zeros((n, len(self._fields)), np.int64)
        cells = np.zeros((n, g, 2), np.int64)
        for i, seed in enumerate(seeds):
            env.reset(seed=int(seed))
            grid[i] = env.grid.encode()
            agent[i] = env.agent_pos
            direction[i] = env.agent_dir
            level[i] = [int(getattr(env, f)) for f in self._fields]
            cells[i] = [env.goal_cells[name] for name in self.goal_names]
        carrying = np.tile(NO_CARRY, (n, 1))
        reached = np.zeros((n, g), bool)
        return MiniGridState(
            grid,
            agent,
            direction,
            carrying,
            np.zeros(n, np.int64),
            level,
            cells,
            reached,
            np.zeros(n, bool),
            seeds,
        )

    def step(
        self, state: MiniGridState, actions: np.ndarray
    ) -> tuple[MiniGridState, np.ndarray, np.ndarray, np.ndarray]:
        n = len(state.t)
        mg_actions = self._actions[np.asarray(actions, dtype=np.int64).reshape(n)].tolist()
        grid = state.grid.copy()
        out: list[tuple[Any, ...]] = []
        events = np.zeros_like(state.reached)
        for i, row in enumerate(self._rows(state)):
            env = self._load(row)
            (x, y), (dx, dy) = env.agent_pos, _DIRS[env.agent_dir]
            front = (x + dx, y + dy)
            before, action = env.carrying, mg_actions[i]
            _, reward, terminated, truncated, _ = env.step(action)
            grid[i, front[0], front[1]] = encode_obj(env.grid.get(*front))
            here = env.grid.get(*env.agent_pos)
            died = here is not None and here.type == "lava"
            out.append(
                (
                    env.agent_pos,
                    env.agent_dir,
                    encode_obj(env.carrying),
                    env.step_count,
                    reward,
                    terminated,
                    truncated,
                    died,
                )
            )
            reached = env.goal_events(action, before, front)
            events[i] = [reached.get(g, False) for g in self.goal_names]
        agent, direction, carrying, t, reward, terminated, truncated, died = zip(*out, strict=True)
        new = MiniGridState(
            grid=grid,
            agent=np.array(agent, dtype=np.int64),
            direction=np.array(direction, dtype=np.int64),
            carrying=np.array(carrying, dtype=np.uint8),
            t=np.array(t, dtype=np.int64),
            level=state.level,
            goal_cells=state.goal_cells,
            reached=state.reached | events,
            died=state.died | np.array(died, dtype=bool),
            level_seed=state.level_seed,
        )
        return new, np.array(reward, np.float64), np.array(terminated, bool), np.array(truncated, bool)

    def observe(self, state: MiniGridState) -> np.ndarray:
        n = len(state.t)
        g = state.grid.astype(np.intp)
        code = (g[..., 0] * 18 + g[..., 1] * 3 + g[..., 2]).transpose(0, 2, 1)  # (N, H, W): row = y
        h, w = code.shape[1:]
        obs = np.empty((n, NUM_CHANNELS, h, w), np.uint8)
        obs[:, :CH_AGENT] = _CELL_PLANES[code].transpose(0, 3, 1, 2)
        obs[:, CH_AGENT] = 0
        ar = np.arange(n)
        obs[ar, CH_AGENT, state.agent[:, 1], state.agent[:, 0]] = 1
        carry_type = state.carrying[:, 0].astype(np.int64)
        has = (carry_type != EMPTY)[:, None]
        const = np.concatenate(
            [
                np.eye(4, dtype=np.uint8)[state.direction],
                _CARRY_ONEHOT[carry_type],
                _COLOR_ONEHOT[state.carrying[:, 1].astype(np.int64)] * has,
                _COLOR_ONEHOT[state.level[:, 0]],
                np.eye(len(OBJECT_TYPES), dtype=np.uint8)[state.level[:, 1]],
            ],
            axis=1,
        )  # (N, 27)
        obs[:, CH_DIR:] = const[:, :, None, None]
        return obs

    def facts(self, state: MiniGridState) -> GoalFacts:
        return GoalFacts(
            agent_pos=state.agent[:, ::-1].copy(),
            goal_pos={g: state.goal_cells[:, k, ::-1].copy() for k, g in enumerate(self.goal_names)},
            goal_reached={g: state.reached[:, k].copy() for k, g in enumerate(self.goal_names)},
            died=state.died.copy(),
        )

    def oracle_actions(self, state: MiniGridState, goal: str) -> np.ndarray:
        if goal not in self.goal_names:
            raise KeyError(f"{self.env_type.__name__} has no goal {goal!r}; goals: {self.goal_names}")
        rows = self._rows(state)
        return np.array(
            [self._action_index[int(self._load(row).oracle_action(goal))] for row in rows], dtype=np.int64
        )

    def render(self, state: MiniGridState, index: int = 0, tile_size: int = 16) -> np.ndarray:
        """MiniGrid's own full-grid rendering of env ``index`` (no view highlight)."""
        env = self.load(state, index)
        return env.grid.render(tile_size, env.agent_pos, env.agent_dir)


def manhattan(a: tuple[int, int], b: tuple[int, int]) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def color_index(name: str) -> int:
    if name not in COLOR_TO_IDX:
        raise ValueError(f"unknown MiniGrid colour {name!r}; valid: {', '.join(COLOR_NAMES)}")
    return COLOR_TO_IDX[name]


__all__ = [
    "COLORS",
    "OBJECT_TYPES",
    "MiniGridCore",
    "MiniGridState",
    "SplitMiniGridEnv",
    "decode_grid",
]
