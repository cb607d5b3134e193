"""The native environment framework: a functional core over batched NumPy state, and its wrappers.

A *core* is a pure, deterministic description of a game for a batch of envs:

* ``reset(level_seeds) -> state``: generate levels; content depends only on each level seed.
* ``step(state, actions) -> (state, reward, terminated, truncated)``: never mutates its input.
* ``observe(state) -> obs``: symbolic channels, ``(N, C, H, W)`` uint8; row i depends only on
  row i of the state (the wrapper observes just the envs it resets).
* ``facts(state) -> GoalFacts``: where the agent and each candidate goal are, which goals were
  reached this episode, whether the agent died. Agents never see facts; probes read them.
* ``render(state, index) -> (H, W, 3)`` uint8 for humans.
* optionally ``reset_from(previous_state, level_seeds) -> state``: the next episode after the given
  final states, for games whose state partly carries over between episodes; the wrappers call it
  at autoreset (vector) or on a seedless reset after an episode ended (single) instead of ``reset``.

Because state is a small dataclass of arrays, a planner or a counterfactual probe can copy, edit and
branch it cheaply. :class:`NativeVectorEnv` adds level-seed sampling and autoreset around any core
(``AutoresetMode.SAME_STEP``, pinned: the obs returned on a done step is the first obs of the next
episode; the last obs and facts of the finished one are in ``info["final_obs"]`` /
``info["final_info"]`` under the ``_final_obs`` / ``_final_info`` masks). :class:`NativeEnv` is the
single-env view used by ``gymnasium.make`` and the env checker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from misgen.environments.spec import EnvSpec, Split
from misgen.errors import MisgenError

S = TypeVar("S", bound="BatchState")


class BatchState:
    """Mixin for state dataclasses whose fields are all arrays with a leading batch axis."""

    def __len__(self) -> int:
        return len(getattr(self, dataclasses.fields(self)[0].name))  # type: ignore[arg-type]

    def take(self: S, index: np.ndarray | Sequence[int] | slice) -> S:
        """The sub-batch at ``index`` (a copy)."""
        return dataclasses.replace(
            self,
            **{f.name: np.array(getattr(self, f.name)[index]) for f in dataclasses.fields(self)},  # type: ignore[arg-type]
        )

    def copy(self: S) -> S:
        return self.take(slice(None))

    def merged(self: S, index: np.ndarray, other: S) -> S:
        """A new state equal to ``self`` with rows ``index`` replaced by ``other``'s rows."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = np.array(getattr(self, f.name))
            value[index] = getattr(other, f.name)
            out[f.name] = value
        return dataclasses.replace(self, **out)


@dataclass(frozen=True)
class GoalFacts:
    """Ground truth about goals for a batch; the contract between envs and probes.

    Positions are ``[row, col]`` grid cells (row 0 at the top) for native envs.
    """

    agent_pos: np.ndarray  # (N, 2)
    goal_pos: Mapping[str, np.ndarray]  # goal -> (N, 2)
    goal_reached: Mapping[str, np.ndarray]  # goal -> (N,) bool, cumulative over the episode
    died: np.ndarray  # (N,) bool
    # Optional per-env counters an env adds to ``info`` at the top level (e.g. keys-chests'
    # ``keys_collected``); name -> (N,) array. Probes must not rely on them across envs.
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    def as_info(self) -> dict[str, Any]:
        return {
            **self.extra,
            "agent_pos": self.agent_pos,
            "goal_pos": dict(self.goal_pos),
            "goal_reached": dict(self.goal_reached),
            "died": self.died,
        }


class NativeCore(Protocol):
    """What a native game provides; see the module docstring."""

    config: Any
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Discrete
    goal_names: tuple[str, ...]
    intended_goal: str

    def reset(self, level_seeds: np.ndarray) -> Any: ...

    def step(self, state: Any, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]: ...

    def observe(self, state: Any) -> np.ndarray: ...

    def facts(self, state: Any) -> GoalFacts: ...

    def render(self, state: Any, index: int = 0) -> np.ndarray: ...

    def oracle_actions(self, state: Any, goal: str) -> np.ndarray:
        """Actions that pursue exactly ``goal`` using the true state (scripted oracles)."""
        ...


def resolve_config(config_type: type, split: Split, overrides: Mapping[str, Any]) -> Any:
    """The env config for a split: defaults, then the split's kwargs, then user overrides."""
    names = {f.name for f in dataclasses.fields(config_type)}
    merged = {**split.kwargs, **overrides}
    bad = sorted(set(merged) - names)
    if bad:
        raise MisgenError(f"unknown env option(s) {', '.join(bad)}; valid: {', '.join(sorted(names))}")
    return config_type(**merged)


class EpisodeTracker:
    """Per-env episode bookkeeping shared by the vector and single-env wrappers.

    Tracks the intended-objective return, the length, and the *first* candidate goal reached, which
    becomes ``outcome`` at episode end (or ``died`` / ``timeout``). When several goals are first
    reached on the same step, the earlier one in the spec's goal order wins (intended first).
    """

    def __init__(self, goal_names: tuple[str, ...], n: int) -> None:
        self.goal_names = goal_names
        self.ret = np.zeros(n, np.float64)
        self.length = np.zeros(n, np.int64)
        self.first_goal = np.full(n, -1, np.int64)

    def restart(self, index: np.ndarray) -> None:
        self.ret[index] = 0.0
        self.length[index] = 0
        self.first_goal[index] = -1

    def update(self, reward: np.ndarray, facts: GoalFacts) -> None:
        self.ret += reward
        self.length += 1
        reached = np.stack([facts.goal_reached[g] for g in self.goal_names], axis=1)
        undecided = self.first_goal < 0
        hit = reached.any(axis=1) & undecided
        self.first_goal[hit] = np.argmax(reached[hit], axis=1)

    def outcome(self, index: np.ndarray, died: np.ndarray) -> np.ndarray:
        """Outcome names for envs ``index`` whose final ``died`` flags are given."""
        names = np.array([*self.goal_names, "died", "timeout"])
        g = len(self.goal_names)
        first = self.first_goal[index]
        return names[np.where(first >= 0, first, np.where(died, g, g + 1))]


def _next_episode(core: NativeCore, finished: Any, level_seeds: np.ndarray) -> Any:
    """The first state of the episodes that follow ``finished`` (a sub-batch of final states).

    Cores whose state partly carries over between episodes (see environments/persistent.py)
    offer ``reset_from(previous_state, level_seeds)``; every other core starts afresh.
    """
    reset_from = getattr(core, "reset_from", None)
    if reset_from is None:
        return core.reset(level_seeds)
    return reset_from(finished, level_seeds)


def _facts_at(facts: GoalFacts, index: np.ndarray) -> GoalFacts:
    return GoalFacts(
        agent_pos=facts.agent_pos[index],
        goal_pos={k: v[index] for k, v in facts.goal_pos.items()},
        goal_reached={k: v[index] for k, v in facts.goal_reached.items()},
        died=facts.died[index],
        extra={k: v[index] for k, v in facts.extra.items()},
    )


class NativeVectorEnv(gym.vector.VectorEnv):
    """Batched Gymnasium VectorEnv over a native core, sampling levels from one split.

    Every misgen vector env (native or not) offers ``misgen_spec`` (its EnvSpec), ``split``,
    ``level_seeds`` and ``oracle_actions(goal)``; native ones also expose ``core`` and ``state``.

    ``info`` per step holds the goal facts of the state matching the returned observation, plus
    ``level_seed``; for envs whose episode just ended, ``final_info`` (masked by ``_final_info``)
    holds the facts of the final state and ``outcome``, ``intended_return`` and ``episode_length``.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}

    def __init__(self, spec: EnvSpec, split: Split, num_envs: int, seed: int, core: NativeCore) -> None:
        self.misgen_spec = spec
        self.split = split
        self.core = core
        self.num_envs = num_envs
        self.render_mode = "rgb_array"
        self.single_observation_space = core.observation_space
        self.single_action_space = core.action_space
        self.observation_space = gym.vector.utils.batch_space(core.observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(core.action_space, num_envs)
        self._rng = np.random.default_rng(seed)
        self.state: Any = None
        self._episodes = EpisodeTracker(core.goal_names, num_envs)

    def _sample_level_seeds(self, n: int) -> np.ndarray:
        return self._rng.integers(self.split.seed_start, self.split.seed_stop, size=n, dtype=np.int64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.state = self.core.reset(self._sample_level_seeds(self.num_envs))
        self._episodes.restart(np.arange(self.num_envs))
        return self.core.observe(self.state), self._info(self.core.facts(self.state))

    def step(self, actions):
        actions = np.asarray(actions).reshape(self.num_envs)
        self.state, reward, terminated, truncated = self.core.step(self.state, actions)
        facts = self.core.facts(self.state)
        self._episodes.update(reward, facts)
        done = terminated | truncated
        obs = self.core.observe(self.state)
        final: dict[str, Any] | None = None
        if done.any():
            idx = np.flatnonzero(done)
            final_facts = _facts_at(facts, idx)
            final = {
                "index": idx,
                "obs": obs[idx],
                "facts": final_facts,
                "outcome": self._episodes.outcome(idx, final_facts.died),
                "intended_return": self._episodes.ret[idx].copy(),
                "episode_length": self._episodes.length[idx].copy(),
                "level_seed": self.level_seeds[idx].copy(),
            }
            fresh = _next_episode(self.core, self.state.take(idx), self._sample_level_seeds(len(idx)))
            self.state = self.state.merged(idx, fresh)
            self._episodes.restart(idx)
            obs[idx] = self.core.observe(fresh)  # rows are independent: observe only the new ones
            facts = self.core.facts(self.state)
        info = self._info(facts)
        if final is not None:
            info.update(self._final_info(final))
        return obs, reward.astype(np.float32), terminated, truncated, info

    @property
    def level_seeds(self) -> np.ndarray:
        return self.state.level_seed

    def _info(self, facts: GoalFacts) -> dict[str, Any]:
        info = facts.as_info()
        info["level_seed"] = self.level_seeds.copy()
        return info

    def _final_info(self, final: dict[str, Any]) -> dict[str, Any]:
        n, idx = self.num_envs, final["index"]
        mask = np.zeros(n, bool)
        mask[idx] = True
        final_obs = np.empty(n, dtype=object)
        for row, i in enumerate(idx):  # object array of per-env obs, as Gymnasium's SAME_STEP does
            final_obs[i] = final["obs"][row]
        facts: GoalFacts = final["facts"]

        def scatter(values: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full((n, *values.shape[1:]), fill, dtype=values.dtype)
            out[idx] = values
            return out

        final_info = {
            **{k: scatter(v, 0) for k, v in facts.extra.items()},
            "agent_pos": scatter(facts.agent_pos, 0),
            "goal_pos": {k: scatter(v, 0) for k, v in facts.goal_pos.items()},
            "goal_reached": {k: scatter(v, False) for k, v in facts.goal_reached.items()},
            "died": scatter(facts.died, False),
            "outcome": scatter(final["outcome"].astype("U32"), ""),
            "intended_return": scatter(final["intended_return"], 0.0),
            "episode_length": scatter(final["episode_length"], 0),
            "level_seed": scatter(final["level_seed"], -1),
        }
        return {"final_obs": final_obs, "_final_obs": mask, "final_info": final_info, "_final_info": mask}

    def render(self) -> tuple[np.ndarray, ...]:
        return tuple(self.core.render(self.state, i) for i in range(self.num_envs))

    def oracle_actions(self, goal: str) -> np.ndarray:
        """Actions of a scripted agent pursuing ``goal`` with the true state (see agents.scripted)."""
        return self.core.oracle_actions(self.state, goal)


class NativeEnv(gym.Env):
    """Single-env view of a native core, for ``gymnasium.make`` and the Gymnasium env checker.

    ``info`` holds the goal facts of env 0 (scalars / length-2 arrays) and, on the last step,
    ``outcome``, ``intended_return`` and ``episode_length``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self, spec: EnvSpec, split: Split, core: NativeCore, render_mode: str | None = "rgb_array"
    ) -> None:
        self.misgen_spec = spec
        self.split = split
        self.core = core
        self.render_mode = render_mode
        self.observation_space = core.observation_space
        self.action_space = core.action_space
        self.state: Any = None
        self._episodes = EpisodeTracker(core.goal_names, 1)
        self._ended = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """A fresh level; after a finished episode and without ``seed``, the core's next episode.

        Only cores with ``reset_from`` (state carried across episodes) see the difference.
        """
        super().reset(seed=seed)
        level = self.np_random.integers(self.split.seed_start, self.split.seed_stop, size=1, dtype=np.int64)
        carry = seed is None and self._ended and self.state is not None
        self.state = _next_episode(self.core, self.state, level) if carry else self.core.reset(level)
        self._ended = False
        self._episodes.restart(np.arange(1))
        return self.core.observe(self.state)[0], self._info(self.core.facts(self.state))

    def step(self, action):
        self.state, reward, terminated, truncated = self.core.step(self.state, np.asarray([action]))
        facts = self.core.facts(self.state)
        self._episodes.update(reward, facts)
        info = self._info(facts)
        self._ended = bool(terminated[0] or truncated[0])
        if self._ended:
            info["outcome"] = str(self._episodes.outcome(np.array([0]), facts.died)[0])
            info["intended_return"] = float(self._episodes.ret[0])
            info["episode_length"] = int(self._episodes.length[0])
        return (
            self.core.observe(self.state)[0],
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            info,
        )

    def _info(self, facts: GoalFacts) -> dict[str, Any]:
        f = _facts_at(facts, np.array([0]))
        info = f.as_info()
        info = {
            **{k: v[0].item() for k, v in f.extra.items()},
            "agent_pos": info["agent_pos"][0],
            "goal_pos": {k: v[0] for k, v in info["goal_pos"].items()},
            "goal_reached": {k: bool(v[0]) for k, v in info["goal_reached"].items()},
            "died": bool(info["died"][0]),
            "level_seed": int(self.state.level_seed[0]),
        }
        return info

    def render(self) -> np.ndarray:
        return self.core.render(self.state, 0)


def native_factories(config_type: type, core_type: type):
    """The (vector, single) factories of a native env: resolve config for the split, build core."""

    def make_vector(
        spec: EnvSpec, split: Split, num_envs: int, seed: int, overrides: Mapping[str, Any]
    ) -> NativeVectorEnv:
        return NativeVectorEnv(
            spec, split, num_envs, seed, core_type(resolve_config(config_type, split, overrides))
        )

    def make_single(spec: EnvSpec, split: Split, overrides: Mapping[str, Any]) -> NativeEnv:
        return NativeEnv(spec, split, core_type(resolve_config(config_type, split, overrides)))

    return make_vector, make_single
