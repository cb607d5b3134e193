"""``misgen bench agents``: training throughput of each agent class on one env, in one run.

Every agent is built with its default config (its CPU default preset), then trained with
``learn(env, ctx)`` for about ``seconds`` of wall-clock. The env is wrapped to count env steps and
to stop training once the time is up (agents report at their own cadence, often too rarely for a
short benchmark). Updates are read from the agent's ``updates`` (or ``n_updates``) attribute when it has one, else
from the last ``updates`` metric it reported through ``ctx.report`` (every learning agent should
report one: its gradient steps). Both rates include the agent's warm-up (e.g. a replay prefill),
because that is what a user waits for. Planner decision rates come from
:mod:`misgen.bench.planner` when that module exists.

Measurements share the machine with whatever else runs; the table prints the torch thread count
and the JSON records the machine, so numbers are compared within one run, never across machines.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from rich.console import Console
from rich.table import Table

from misgen.agents import AGENTS, get_agent
from misgen.agents.base import SimpleContext
from misgen.environments import get_env
from misgen.errors import MisgenError
from misgen.progress import console
from misgen.provenance import machine, package_versions
from misgen.seeding import derive_seed


class _TimeUp(Exception):
    """Raised inside ``env.step`` to end a benchmark's ``learn`` call."""


class TimedEnv(gym.vector.VectorWrapper):
    """Counts env steps and raises :class:`_TimeUp` on the first step after ``deadline``.

    Attribute lookups the wrapper does not answer (``misgen_spec``, ``oracle_actions``, ``core``,
    ...) are forwarded to the wrapped misgen env, so agents see the same interface.
    """

    def __init__(self, env: gym.vector.VectorEnv, seconds: float) -> None:
        super().__init__(env)
        self.seconds = seconds
        self.started = time.monotonic()
        self.env_steps = 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.env, name)

    def step(self, actions):
        if time.monotonic() - self.started >= self.seconds:
            raise _TimeUp
        out = self.env.step(actions)
        self.env_steps += self.env.num_envs
        return out


class _BenchContext(SimpleContext):
    """Records when each report arrived, to read the agent's reported ``updates``."""

    def __init__(self, total_steps: int, seed: int) -> None:
        super().__init__(total_steps, seed=seed)
        self.last_updates: float | None = None

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        super().report(step, metrics)
        if "updates" in metrics:
            self.last_updates = float(metrics["updates"])


def bench_agent(env_id: str, agent_name: str, seconds: float, seed: int = 0) -> dict[str, Any]:
    """Train ``agent_name`` (default config) on ``env_id``'s train split for ~``seconds``."""
    spec = get_env(env_id)
    cls = get_agent(agent_name)
    if not cls.trainable:
        raise MisgenError(f"agent {agent_name!r} is not trainable; bench trains agents")
    probe = spec.make("train", 1, 0)
    try:
        agent = cls(
            cls.Config(),
            probe.single_observation_space,
            probe.single_action_space,
            derive_seed(seed, "agent"),
        )
    finally:
        probe.close()
    env = TimedEnv(spec.make("train", agent.num_envs(), derive_seed(seed, "env"), None), seconds)
    ctx = _BenchContext(max(int(cls.default_steps), 10**9), derive_seed(seed, "learn"))
    env.started = time.monotonic()
    finished = False
    try:
        agent.learn(env, ctx)
        finished = True
    except _TimeUp:
        pass
    finally:
        env.close()
    wall = time.monotonic() - env.started
    updates = next(
        (
            getattr(agent, a)
            for a in ("updates", "n_updates")
            if isinstance(getattr(agent, a, None), int | float)
        ),
        None,
    )
    if updates is None:
        updates = ctx.last_updates
    return {
        "agent": agent_name,
        "kind": cls.kind,
        "env": env_id,
        "num_envs": agent.num_envs(),
        "seconds": round(wall, 3),
        "env_steps": env.env_steps,
        "env_steps_per_s": env.env_steps / wall if wall > 0 else 0.0,
        "updates": updates,
        "updates_per_s": (float(updates) / wall) if updates is not None and wall > 0 else None,
        "finished_budget": finished,
    }


def _planner_rows(env_id: str, seconds: float) -> list[dict[str, Any]]:
    """Planner decision rates, timed for at most 2 s per setting (less for short benchmarks)."""
    try:
        from misgen.bench.planner import planner_decision_rows
    except ImportError:
        return []
    try:
        return list(planner_decision_rows(env_id, seconds=min(2.0, max(0.25, seconds / 8))))
    except TypeError:  # a version without the ``seconds`` option
        return list(planner_decision_rows(env_id))


def run_agent_bench(
    env_id: str, out: Path, seconds: float, agent_names: list[str], console: Console = console
) -> dict[str, Any]:
    """Benchmark agents on ``env_id``, print rich tables to ``console``, write JSON to ``out``, return it."""
    spec = get_env(env_id)
    if not spec.available():
        raise MisgenError(
            f"env {spec.id!r} needs {', '.join(spec.requires)}; install the {spec.backend!r} extra"
        )
    names = agent_names or [
        name for name, cls in AGENTS.items() if cls.trainable and not name.startswith("test-")
    ]
    for name in names:
        get_agent(name)  # unknown names fail before any training starts
    rows = []
    for name in names:
        console.print(f"training [bold]{name}[/] on {env_id} for ~{seconds:g}s")
        rows.append(bench_agent(env_id, name, seconds))
    planner = _planner_rows(env_id, seconds)
    table = Table(
        title=f"agent throughput on {env_id} (torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs)"
    )
    for col in ("agent", "kind", "envs", "env-steps/s", "updates/s", "updates", "seconds"):
        table.add_column(col, justify="left" if col in ("agent", "kind") else "right")
    for r in rows:
        table.add_row(
            r["agent"],
            r["kind"],
            str(r["num_envs"]),
            f"{r['env_steps_per_s']:,.0f}",
            "—" if r["updates_per_s"] is None else f"{r['updates_per_s']:,.2f}",
            "—" if r["updates"] is None else f"{r['updates']:,.0f}",
            f"{r['seconds']:.1f}",
        )
    console.print(table)
    if planner:
        ptable = Table(title="planner decisions/s")
        keys = list(planner[0])
        for k in keys:
            ptable.add_column(str(k))
        for r in planner:
            ptable.add_row(
                *(f"{v:,.2f}" if isinstance(v, float) else str(v) for v in (r.get(k, "") for k in keys))
            )
        console.print(ptable)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "env": env_id,
        "seconds": seconds,
        "agents": rows,
        "planner": planner,
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
    }
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(out)
    console.print(f"wrote {out}")
    return record
