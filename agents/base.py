"""The agent protocol: what training, evaluation and probes may rely on.

Evaluation never imports an agent's internals. It needs only:

* ``initial_state(n)`` and ``act(obs, state, first, env) -> (actions, state, extras)``, where
  ``first`` marks envs whose episode just began (recurrent agents reset their memory there),
  ``env`` is the vector env being acted in (scripted oracles and planners read its true state /
  functional core; learned agents must ignore it), and ``extras`` may hold ``features``
  (activations for representation probes), ``value`` and ``reward_pred`` arrays with a leading
  batch axis.
* ``learn(env, ctx)`` for trainable agents, reporting through :class:`TrainContext`.
* ``tensors()`` / ``load_tensors()`` plus ``state_json()`` / ``load_state_json()`` so that a
  checkpoint is safetensors + JSON, loadable without pickle (see :mod:`.checkpoint`).
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import gymnasium as gym
import numpy as np
import torch

if TYPE_CHECKING:
    from misgen.environments.spec import EnvSpec

AgentKind = Literal["model-free", "model-based", "planning", "scripted"]


class TrainContext(Protocol):
    """What the harness offers a learning agent.

    Attributes:
        total_steps: env steps to reach (counted over all envs) by the end of ``learn``.
        start_step: env steps already done (non-zero when resuming from a checkpoint).
        seed: the agent's training seed (derived from the run's root seed).
    """

    total_steps: int
    start_step: int
    seed: int

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record training metrics at ``step`` (metrics.jsonl, progress bar); may checkpoint."""
        ...


class Agent(ABC):
    """Base class of every agent: the acting protocol, persistence and (optionally) learning.

    Subclasses set ``name`` (registry key), ``kind``, ``Config`` (a frozen dataclass with
    documented fields) and ``presets`` (named partial configs; ``debug`` is required and must train
    in seconds).
    """

    name: ClassVar[str]
    kind: ClassVar[AgentKind]
    Config: ClassVar[type]
    presets: ClassVar[dict[str, dict[str, Any]]] = {"debug": {}}
    trainable: ClassVar[bool] = True
    default_steps: ClassVar[int] = 100_000
    """Default training budget in env steps when ``misgen train`` gets no ``--steps``."""
    eval_points: ClassVar[int] = 10
    """Evaluations of the current policy (the true-objective curve, 32 episodes each) over a run
    by default; agents whose acting is expensive (search) may set fewer. 0: none by default."""

    def __init__(self, config: Any, observation_space: gym.Space, action_space: gym.Space, seed: int) -> None:
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.seed = seed
        self.steps_done = 0

    # Acting -------------------------------------------------------------------------------------
    @classmethod
    def env_defaults(cls, spec: EnvSpec) -> dict[str, Any]:
        """Config defaults this agent takes from the env it will train on (presets and ``--set``
        still override them). The resolved values are recorded in the run's config like any other."""
        return {}

    def initial_state(self, n: int) -> Any:
        """Recurrent state for ``n`` envs; ``None`` for memoryless agents."""
        return None

    @abstractmethod
    def act(
        self, obs: np.ndarray, state: Any, first: np.ndarray, env: gym.vector.VectorEnv | None = None
    ) -> tuple[np.ndarray, Any, dict[str, np.ndarray]]:
        """Actions for a batch of observations (deterministic given the agent's generator)."""

    # Learning -----------------------------------------------------------------------------------
    def num_envs(self) -> int:
        """How many parallel envs ``learn`` wants."""
        return int(getattr(self.config, "num_envs", 16))

    def learn(self, env: gym.vector.VectorEnv, ctx: TrainContext) -> None:
        """Train until ``ctx.total_steps`` env steps, calling ``ctx.report`` as it goes."""
        raise NotImplementedError(f"agent {self.name!r} is not trainable")

    # Persistence --------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """All weights and optimizer state needed to act and to resume training."""
        return {}

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:  # noqa: B027 - optional hook
        """Inverse of :meth:`tensors` (agents without weights keep this no-op)."""

    def state_json(self) -> dict[str, Any]:
        """Non-tensor state to save (step counters, normalizer statistics as lists...)."""
        return {"steps_done": self.steps_done}

    def load_state_json(self, data: Mapping[str, Any]) -> None:
        self.steps_done = int(data.get("steps_done", 0))


class SimpleContext:
    """An in-memory :class:`TrainContext` for tests and benchmarks (no run directory)."""

    def __init__(self, total_steps: int, start_step: int = 0, seed: int = 0) -> None:
        self.total_steps = total_steps
        self.start_step = start_step
        self.seed = seed
        self.history: list[tuple[int, dict[str, float]]] = []

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        self.history.append((step, dict(metrics)))


def record_finished_episodes(
    info: Mapping[str, Any],
    idx: np.ndarray,
    intended: str | None,
    goals: tuple[str, ...],
    out: dict[str, list[float]],
) -> None:
    """Append the stats of the episodes that just ended in envs ``idx`` to ``out``.

    Reads the vector env's ``final_info`` (misgen's per-episode facts) and extends the lists
    ``charts/episode_return``, ``charts/episode_length``, ``charts/reached_<goal>`` per candidate
    goal and ``charts/success`` (the intended goal), which agents average into their reports, so
    every agent's training curves use the same names and meaning.
    """
    final = info.get("final_info")
    if final is None:
        return
    if "intended_return" in final:
        out.setdefault("charts/episode_return", []).extend(np.asarray(final["intended_return"])[idx].tolist())
    if "episode_length" in final:
        out.setdefault("charts/episode_length", []).extend(np.asarray(final["episode_length"])[idx].tolist())
    reached = final.get("goal_reached", {})
    for goal in goals:
        if goal in reached:
            hits = np.asarray(reached[goal], dtype=float)[idx].tolist()
            out.setdefault(f"charts/reached_{goal}", []).extend(hits)
            if goal == intended:
                out.setdefault("charts/success", []).extend(hits)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``n <= 0``: unchanged), then restore.

    Agents whose work is many small network calls (search, imagination) run faster on one thread
    than on two on a 2-core machine, and must not change the caller's setting for good.
    """
    before = torch.get_num_threads()
    if n > 0 and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def with_config_threads(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run an agent method under ``torch_threads(self.config.threads)``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with torch_threads(self.config.threads):
            return method(self, *args, **kwargs)

    return wrapper


def grid_env_defaults(spec: EnvSpec) -> dict[str, Any]:
    """``env_defaults`` of agents on the shared grid torso with a novelty bonus (PPO, planner):
    centre the torso on the agent where the env marks it, and take the env's suggested bonus."""
    out: dict[str, Any] = {"explore_bonus": spec.exploration_bonus}
    if spec.agent_channel is not None:
        out["centre_channel"] = spec.agent_channel
    return out
