"""``misgen bench learn``: how fast each agent class learns an env's training task.

For every agent class and seed, the agent is built exactly as ``misgen train`` builds it (presets,
env defaults, ``--set``), trained with its own ``learn`` on the train split, and every
``eval_every`` env steps the clock stops while the current policy plays ``eval_episodes`` fresh
train-split episodes through :func:`misgen.probes.rollout.collect` — the same path as ``misgen
eval``, so no training-only bonus (novelty, search exploration) counts. The benchmark records the
wall time (evaluation excluded) and env steps at which that success first reaches each threshold,
and stops a run at the last threshold or at the time limit.

One run owns the machine at a time (runs are sequential); the JSON records the machine, torch
threads and versions, so numbers are compared within one record, never across machines. The
targets are the issue's: on the default maze-cheese, 0.9 within 5 min for PPO, 10 for the planner
and 20 for Dreamer, on 2 cores.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from misgen.agents import get_agent
from misgen.agents.base import Agent, SimpleContext
from misgen.errors import MisgenError
from misgen.evaluate import success_by_difficulty
from misgen.probes.rollout import collect
from misgen.progress import console
from misgen.provenance import git_commit, machine, package_versions
from misgen.seeding import derive_seed
from misgen.train import TrainRequest, resolve

THRESHOLDS = (0.5, 0.8, 0.9)
TARGET_SECONDS = {"ppo": 300.0, "planner": 600.0, "dreamer": 1200.0}
"""Wall-clock targets to 0.9 train success on the default maze-cheese (2 cores)."""


class _Stop(Exception):
    """Raised inside ``env.step`` to end a ``learn`` call (time limit or last threshold met)."""


class LearningClock(gym.vector.VectorWrapper):
    """Counts env steps, pauses training every ``eval_every`` steps for a bonus-free evaluation,
    and stops at the time limit (evaluation time excluded) or once the last threshold is met.

    Attribute lookups the wrapper does not answer (``misgen_spec``, ``oracle_actions``, ``core``)
    go to the wrapped misgen env, so agents see the same interface.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        evaluate: Any,
        seconds: float,
        eval_every: int,
        thresholds: Sequence[float],
        console: Console = console,
    ) -> None:
        super().__init__(env)
        self.console = console
        self.evaluate = evaluate
        self.seconds = seconds
        self.eval_every = eval_every
        self.thresholds = tuple(thresholds)
        self.env_steps = 0
        self.train_seconds = 0.0
        self.curve: list[dict[str, float]] = []
        self.reached: dict[str, dict[str, float] | None] = {f"{t:g}": None for t in self.thresholds}
        self._next_eval = 0  # the untrained policy first: the curve's chance level
        self._mark = time.monotonic()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.env, name)

    def _tick(self) -> None:
        now = time.monotonic()
        self.train_seconds += now - self._mark
        self._mark = now

    def checkpoint(self) -> None:
        """Evaluate now (clock paused) and record the thresholds this evaluation meets.

        ``evaluate`` returns the train success, or (success, extra fields for the curve point).
        """
        self._tick()
        result = self.evaluate()
        success, extra = (float(result[0]), result[1]) if isinstance(result, tuple) else (float(result), {})
        point = {
            "env_steps": self.env_steps,
            "seconds": round(self.train_seconds, 2),
            "success": success,
            **extra,
        }
        self.curve.append(point)
        for t in self.thresholds:
            if self.reached[f"{t:g}"] is None and success >= t:
                self.reached[f"{t:g}"] = {"env_steps": self.env_steps, "seconds": point["seconds"]}
        by = "".join(
            f"  ({key.removeprefix('success_by_').replace('_', ' ')}: "
            + " ".join(f"{v} {m:.2f}" for v, m in value.items())
            + ")"
            for key, value in extra.items()
            if key.startswith("success_by_")
        )
        self.console.print(
            f"  {self.env_steps:>9,} steps  {self.train_seconds:7.1f} s  train success {success:.2f}{by}"
        )
        self._mark = time.monotonic()

    def step(self, actions):
        if self.env_steps >= self._next_eval:
            self._next_eval += self.eval_every
            self.checkpoint()
            if self.reached[f"{self.thresholds[-1]:g}"] is not None:
                raise _Stop
        self._tick()
        if self.train_seconds >= self.seconds:
            raise _Stop
        out = self.env.step(actions)
        self.env_steps += self.env.num_envs
        return out


def learn_run(
    env_id: str,
    agent_name: str,
    seed: int,
    seconds: float,
    eval_every: int,
    eval_episodes: int,
    overrides: dict[str, str] | None = None,
    preset: str | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
    console: Console = console,
) -> dict[str, Any]:
    """Train one agent class on one seed until the last threshold or ``seconds``; its record."""
    request = TrainRequest(env=env_id, agent=agent_name, seed=seed, preset=preset, overrides=overrides or {})
    resolved = resolve(request)
    spec, cls = resolved.spec, resolved.agent_cls
    if not cls.trainable:
        raise MisgenError(f"agent {agent_name!r} is not trainable; bench learn trains agents")
    env_overrides = resolved.env_overrides
    probe = spec.make("train", 1, 0, env_overrides)
    try:
        agent: Agent = cls(
            resolved.agent_config,
            probe.single_observation_space,
            probe.single_action_space,
            derive_seed(seed, "agent"),
        )
    finally:
        probe.close()
    evaluations = iter(range(10**9))

    def evaluate() -> tuple[float, dict[str, Any]]:
        """Train success, and per level difficulty where the env draws one (which levels it solves)."""
        k = next(evaluations)
        rollouts = collect(
            agent,
            spec,
            "train",
            eval_episodes,
            derive_seed(seed, "bench-learn-eval", k),
            overrides=env_overrides,
        )
        name, by = success_by_difficulty(spec, rollouts, env_overrides)
        extra = (
            {f"success_by_{name.replace(' ', '_')}": {str(v): e.mean for v, e in by.items()}} if by else {}
        )
        return float(rollouts.reached(rollouts.intended).mean()), extra

    env = LearningClock(
        spec.make("train", agent.num_envs(), derive_seed(seed, "env"), env_overrides),
        evaluate,
        seconds,
        eval_every,
        thresholds,
        console,
    )
    ctx = SimpleContext(max(int(resolved.steps), 10**9), seed=derive_seed(seed, "learn"))
    try:
        agent.learn(env, ctx)
    except _Stop:
        pass
    finally:
        env.close()
    if not env.curve or env.curve[-1]["env_steps"] != env.env_steps:
        env.checkpoint()  # the final policy, whatever stopped training
    target = TARGET_SECONDS.get(agent_name)
    top = env.reached[f"{thresholds[-1]:g}"]
    return {
        "agent": agent_name,
        "kind": cls.kind,
        "seed": seed,
        "env": env_id,
        "env_overrides": env_overrides,
        "preset": preset,
        "config": resolved.config.get("agent_config"),
        "reached": env.reached,
        "curve": env.curve,
        "env_steps": env.env_steps,
        "train_seconds": round(env.train_seconds, 2),
        "target_seconds": target,
        "met_target": None if target is None else bool(top is not None and top["seconds"] <= target),
    }


def _cell(hit: dict[str, float] | None) -> str:
    return "—" if hit is None else f"{hit['seconds']:.0f} s / {hit['env_steps'] / 1000:,.0f}k"


def run_learn_bench(
    env_id: str,
    agent_names: list[str],
    seeds: int,
    seconds: float,
    eval_every: int,
    eval_episodes: int,
    out: Path,
    overrides: dict[str, str] | None = None,
    preset: str | None = None,
    console: Console = console,
) -> dict[str, Any]:
    """Run every (agent, seed) in turn, print a rich table to ``console``, write JSON to ``out``
    atomically, and return that record."""
    for name in agent_names:
        get_agent(name)  # unknown names fail before any training starts
    if seeds < 1 or seconds <= 0 or eval_every < 1 or eval_episodes < 1:
        raise MisgenError("bench learn needs seeds >= 1, seconds > 0, eval_every >= 1 and eval_episodes >= 1")
    rows = []
    for name in agent_names:
        for seed in range(seeds):
            console.print(f"[bold]{name}[/] seed {seed} on {env_id} (at most {seconds:g} s of training)")
            rows.append(
                learn_run(
                    env_id, name, seed, seconds, eval_every, eval_episodes, overrides, preset, console=console
                )
            )
    table = Table(
        title=f"time / env steps to train success on {env_id} (bonus-free evaluation, {eval_episodes} episodes)"
    )
    for col in ("agent", "seed", *(f"to {t:g}" for t in THRESHOLDS), "final", "target to 0.9", "met"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    for r in rows:
        target = r["target_seconds"]
        table.add_row(
            r["agent"], str(r["seed"]), *(_cell(r["reached"][f"{t:g}"]) for t in THRESHOLDS),
            f"{r['curve'][-1]['success']:.2f}", "—" if target is None else f"{target:.0f} s",
            {None: "—", True: "yes", False: "no"}[r["met_target"]],
        )  # fmt: skip
    console.print(table)
    record = {
        "env": env_id,
        "thresholds": list(THRESHOLDS),
        "eval_every": eval_every,
        "eval_episodes": eval_episodes,
        "max_seconds": seconds,
        "runs": rows,
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "git_commit": git_commit(),
        "versions": package_versions(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, default=_json_default))
    tmp.replace(out)
    console.print(f"wrote {out}")
    return record


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-able: {type(value).__name__}")
