"""Environments with train/test splits where the intended goal and a proxy come apart.

Every environment registers an :class:`~misgen.environments.spec.EnvSpec` in :data:`ENVS` and a
Gymnasium id (``misgen/<Name>-v0``, ``split=`` as a make kwarg). Modules in this package register
themselves on import; importing this package imports them all. Optional backends (procgen) must
import their heavy dependencies lazily, inside factories.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from misgen.environments.spec import EnvSpec, Goal, Split
from misgen.registry import Registry

ENVS: Registry[EnvSpec] = Registry("env", package="misgen.environments")

__all__ = ["ENVS", "EnvSpec", "Goal", "Split", "get_env", "register_env"]


def register_env(spec: EnvSpec) -> EnvSpec:
    """Register ``spec`` in :data:`ENVS` and under its Gymnasium id.

    A second registration of either name is an error (nothing is registered then): silently
    keeping the first would hide two envs sharing an id, or a module imported under two names.
    """
    if spec.gym_id in gym.registry:
        raise ValueError(f"Gymnasium id {spec.gym_id!r} (env {spec.id!r}) is already registered")
    ENVS.register(spec.id, spec)
    gym.register(
        id=spec.gym_id,
        entry_point=_gym_make_single,
        vector_entry_point=_gym_make_vector,
        kwargs={"misgen_env": spec.id},
    )
    return spec


def get_env(name: str) -> EnvSpec:
    """The spec named ``name``; unknown names raise with the valid choices."""
    return ENVS.get(name)


def _gym_make_single(
    misgen_env: str, split: str = "train", render_mode: str | None = None, **overrides: Any
) -> gym.Env:
    return get_env(misgen_env).single(split, overrides)


def _gym_make_vector(
    misgen_env: str,
    num_envs: int = 1,
    split: str = "train",
    seed: int = 0,
    render_mode: str | None = None,
    **overrides: Any,
) -> gym.vector.VectorEnv:
    return get_env(misgen_env).make(split, num_envs, seed, overrides)


ENVS.load_all()
