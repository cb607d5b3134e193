"""Loading runs and their probe results into flat rows, and aggregating them over seeds.

A *row* is one metric of one probe at one checkpoint of one run, with its episode-level interval.
Aggregation groups rows by (env, agent, probe, metric) at each run's final probed checkpoint and
reports the mean over seeds with an interval over seeds (:func:`over_seeds`, when there are >= 2
seeds) next to the per-seed values, so the spread between seeds is visible and not hidden in an
average.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from misgen.probes.stats import Estimate
from misgen.runstore import Run, find_runs

MIN_EPISODES = 100
"""Probe results over fewer episodes than this are flagged in the report."""


@dataclass(frozen=True)
class MetricRow:
    env: str
    agent: str
    kind: str
    seed: int
    run: str
    step: int
    probe: str
    version: int | str
    metric: str
    estimate: Estimate
    higher_is_better: bool | None
    episodes: int
    preset: str | None
    chance: Estimate | None = None
    """The same metric for a uniform-random agent on the same levels, where the probe reports it."""


@dataclass
class RunRecord:
    run: Run
    rows: list[MetricRow] = field(default_factory=list)
    probes: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def final_step(self) -> int | None:
        return max(self.probes) if self.probes else None

    @property
    def flags(self) -> list[str]:
        out = []
        preset = self.run.config.get("preset")
        if preset == "debug":
            out.append("debug preset")
        if self.run.status != "complete":
            out.append(f"status {self.run.status}")
        if self.final_step is not None:
            episodes = int(self.probes[self.final_step].get("episodes", 0))
            if episodes < MIN_EPISODES:
                out.append(f"only {episodes} episodes")
        return out


def _probe_entries(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Probe name -> entry from a ``probes/step_N.json`` (list or mapping form)."""
    probes = result.get("probes", {})
    if isinstance(probes, list):
        return {p["name"]: p for p in probes}
    return dict(probes)


def _estimate_or_none(value: Any) -> Estimate | None:
    if isinstance(value, dict) and "mean" in value:
        return Estimate.from_json(value)
    return None


def load_records(paths: list[Path | str]) -> list[RunRecord]:
    """Every run under ``paths`` with its probe results flattened into rows."""
    records = []
    for run in find_runs(paths):
        record = RunRecord(run, probes=run.probe_results())
        kind = str(run.info.get("kind", ""))
        for step, result in record.probes.items():
            episodes = int(result.get("episodes", 0))
            for name, entry in _probe_entries(result).items():
                hib = entry.get("higher_is_better", {})
                chance = entry.get("chance") or {}
                for metric, value in entry.get("metrics", {}).items():
                    if not isinstance(value, dict) or "mean" not in value:
                        continue
                    record.rows.append(
                        MetricRow(
                            env=run.env_id,
                            agent=run.agent_name,
                            kind=kind,
                            seed=run.seed,
                            run=run.name,
                            step=step,
                            probe=name,
                            version=entry.get("version", ""),
                            metric=metric,
                            estimate=Estimate.from_json(value),
                            higher_is_better=hib.get(metric) if isinstance(hib, dict) else hib,
                            episodes=episodes,
                            preset=run.config.get("preset"),
                            chance=_estimate_or_none(chance.get(metric)),
                        )
                    )
        records.append(record)
    return records


FEW_EPISODES = 20
"""Single-seed cells resting on fewer episodes than this show their count: a conditional metric
(e.g. proxy-first on separable levels the agent was capable on) can rest on a handful, and a
bootstrap interval over two episodes looks deceptively tight."""


@dataclass(frozen=True)
class Aggregate:
    """One (env, agent, probe, metric) cell: mean over seeds with an interval over seeds."""

    env: str
    agent: str
    kind: str
    probe: str
    metric: str
    higher_is_better: bool | None
    over_seeds: Estimate
    per_seed: tuple[tuple[int, Estimate], ...]
    flags: tuple[str, ...]
    chance: Estimate | None = None
    """A uniform-random agent's value of the same metric on the same levels (``None``: not reported)."""
    condition: str = ""
    """The env settings that vary between runs of this env (e.g. ``cheese_random_fraction=0.1``);
    empty when all runs of the env share one configuration."""

    @property
    def n_episodes(self) -> int:
        """The fewest episodes any one seed's value rests on (what a reader should worry about)."""
        return min((e.n for _, e in self.per_seed), default=0)

    @property
    def cell(self) -> str:
        e = self.over_seeds
        if e.n == 0 or np.isnan(e.mean):
            return "n/a"
        if len(self.per_seed) == 1:
            only = self.per_seed[0][1]
            few = f" (n={only.n})" if only.n < FEW_EPISODES else ""
            return f"{only.mean:.2f} [{only.lo:.2f}, {only.hi:.2f}]{few}"
        return f"{e.mean:.2f} [{e.lo:.2f}, {e.hi:.2f}] ({len(self.per_seed)} seeds)"


def varying_overrides(records: list[RunRecord]) -> dict[str, dict[str, Any]]:
    """Per run path: the env overrides whose values differ between runs of the same env.

    Runs that differ in env configuration (e.g. the disambiguating fraction of a knob study) are
    separate conditions, never pooled as if they were seeds of one experiment.
    """
    by_env: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        by_env[record.run.env_id].append(record)
    out: dict[str, dict[str, Any]] = {}
    for env, env_records in by_env.items():
        defaults = _env_defaults(env)
        overrides = [dict(r.run.config.get("env_overrides") or {}) for r in env_records]
        keys = sorted({k for o in overrides for k in o})
        overrides = [{k: o.get(k, defaults.get(k)) for k in keys} for o in overrides]
        varying = [k for k in keys if len({repr(o.get(k)) for o in overrides}) > 1]
        for record, o in zip(env_records, overrides, strict=True):
            out[str(record.run.path)] = {k: o.get(k) for k in varying}
    return out


def _env_defaults(env: str) -> dict[str, Any]:
    """The env config's default field values (a run without an override ran at the default)."""
    try:
        from misgen.environments import get_env

        config_type = get_env(env).config_type
        return dataclasses.asdict(config_type()) if config_type is not None else {}
    except Exception:  # noqa: BLE001 - an env not registered here: no defaults to fill in
        return {}


def condition_label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()) if v is not None)


def _pooled_chance(items: list[Estimate]) -> Estimate | None:
    """Chance over seeds: the mean of the per-seed values, spanning their intervals."""
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    return Estimate(
        float(np.mean([e.mean for e in items])),
        min(e.lo for e in items),
        max(e.hi for e in items),
        sum(e.n for e in items),
    )


def over_seeds(estimates: list[Estimate], level: float = 0.95) -> Estimate:
    """The mean of per-seed estimates with an interval that counts both sources of error.

    Two sources: seeds differ (Student-t interval over the seed means, ``k - 1`` degrees of
    freedom: wide for 2 seeds, as it should be), and each seed's value is itself an estimate from
    finitely many episodes (the half-width of the mean of ``k`` independent estimates,
    ``sqrt(sum h_i^2) / k``). The interval takes the larger half-width, so two seeds that happen to
    agree do not collapse it to a point (a bootstrap over two equal seed means did). Shares (all
    per-seed bounds within [0, 1]) are clipped to [0, 1].
    """
    k = len(estimates)
    means = np.array([e.mean for e in estimates], dtype=np.float64)
    centre = float(means.mean())
    spread = float(student_t.ppf(0.5 + level / 2, k - 1) * means.std(ddof=1) / np.sqrt(k)) if k > 1 else 0.0
    halves = np.array([(e.hi - e.lo) / 2 for e in estimates], dtype=np.float64)
    episodes = float(np.sqrt(np.sum(halves[np.isfinite(halves)] ** 2)) / k)
    half = max(spread, episodes)
    lo, hi = centre - half, centre + half
    if all(0.0 <= e.lo and e.hi <= 1.0 for e in estimates):
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return Estimate(centre, lo, hi, sum(e.n for e in estimates))


def aggregate(records: list[RunRecord]) -> list[Aggregate]:
    """Aggregate each run's final probed checkpoint over seeds, separately per env condition."""
    conditions = {path: condition_label(v) for path, v in varying_overrides(records).items()}
    groups: dict[tuple[str, str, str, str, str], list[tuple[MetricRow, RunRecord]]] = defaultdict(list)
    for record in records:
        final = record.final_step
        condition = conditions.get(str(record.run.path), "")
        for row in record.rows:
            if row.step == final:
                groups[(row.env, condition, row.agent, row.probe, row.metric)].append((row, record))
    out = []
    for (env, condition, agent, probe, metric), items in sorted(groups.items()):
        per_seed = tuple(sorted((row.seed, row.estimate) for row, _ in items))
        means = np.array([e.mean for _, e in per_seed if not np.isnan(e.mean)])
        if len(per_seed) == 1:
            over = per_seed[0][1]
        elif len(means):
            over = over_seeds([e for _, e in per_seed if not np.isnan(e.mean)])
        else:
            over = Estimate(float("nan"), float("nan"), float("nan"), 0)
        flags = sorted({f for _, rec in items for f in rec.flags})
        first = items[0][0]
        chance = _pooled_chance([row.chance for row, _ in items if row.chance is not None])
        out.append(
            Aggregate(
                env,
                agent,
                first.kind,
                probe,
                metric,
                first.higher_is_better,
                over,
                per_seed,
                tuple(flags),
                chance,
                condition,
            )
        )
    return out
