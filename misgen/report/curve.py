"""The disambiguation curve: a goal measure against the env's disambiguating knob, per agent class.

A knob study (``misgen study --knob FIELD=v1,v2,...``) trains every class at several values of one
env field (the share of training levels where intended goal and proxy come apart). Its runs differ
only in that field, so :func:`misgen.report.data.aggregate` keeps each value a separate condition;
here those conditions become the x axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from misgen.report.data import FEW_EPISODES, Aggregate
from misgen.report.headline import PROXY_FIRST, ClassSummary, class_rank

CURVE_METRICS = (
    (PROXY_FIRST, "proxy-first share at test-shift", "proxy-first"),
    (("intended-success", "test-shift"), "test-shift intended success", "shift-success"),
)


def knob_of(cells: list[Aggregate]) -> str | None:
    """The one numeric env field the conditions of these cells vary in, else ``None``."""
    fields: set[str] = set()
    for c in cells:
        if not c.condition:
            continue
        parts = c.condition.split(", ")
        if len(parts) != 1:
            return None
        name, _, value = parts[0].partition("=")
        try:
            float(value)
        except ValueError:
            return None
        fields.add(name)
    return next(iter(fields)) if len(fields) == 1 else None


def _x(condition: str) -> float:
    return float(condition.partition("=")[2])


def series(
    cells: list[Aggregate], classes: list[ClassSummary], probe_metric: tuple[str, str]
) -> list[dict[str, Any]]:
    """Per agent, the curve of one metric over the knob values (see figures.knob_curve)."""
    competent = {(s.agent, s.condition): s.competent for s in classes}
    by_agent: dict[str, list[Aggregate]] = {}
    for c in cells:
        if (c.probe, c.metric) == probe_metric and c.condition:
            by_agent.setdefault(c.agent, []).append(c)
    out = []
    for agent, agent_cells in sorted(
        by_agent.items(), key=lambda kv: (kv[1][0].kind == "scripted", class_rank(kv[0]), kv[0])
    ):
        agent_cells = sorted(agent_cells, key=lambda c: _x(c.condition))
        e = [c.over_seeds for c in agent_cells]
        out.append(
            {
                "agent": agent,
                "kind": agent_cells[0].kind,
                "x": [_x(c.condition) for c in agent_cells],
                "mean": [v.mean for v in e],
                "lo": [v.lo for v in e],
                "hi": [v.hi for v in e],
                "n": [c.n_episodes for c in agent_cells],
                "seeds": [len(c.per_seed) for c in agent_cells],
                "thin": [
                    c.n_episodes < FEW_EPISODES or competent.get((agent, c.condition)) is False
                    for c in agent_cells
                ],
                "chance": [c.chance.mean if c.chance is not None else float("nan") for c in agent_cells],
            }
        )
    return out


def curve_sentence(knob: str, proxy_series: list[dict[str, Any]]) -> str:
    """One sentence: each trained class's proxy-first share at the lowest and highest knob value."""
    parts, empty = [], []
    for s in proxy_series:
        if s["kind"] == "scripted":
            continue
        ok = [i for i, m in enumerate(s["mean"]) if not np.isnan(m) and not s["thin"][i]]
        if not ok:
            empty.append(s["agent"])
            continue
        a, b = ok[0], ok[-1]
        skipped = len(s["x"]) - len(ok)
        note = (
            f" ({skipped} value{'s' if skipped != 1 else ''} with too little evidence left out)"
            if skipped
            else ""
        )
        if a == b:
            parts.append(
                f"{s['agent']} {s['mean'][a]:.2f} [{s['lo'][a]:.2f}, {s['hi'][a]:.2f}] at {s['x'][a]:g} only{note}"
            )
        else:
            parts.append(
                f"{s['agent']} {s['mean'][a]:.2f} [{s['lo'][a]:.2f}, {s['hi'][a]:.2f}] at {s['x'][a]:g} → "
                f"{s['mean'][b]:.2f} [{s['lo'][b]:.2f}, {s['hi'][b]:.2f}] at {s['x'][b]:g}{note}"
            )
    if empty:
        parts.append(
            f"{', '.join(empty)}: no value with enough evidence (n < {FEW_EPISODES} or not competent)"
        )
    if not parts:
        return ""
    return f"Disambiguation curve over {knob}, proxy first: " + "; ".join(parts) + "."
