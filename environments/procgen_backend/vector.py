"""Gymnasium VectorEnv over ``procgen.ProcgenGym3Env`` with goals moved by editing game state.

:class:`ProcgenVectorEnv` follows the contract of
:class:`~misgen.environments.native.NativeVectorEnv` (``AutoresetMode.SAME_STEP``; ``info`` keys
``agent_pos``, ``goal_pos``, ``goal_reached``, ``died``, ``level_seed``; ``final_obs`` /
``final_info`` under ``_final_obs`` / ``_final_info`` masks; attributes ``misgen_spec``, ``split``,
``level_seeds``; ``oracle_actions(goal)``), with these procgen-specific facts:

* **Levels.** A split's seed range ``[start, stop)`` becomes procgen's ``start_level`` /
  ``num_levels``, so procgen samples every level seed from the split and the ranges of different
  splits never overlap (procgen's default ``num_levels=0`` would draw from all seeds, so a "test"
  env can replay training levels: openai/procgen issue #100).
* **Goal edits.** gym3 resets an env inside ``act``. After every step, each env whose ``first``
  flag is set has its fresh (unedited) level's state read, edited by the game's rules (e.g. the coin
  moved), validated (:mod:`.state`) and written back; then the batch is observed again, because
  ``set_state`` re-renders. The policy therefore never sees the unedited level.
* **Final observation.** gym3 never returns the terminal frame of an episode. ``final_obs`` holds
  the last frame of the finished episode that was observed, i.e. the one its final action was
  chosen on; ``final_info["agent_pos"]`` likewise is the agent's position before the final step.
  ``goal_reached`` at the final step is exact for the intended goal (procgen's ``level_complete``)
  and for every goal on the same cell; another goal first touched on the very last step of a
  death / timeout is missed.
* **Termination.** An episode ends ``terminated`` when the level was completed or the agent died
  (coinrun: lava, saw, enemy, out of bounds); ``truncated`` when it ran for procgen's timeout
  (coinrun 1000 steps, maze 500).
* **Positions** are grid cells ``[row, col]`` with row 0 at the top, as for native envs (procgen's
  world has y up; ``row = height - 1 - y``). A goal counts as reached when the agent's box overlaps
  its cell, by procgen's own grid-collision rule.

Per-env work (one ``get_state`` plus a ``struct`` parse per env per step, about 0.07 ms each) is a
Python loop over envs, unavoidable with procgen's per-env C API; everything else is batched.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from misgen.environments.native import EpisodeTracker, GoalFacts, NativeVectorEnv, _facts_at, resolve_config
from misgen.environments.procgen_backend.state import ProcgenState, StateError, check_compatible, parse_state
from misgen.environments.spec import EnvSpec, Split
from misgen.errors import MisgenError

MAX_STATE_SIZE = 2**20  # procgen's own buffer size for get_state
NUM_ACTIONS = 15
FRAME = 64
POS_EPS = 0.001  # procgen's grid-collision shrink (basic-abstract-game.h POS_EPS = -0.001)


@dataclass(frozen=True)
class ProcgenOptions:
    """procgen options shared by every procgen env.

    Attributes:
        distribution_mode: ``hard`` (the setting of Langosco et al.) or ``easy``.
        num_levels: 0 draws from the split's whole level-seed range; N > 0 only from its first N
            seeds (e.g. 200 for the procgen-benchmark "200 training levels" regime).
        use_backgrounds: procgen's background images (off gives plain black backgrounds).
        num_threads: procgen stepping threads (1 is best on small CPUs; it never changes results).
    """

    distribution_mode: Literal["easy", "hard"] = "hard"
    num_levels: int = 0
    use_backgrounds: bool = True
    num_threads: int = 1

    def __post_init__(self) -> None:
        if self.distribution_mode not in ("easy", "hard"):
            raise ValueError(f"distribution_mode must be 'easy' or 'hard', got {self.distribution_mode!r}")
        if self.num_levels < 0:
            raise ValueError("num_levels must be >= 0")
        if self.num_threads < 0:
            raise ValueError("num_threads must be >= 0")


class GameRules(Protocol):
    """What one procgen game adds to the generic wrapper: goal placement, goals, oracle."""

    env_name: str
    goal_names: tuple[str, ...]
    intended_goal: str
    config: Any

    def prepare(self, state: ProcgenState) -> tuple[ProcgenState, np.ndarray]:
        """Edit a fresh level. Returns the (possibly) edited state and the goal cells (G, 2) [x, y]."""
        ...

    def oracle_actions(self, env: ProcgenVectorEnv, goal: str) -> np.ndarray:
        """Actions pursuing ``goal`` with the true state (scripted oracles)."""
        ...


def procgen_kwargs(config: ProcgenOptions, split: Split) -> dict[str, Any]:
    """``ProcgenGym3Env`` keyword arguments confining levels to ``split`` (rand_seed excluded)."""
    size = split.seed_stop - split.seed_start
    if config.num_levels > size:
        raise MisgenError(f"num_levels {config.num_levels} exceeds split {split.name!r}'s {size} level seeds")
    if split.seed_stop > 2**31 - 1:
        raise MisgenError(f"split {split.name!r} seeds exceed procgen's int32 level seeds")
    return {
        "num_levels": config.num_levels or size,
        "start_level": split.seed_start,
        "distribution_mode": config.distribution_mode,
        "use_backgrounds": config.use_backgrounds,
        "num_threads": config.num_threads,
        "center_agent": True,
    }


def make_gym3(env_name: str, num: int, rand_seed: int, kwargs: Mapping[str, Any]) -> Any:
    """A ``ProcgenGym3Env`` (lazy import: procgen is an optional dependency)."""
    try:
        # procgen imports the unmaintained ``gym`` only to register its own gym ids; gym then prints
        # a deprecation banner to stderr that says nothing about misgen's use. Keep it quiet.
        with contextlib.redirect_stderr(io.StringIO()):
            from procgen import ProcgenGym3Env
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise MisgenError("procgen envs need the procgen extra: pip install 'misgen[procgen]'") from e
    return ProcgenGym3Env(num=num, env_name=env_name, rand_seed=rand_seed, **kwargs)


class StateIO:
    """Per-env ``get_state`` / ``set_state`` on a gym3 procgen env.

    procgen's ``callmethod("get_state")`` serializes every env each call; the per-env C functions
    (which that method loops over) let the wrapper touch only the envs it edits.
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self._buf = env._ffi.new(f"char[{MAX_STATE_SIZE}]")

    def get(self, index: int) -> bytes:
        n = self.env.call_c_func("get_state", index, self._buf, MAX_STATE_SIZE)
        return bytes(self.env._ffi.buffer(self._buf, n))

    def set(self, index: int, state: ProcgenState, reference: ProcgenState) -> None:
        """Write a validated state; ``reference`` is a state this env produced (same options)."""
        check_compatible(state, reference)
        self.env.call_c_func("set_state", index, state.raw, len(state.raw))


def reached_cells(agent: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Whether each agent box overlaps each goal cell, by procgen's grid-collision rule.

    Args:
        agent: (N, 4) float [x, y, rx, ry] in world units (y up).
        cells: (N, G, 2) int [x, y].

    Returns:
        (N, G) bool.
    """
    x, y, rx, ry = (agent[:, i : i + 1] for i in range(4))
    lo_x, hi_x = np.trunc(x - (rx - POS_EPS)), np.trunc(x + (rx - POS_EPS))
    lo_y, hi_y = np.trunc(y - (ry - POS_EPS)), np.trunc(y + (ry - POS_EPS))
    cx, cy = cells[..., 0], cells[..., 1]
    return (cx >= lo_x) & (cx <= hi_x) & (cy >= lo_y) & (cy <= hi_y)


def agent_box(state: ProcgenState) -> np.ndarray:
    """[x, y, rx, ry] of the player (world units, y up)."""
    a = state.agent
    return np.array([a["x"], a["y"], a["rx"], a["ry"]], dtype=np.float64)


class ProcgenVectorEnv(gym.vector.VectorEnv):
    """Batched procgen env on one split with the game's goal edits (see the module docstring).

    Attributes beyond the common ones: ``states`` (the parsed :class:`ProcgenState` of each env,
    matching the last returned observation), ``goal_cells`` (N, G, 2) [x, y] per episode,
    ``last_actions``, ``episode_steps`` and ``episode_ids`` (for planners that cache plans).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}

    def __init__(self, spec: EnvSpec, split: Split, num_envs: int, seed: int, rules: GameRules) -> None:
        self.misgen_spec = spec
        self.split = split
        self.rules = rules
        self.num_envs = num_envs
        self.render_mode = "rgb_array"
        self.gym3_kwargs = procgen_kwargs(rules.config, split)
        self.single_observation_space = gym.spaces.Box(0, 255, (3, FRAME, FRAME), np.uint8)
        self.single_action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._rng = np.random.default_rng(seed)
        self._gym3: Any = None
        self._io: StateIO | None = None
        self.states: list[ProcgenState] = []
        g = len(rules.goal_names)
        self.goal_cells = np.zeros((num_envs, g, 2), np.int64)
        self._intended = rules.goal_names.index(rules.intended_goal)
        self._agent = np.zeros((num_envs, 4), np.float64)
        self._reached = np.zeros((num_envs, g), bool)
        self._obs = np.zeros((num_envs, 3, FRAME, FRAME), np.uint8)
        self.last_actions = np.full(num_envs, -1, np.int64)
        self.episode_ids = np.zeros(num_envs, np.int64)
        self._episodes = EpisodeTracker(rules.goal_names, num_envs)

    # gym3 plumbing ------------------------------------------------------------------------------
    def _observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rew, ob, first = self._gym3.observe()
        return (
            np.asarray(rew, np.float32),
            np.ascontiguousarray(ob["rgb"].transpose(0, 3, 1, 2)),
            np.asarray(first, bool),
        )

    def _read_states(self) -> None:
        assert self._io is not None
        self.states = [parse_state(self._io.get(i), check_cells=False) for i in range(self.num_envs)]
        self._agent = np.stack([agent_box(s) for s in self.states])

    def _prepare(self, index: np.ndarray) -> None:
        """Apply the game's goal edits to the fresh levels of envs ``index``."""
        assert self._io is not None
        for i in index:
            fresh = self.states[i]
            try:
                edited, cells = self.rules.prepare(fresh)
            except StateError as e:
                raise StateError(
                    f"{self.misgen_spec.id} level {fresh.step['current_level_seed']}: {e}"
                ) from e
            if edited is not fresh:
                self._io.set(int(i), edited, fresh)
                self.states[i] = edited
            self.goal_cells[i] = cells
            self._agent[i] = agent_box(edited)
        self._reached[index] = reached_cells(self._agent[index], self.goal_cells[index])
        self.episode_ids[index] += 1

    # Gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start a fresh gym3 env (gym3 cannot reset): levels sampled from a seed drawn from the
        wrapper's generator, so ``reset(seed=s)`` is reproducible."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.close_extras()
        rand_seed = int(self._rng.integers(0, 2**31 - 1))
        self._gym3 = make_gym3(self.rules.env_name, self.num_envs, rand_seed, self.gym3_kwargs)
        self._io = StateIO(self._gym3)
        self._read_states()
        self._prepare(np.arange(self.num_envs))
        _, self._obs, _ = self._observe()
        self._episodes.restart(np.arange(self.num_envs))
        self.last_actions[:] = -1
        return self._obs.copy(), self._info()

    def step(self, actions):
        if self._gym3 is None:
            raise MisgenError("call reset() before step()")
        actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64)
        prev_obs, prev_agent = self._obs, self._agent.copy()
        self._gym3.act(actions.astype(np.int32))
        self.last_actions = actions
        reward, obs, first = self._observe()
        self._read_states()
        live = ~first
        self._reached[live] |= reached_cells(self._agent[live], self.goal_cells[live])
        final: dict[str, Any] | None = None
        terminated, truncated = np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool)
        step_reached = self._reached.copy()
        died = np.zeros(self.num_envs, bool)
        if first.any():
            idx = np.flatnonzero(first)
            # The finished episode's last frame and position are the pre-step ones (module doc).
            complete = np.array([bool(self.states[i].step["level_complete"]) for i in idx])
            length = self._episodes.length[idx] + 1
            timeout = np.array([int(self.states[i].step["timeout"]) for i in idx])
            trunc = ~complete & (length >= timeout)
            truncated[idx], terminated[idx] = trunc, ~trunc
            died[idx] = ~complete & ~trunc
            same_cell = (self.goal_cells[idx] == self.goal_cells[idx, self._intended][:, None]).all(axis=2)
            step_reached[idx] |= complete[:, None] & same_cell
        facts = GoalFacts(
            agent_pos=np.where(first[:, None], self._cells(prev_agent), self._cells(self._agent)),
            goal_pos=self._goal_pos(),
            goal_reached={g: step_reached[:, k].copy() for k, g in enumerate(self.rules.goal_names)},
            died=died,
        )
        self._episodes.update(reward.astype(np.float64), facts)
        if first.any():
            final_facts = _facts_at(facts, idx)
            final = {
                "index": idx,
                "obs": prev_obs[idx],
                "facts": final_facts,
                "outcome": self._episodes.outcome(idx, final_facts.died),
                "intended_return": self._episodes.ret[idx].copy(),
                "episode_length": self._episodes.length[idx].copy(),
                "level_seed": np.array([self.states[i].step["prev_level_seed"] for i in idx], np.int64),
            }
            self._prepare(idx)
            _, obs, _ = self._observe()  # set_state re-rendered the edited envs
            self._episodes.restart(idx)
        self._obs = obs
        info = self._info()
        if final is not None:
            info.update(self._final_info(final))
        return obs.copy(), reward, terminated, truncated, info

    # Facts --------------------------------------------------------------------------------------
    def _cells(self, agent: np.ndarray) -> np.ndarray:
        height = np.array([s.height for s in self.states])
        col = np.floor(agent[:, 0]).astype(np.int64)
        row = height - 1 - np.floor(agent[:, 1]).astype(np.int64)
        return np.stack([row, col], axis=1)

    def _goal_pos(self) -> dict[str, np.ndarray]:
        height = np.array([s.height for s in self.states])[:, None]
        rows = height - 1 - self.goal_cells[..., 1]
        cols = self.goal_cells[..., 0]
        return {g: np.stack([rows[:, k], cols[:, k]], axis=1) for k, g in enumerate(self.rules.goal_names)}

    @property
    def level_seeds(self) -> np.ndarray:
        return np.array([s.step["current_level_seed"] for s in self.states], np.int64)

    @property
    def episode_steps(self) -> np.ndarray:
        """Steps taken in each env's current episode."""
        return self._episodes.length.copy()

    def facts(self) -> GoalFacts:
        """Goal facts of the current states (what ``info`` reported for the last observation)."""
        return GoalFacts(
            agent_pos=self._cells(self._agent),
            goal_pos=self._goal_pos(),
            goal_reached={g: self._reached[:, k].copy() for k, g in enumerate(self.rules.goal_names)},
            died=np.zeros(self.num_envs, bool),
        )

    def _info(self) -> dict[str, Any]:
        info = self.facts().as_info()
        info["level_seed"] = self.level_seeds
        return info

    # The final-info layout is NativeVectorEnv's (it only reads ``num_envs``): one definition of
    # the contract for every misgen vector env.
    _final_info = NativeVectorEnv._final_info

    def render(self) -> tuple[np.ndarray, ...]:
        """The agent-centred 64x64 frames (H, W, 3), what the policy sees."""
        return tuple(np.ascontiguousarray(o.transpose(1, 2, 0)) for o in self._obs)

    def oracle_actions(self, goal: str) -> np.ndarray:
        """Actions of a scripted agent pursuing ``goal`` with the true state (see agents.scripted)."""
        if goal not in self.rules.goal_names:
            raise MisgenError(
                f"unknown goal {goal!r} for env {self.misgen_spec.id!r}; valid: {', '.join(self.rules.goal_names)}"
            )
        return np.asarray(self.rules.oracle_actions(self, goal), np.int64)

    def close_extras(self, **kwargs: Any) -> None:
        closer = getattr(self.rules, "close", None)
        if closer is not None:
            closer()
        if self._gym3 is not None:
            self._gym3.close()
        self._gym3, self._io = None, None


class ProcgenEnv(gym.Env):
    """Single-env view (``gymnasium.make``, the env checker): a one-env :class:`ProcgenVectorEnv`.

    Because gym3 resets inside the step, the observation returned with ``terminated`` /
    ``truncated`` is the last frame of the finished episode that was observed (see the vector env);
    ``reset()`` then starts a fresh gym3 env. ``info`` holds env 0's goal facts and, on the last
    step, ``outcome``, ``intended_return`` and ``episode_length``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self, spec: EnvSpec, split: Split, rules: GameRules, render_mode: str | None = "rgb_array"
    ) -> None:
        self.misgen_spec = spec
        self.split = split
        self.render_mode = render_mode
        self.venv = ProcgenVectorEnv(spec, split, 1, 0, rules)
        self.observation_space = self.venv.single_observation_space
        self.action_space = self.venv.single_action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self.venv.reset(seed=int(self.np_random.integers(0, 2**31 - 1)))
        return obs[0], _single(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.venv.step(np.asarray([action]))
        out = _single(info)
        if info.get("_final_info", np.zeros(1, bool))[0]:
            fin = info["final_info"]
            out.update(_single(fin))
            out["outcome"] = str(fin["outcome"][0])
            out["intended_return"] = float(fin["intended_return"][0])
            out["episode_length"] = int(fin["episode_length"][0])
            obs = info["final_obs"][0][None]
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), out

    def render(self) -> np.ndarray:
        return self.venv.render()[0]

    def close(self) -> None:
        self.venv.close()


def _single(info: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "agent_pos": np.asarray(info["agent_pos"])[0],
        "goal_pos": {k: np.asarray(v)[0] for k, v in info["goal_pos"].items()},
        "goal_reached": {k: bool(v[0]) for k, v in info["goal_reached"].items()},
        "died": bool(np.asarray(info["died"])[0]),
        "level_seed": int(np.asarray(info["level_seed"])[0]),
    }


def procgen_factories(config_type: type, rules_type: type):
    """The (vector, single) factories of a procgen env: resolve config for the split, build rules."""

    def make_vector(
        spec: EnvSpec, split: Split, num_envs: int, seed: int, overrides: Mapping[str, Any]
    ) -> ProcgenVectorEnv:
        return ProcgenVectorEnv(
            spec, split, num_envs, seed, rules_type(resolve_config(config_type, split, overrides))
        )

    def make_single(spec: EnvSpec, split: Split, overrides: Mapping[str, Any]) -> ProcgenEnv:
        return ProcgenEnv(spec, split, rules_type(resolve_config(config_type, split, overrides)))

    return make_vector, make_single
