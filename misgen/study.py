"""``misgen study``: train each agent class on one env, probe every checkpoint, write the report.

A study is a sweep over agent classes (plus the scripted oracles as ground-truth reference rows)
with a budget preset: ``quick`` trains every class on 2 seeds of maze-cheese, ``full`` on 5 seeds of
maze-cheese and coinrun-shift with more steps and probe episodes and the disambiguation curve.
Times are in ``misgen/bench/MEASUREMENTS.md``, not here.

A *knob study* (``--knob FIELD=v1,v2,...``) trains every class at each value of one env field,
usually the env's disambiguating fraction (``EnvSpec.knob``, e.g. ``cheese_random_fraction``), and
the report draws the disambiguation curve: proxy pursuit at test-shift against that value, one line
per class. The scripted references do not learn, so they run once, at the env's default. At the
``full`` budget the curve over ``StudyBudget.curve`` runs by default on the envs listed there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from misgen.errors import MisgenError, unknown_choice

Budget = Literal["quick", "full"]
REFERENCE_AGENTS = ("oracle-intended", "oracle-proxy")


@dataclass(frozen=True)
class AgentBudget:
    steps: int
    preset: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StudyBudget:
    agents: dict[str, AgentBudget]
    episodes: int
    """Probe episodes per split."""
    checkpoints: int
    """Checkpoints per run (all are probed)."""
    seeds: int = 1
    """Seeds per agent class (and per knob value) when ``--seeds`` is not given."""
    envs: tuple[str, ...] = ("maze-cheese",)
    """Envs studied when ``--env`` is not given."""
    curve: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """env -> values of its knob (``EnvSpec.knob``) at which this budget runs the disambiguation
    curve when no ``--knob`` is given (empty: no curve unless asked for)."""


CURVE_VALUES = (0.0, 0.01, 0.03, 0.1, 0.3)
"""Disambiguating fractions of the full budget's curve (jaxgmg-style: from none to a third)."""

BUDGETS: dict[str, StudyBudget] = {
    "quick": StudyBudget(
        agents={
            "ppo": AgentBudget(steps=600_000),
            "dreamer": AgentBudget(steps=60_000),
            # Bonus-free train success >= 0.9 by 8-12k env steps on maze-cheese (MEASUREMENTS.md,
            # 2026-12-01); 32k leaves margin for other seeds at half the old 60k's time.
            "planner": AgentBudget(steps=32_768),
        },
        episodes=100,
        checkpoints=2,
        seeds=2,
    ),
    "full": StudyBudget(
        agents={
            "ppo": AgentBudget(steps=3_000_000),
            "dreamer": AgentBudget(steps=400_000),
            "planner": AgentBudget(steps=300_000),
        },
        episodes=500,
        checkpoints=5,
        seeds=5,
        envs=("maze-cheese", "coinrun-shift"),
        curve={"maze-cheese": CURVE_VALUES, "coinrun-shift": CURVE_VALUES},
    ),
}


@dataclass(frozen=True)
class Knob:
    """One env field and the values a knob study trains at."""

    field: str
    values: tuple[Any, ...]

    def override(self, value: Any, default: Any) -> dict[str, str]:
        """The ``--set`` pair for ``value``; none at the env's default, so that run is the plain
        study's run (reused, not retrained)."""
        return {} if value == default else {f"env.{self.field}": str(value)}


def parse_knob(env: str, text: str) -> Knob:
    """``FIELD=v1,v2,...`` (``env.FIELD`` also accepted), typed and checked against the env config."""
    from misgen.configs import build_config
    from misgen.environments import get_env

    spec = get_env(env)
    name, sep, raw = text.partition("=")
    name = name.strip().removeprefix("env.")
    hint = f" (this env's disambiguating knob is {spec.knob!r})" if spec.knob else ""
    if spec.config_type is None:
        raise MisgenError(f"env {spec.id!r} has no config fields to vary with --knob")
    fields = [f.name for f in dataclasses.fields(spec.config_type)]
    if not sep or not name or not raw.strip():
        raise MisgenError(f"bad --knob {text!r}: expected FIELD=v1,v2,...{hint}")
    if name not in fields:
        raise MisgenError(
            f"unknown --knob field {name!r} for env {spec.id!r}{hint}; valid: {', '.join(fields)}"
        )
    values = []
    for item in (v.strip() for v in raw.split(",")):
        if not item:
            continue
        typed = build_config(spec.config_type, {}, {name: item}, f"env {spec.id!r}")
        values.append(getattr(typed, name))
    if len(set(map(repr, values))) != len(values):
        raise MisgenError(f"bad --knob {text!r}: repeated values")
    return Knob(name, tuple(values))


def default_knob(env: str, plan: StudyBudget) -> Knob | None:
    """The budget's default curve for ``env`` (``None`` where it has none)."""
    from misgen.environments import get_env

    spec = get_env(env)
    values = plan.curve.get(spec.id)
    return Knob(spec.knob, tuple(values)) if values and spec.knob else None


def study_jobs(
    env: str,
    agents: list[str],
    seeds: int,
    budget: str | StudyBudget,
    root: Path | None,
    knob: Knob | None = None,
):
    """The sweep jobs of a study (validated: unknown env/agent/budget is a one-line error).

    With ``knob`` every trainable class runs at each knob value on every seed; the scripted
    references run once. ``budget`` may be a :class:`StudyBudget` (tests use tiny ones).
    """
    from misgen.agents import get_agent
    from misgen.environments import get_env
    from misgen.sweep import Job

    if isinstance(budget, StudyBudget):
        plan = budget
    elif budget in BUDGETS:
        plan = BUDGETS[budget]
    else:
        raise unknown_choice("budget", budget, BUDGETS)
    if seeds < 1:
        raise MisgenError(f"--seeds must be >= 1, got {seeds}")
    spec = get_env(env)
    default = None
    if knob is not None:
        assert spec.config_type is not None
        default = getattr(spec.config_type(), knob.field)
    jobs = []
    for name in [*agents, *REFERENCE_AGENTS]:
        cls = get_agent(name)
        ab = plan.agents.get(name, AgentBudget(steps=cls.default_steps if cls.trainable else 0))
        steps = ab.steps if cls.trainable else None
        every = max(1, ab.steps // plan.checkpoints) if cls.trainable else None
        settings = [knob.override(v, default) for v in knob.values] if (knob and cls.trainable) else [{}]
        for extra in settings:
            for seed in range(seeds if cls.trainable else 1):
                jobs.append(
                    Job(
                        env=spec.id,
                        agent=name,
                        seed=seed,
                        steps=steps,
                        preset=ab.preset,
                        overrides={**dict(ab.overrides), **extra},
                        episodes=plan.episodes,
                        checkpoints="all",
                        root=str(root) if root else None,
                        checkpoint_every=every,
                    )
                )
    return jobs
