"""Environment specs: splits and candidate goals declared as data.

An :class:`EnvSpec` is what the rest of the suite knows about an environment: how to build it for a
split, which level seeds each split draws from (ranges that never overlap, so no test level was seen
in training), and which goals an agent could be pursuing. Probes ask "which of these goals?", so the
goals are part of the spec, not prose in a docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym

from misgen.errors import unknown_choice

GoalRole = Literal["intended", "proxy", "distractor"]
SPLIT_NAMES = ("train", "test-iid", "test-shift")


@dataclass(frozen=True)
class Goal:
    """A candidate goal an agent might pursue.

    Attributes:
        name: key used in ``info["goal_pos"]`` / ``info["goal_reached"]`` and in rollouts.
        role: ``intended`` (what the designer rewards), ``proxy`` (coincides with it in training),
            or ``distractor``.
        meaning: one line a researcher reads in tables.
    """

    name: str
    role: GoalRole
    meaning: str


@dataclass(frozen=True)
class Split:
    """One distribution of levels.

    Attributes:
        name: ``train``, ``test-iid`` (held-out levels, training goal distribution) or
            ``test-shift`` (held-out levels where intended goal and proxy come apart).
        seed_start: first level seed of the split's range.
        seed_stop: one past the last level seed.
        kwargs: environment config overrides that define the split (e.g. goal placement).
    """

    name: str
    seed_start: int
    seed_stop: int
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> range:
        return range(self.seed_start, self.seed_stop)

    def overlaps(self, other: Split) -> bool:
        return self.seed_start < other.seed_stop and other.seed_start < self.seed_stop


# Builds a batched env: (spec, split, num_envs, seed, overrides) -> VectorEnv
VectorFactory = Callable[["EnvSpec", Split, int, int, Mapping[str, Any]], gym.vector.VectorEnv]
# Builds a single env for gymnasium.make and the env checker: (spec, split, overrides) -> Env
SingleFactory = Callable[["EnvSpec", Split, Mapping[str, Any]], gym.Env]


@dataclass(frozen=True)
class EnvSpec:
    """Everything the suite knows about one environment.

    Attributes:
        id: registry name, e.g. ``maze-cheese``.
        gym_id: Gymnasium id, e.g. ``misgen/MazeCheese-v0`` (``split=`` is a make kwarg).
        backend: ``native``, ``procgen`` or ``minigrid``.
        description: one line for ``misgen envs``.
        splits: split name -> :class:`Split`; at least train, test-iid and test-shift.
        goals: candidate goals; exactly one is ``intended``.
        knob: name of the config field that sets the fraction of training levels where intended
            goal and proxy are disambiguated (e.g. ``cheese_random_fraction``).
        make_vector: factory for the batched env.
        make_single: factory for one (non-batched) env, used by ``gymnasium.make``.
        config_type: the env's frozen config dataclass (documented fields; ``--set`` targets).
        make_core: for native envs, a factory ``config -> functional core`` that planners and
            counterfactual probes may branch; ``None`` for external backends.
        requires: importable modules the backend needs (e.g. ``("procgen",)``); tests and
            ``misgen envs`` mark the env unavailable when one is missing.
        agent_channel: for symbolic grid observations with the agent as a single marked cell, the
            channel that marks it (agents may re-centre their view on it); ``None`` otherwise.
        exploration_bonus: training-only episodic novelty bonus (reward per step onto an
            observation new to the episode) that agents supporting one use by default here; set
            only where a random policy almost never sees reward, and small next to the env's
            rewards. 0 (the default) means none: on envs with small, frequent rewards the bonus
            would outweigh them (persistent, coin 1: PPO's coin success fell 0.35 -> 0.02 while it
            lasted).
        difficulty: config fields that set how hard the training levels are (maze sizes, level
            length); ``misgen envs`` and run.json show their values, since learning speed and
            results depend on them.
    """

    id: str
    gym_id: str
    backend: str
    description: str
    splits: Mapping[str, Split]
    goals: tuple[Goal, ...]
    knob: str | None
    make_vector: VectorFactory
    make_single: SingleFactory
    config_type: type | None = None
    make_core: Callable[[Any], Any] | None = None
    requires: tuple[str, ...] = ()
    agent_channel: int | None = None
    exploration_bonus: float = 0.0
    difficulty: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        missing = [s for s in SPLIT_NAMES if s not in self.splits]
        if missing:
            raise ValueError(f"env {self.id!r} lacks splits {missing}")
        names = list(self.splits)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if self.splits[a].overlaps(self.splits[b]):
                    raise ValueError(f"env {self.id!r}: splits {a!r} and {b!r} share level seeds")
        if sum(g.role == "intended" for g in self.goals) != 1:
            raise ValueError(f"env {self.id!r} must declare exactly one intended goal")

    def available(self) -> bool:
        """Whether the backend's optional dependencies are importable here."""
        import importlib.util

        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    @property
    def intended_goal(self) -> Goal:
        return next(g for g in self.goals if g.role == "intended")

    @property
    def proxy_goals(self) -> tuple[Goal, ...]:
        return tuple(g for g in self.goals if g.role == "proxy")

    @property
    def goal_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.goals)

    def split(self, name: str) -> Split:
        try:
            return self.splits[name]
        except KeyError:
            raise unknown_choice(f"split for env {self.id!r}:", name, self.splits) from None

    def make(
        self,
        split: str,
        num_envs: int,
        seed: int,
        overrides: Mapping[str, Any] | None = None,
    ) -> gym.vector.VectorEnv:
        """Build a batched env on ``split`` whose level sampling is seeded by ``seed``."""
        return self.make_vector(self, self.split(split), num_envs, seed, dict(overrides or {}))

    def single(self, split: str, overrides: Mapping[str, Any] | None = None) -> gym.Env:
        """One (non-batched) env on ``split``, as ``gymnasium.make`` and the env checker use it."""
        return self.make_single(self, self.split(split), dict(overrides or {}))

    def config(self, split: str, overrides: Mapping[str, Any] | None = None) -> Any:
        """The resolved env config of ``split``: defaults, the split's kwargs, then ``overrides``.

        ``None`` for backends without a config dataclass.
        """
        if self.config_type is None:
            return None
        from misgen.environments.native import resolve_config

        return resolve_config(self.config_type, self.split(split), dict(overrides or {}))

    def difficulty_config(
        self, split: str = "train", overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The values of the :attr:`difficulty` fields on ``split`` (with ``overrides``)."""
        config = self.config(split, overrides)
        return {name: getattr(config, name) for name in self.difficulty} if config is not None else {}

    def core(self, split: str, overrides: Mapping[str, Any] | None = None) -> Any | None:
        """The functional core of ``split`` with ``overrides``; ``None`` for envs without one.

        The one place a core is built from a split and a run's overrides (planners, counterfactual
        probes, level regeneration, rendering).
        """
        if self.make_core is None or self.config_type is None:
            return None
        return self.make_core(self.config(split, overrides))


STANDARD_SEED_RANGES: Mapping[str, tuple[int, int]] = {
    "train": (0, 1_000_000),
    "test-iid": (1_000_000, 2_000_000),
    "test-shift": (2_000_000, 3_000_000),
}
"""The level-seed range of each standard split: disjoint, so no test level is ever trained on."""


def standard_splits(
    train: Mapping[str, Any],
    test_shift: Mapping[str, Any],
    test_iid: Mapping[str, Any] | None = None,
) -> dict[str, Split]:
    """The three standard splits on :data:`STANDARD_SEED_RANGES`.

    Args:
        train: config kwargs of the training distribution.
        test_shift: config kwargs where intended goal and proxy come apart.
        test_iid: config kwargs of held-out levels; ``None``: the training distribution.
    """
    kwargs = {"train": train, "test-iid": train if test_iid is None else test_iid, "test-shift": test_shift}
    return {name: Split(name, *STANDARD_SEED_RANGES[name], dict(kwargs[name])) for name in SPLIT_NAMES}
