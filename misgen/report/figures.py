"""Figures for the report (matplotlib, Agg backend, PNG files).

Each function takes already-loaded data and a path, draws one figure and returns the path, or
``None`` when the data it needs is absent (e.g. no agent with a value head).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from misgen.report.data import Aggregate, RunRecord  # noqa: E402

AGENT_NAME_COLOURS = {"ppo": "#4c72b0", "dreamer": "#55a868", "planner": "#c44e52", "oracle-intended": "#b8b8b8", "oracle-proxy": "#7a7a7a"}


def _colour(kind: str, i: int, agent: str = "") -> Any:
    """Stable colours: the three agent classes and the two reference oracles by name, else tab10."""
    return AGENT_NAME_COLOURS.get(agent) or plt.cm.tab10(i % 10)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grouped_bars(cells: list[Aggregate], groups: list[str], title: str, ylabel: str, path: Path) -> Path | None:
    """Bars of ``metric`` per group (x) and agent (colour), with the interval over seeds/episodes.

    ``cells`` are aggregates whose ``metric`` names are the x groups (e.g. splits).
    """
    agents = sorted({c.agent for c in cells}, key=lambda a: (next(c.kind for c in cells if c.agent == a), a))
    if not cells or not agents:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(groups) + 1), 3.4))
    width = 0.8 / len(agents)
    for i, agent in enumerate(agents):
        xs, ys, lo, hi = [], [], [], []
        for j, group in enumerate(groups):
            match = [c for c in cells if c.agent == agent and c.metric == group]
            if not match or np.isnan(match[0].over_seeds.mean):
                continue
            e = match[0].over_seeds
            xs.append(j + (i - (len(agents) - 1) / 2) * width)
            ys.append(e.mean)
            lo.append(max(0.0, e.mean - e.lo) if not np.isnan(e.lo) else 0.0)
            hi.append(max(0.0, e.hi - e.mean) if not np.isnan(e.hi) else 0.0)
        kind = next(c.kind for c in cells if c.agent == agent)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=agent, color=_colour(kind, i, agent), hatch="//" if kind == "scripted" else None, edgecolor="white")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def training_curves(records: list[RunRecord], path: Path) -> Path | None:
    """The success metric of every run's training curve (one line per seed, colour per agent)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    drawn = 0
    agents: dict[str, int] = {}
    for record in records:
        curve = record.run.metrics()
        key = next((k for k in (curve[-1] if curve else {}) if "success" in k), None)
        if key is None:
            continue
        steps = [m["step"] for m in curve if key in m]
        values = [m[key] for m in curve if key in m]
        i = agents.setdefault(record.run.agent_name, len(agents))
        label = record.run.agent_name if sum(1 for r in records[: records.index(record)] if r.run.agent_name == record.run.agent_name) == 0 else None
        ax.plot(steps, values, color=_colour(str(record.run.info.get("kind", "")), i, record.run.agent_name), alpha=0.8, label=label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("env steps")
    ax.set_ylabel("train success (intended goal)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Training curves")
    ax.legend(fontsize=8)
    return _save(fig, path)


def heatmap_grid(maps: list[tuple[str, np.ndarray, list[tuple[str, tuple[int, int]]]]], title: str, path: Path, cmap: str = "viridis") -> Path | None:
    """A row of heatmaps, one per agent: ``(label, 2-D array, [(marker label, (row, col))])``."""
    maps = [m for m in maps if m[1] is not None and np.asarray(m[1]).ndim == 2]
    if not maps:
        return None
    fig, axes = plt.subplots(1, len(maps), figsize=(3.0 * len(maps), 3.2), squeeze=False)
    for ax, (label, grid, markers) in zip(axes[0], maps, strict=True):
        grid = np.asarray(grid, dtype=float)
        colours = plt.get_cmap(cmap).with_extremes(bad="#eeeeee")
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=colours)
        for name, (r, c) in markers:
            ax.scatter([c], [r], marker="*" if "intended" in name else "s", s=90, edgecolor="white", facecolor="none", linewidths=1.5)
            ax.annotate(name.split(":")[-1], (c, r), color="white", fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def end_positions(rollouts_by_agent: dict[str, Any], path: Path) -> Path | None:
    """Where test-shift episodes end, as a 2-D histogram over the level, one panel per agent."""
    maps = []
    for agent, rollouts in rollouts_by_agent.items():
        if rollouts is None or rollouts.first_obs.ndim != 4:
            continue
        h, w = rollouts.first_obs.shape[-2:]
        ends = rollouts.agent_pos[np.arange(rollouts.episodes), rollouts.length]
        grid = np.zeros((h, w))
        inside = (ends[:, 0] >= 0) & (ends[:, 0] < h) & (ends[:, 1] >= 0) & (ends[:, 1] < w)
        np.add.at(grid, (ends[inside, 0], ends[inside, 1]), 1.0)
        grid /= max(1, inside.sum())
        grid[grid == 0] = np.nan
        markers = []
        for goal, role in zip(rollouts.goal_names, rollouts.goal_roles, strict=True):
            if role == "proxy":
                pos = np.median(rollouts.goal_pos[:, 0, rollouts.goal_index(goal)], axis=0).astype(int)
                markers.append((f"proxy:{goal}", (int(pos[0]), int(pos[1]))))
        maps.append((f"{agent} (n={rollouts.episodes})", grid, markers))
    return heatmap_grid(maps, "Where test-shift episodes end (share of episodes per cell; grey: none)", path, cmap="YlOrRd")


def frame_strip(frames_by_agent: dict[str, list[np.ndarray]], path: Path) -> Path | None:
    """A strip of frames per agent from a representative misgeneralizing episode."""
    rows = [(a, f) for a, f in frames_by_agent.items() if f]
    if not rows:
        return None
    cols = max(len(f) for _, f in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.9 * cols, 2.1 * len(rows)), squeeze=False)
    for r, (agent, frames) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(frames):
                ax.imshow(frames[c])
                if c == 0:
                    ax.set_title(agent, fontsize=8, loc="left")
    fig.suptitle("A test-shift episode where the intended goal was missed (first → last frame)", fontsize=10)
    return _save(fig, path)


def per_seed_strip(cells: list[Aggregate], title: str, path: Path) -> Path | None:
    """Per-seed values of one metric per agent (dots) with the over-seed interval (bar)."""
    cells = [c for c in cells if c.per_seed]
    if not cells:
        return None
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(cells) + 1), 3.0))
    for i, cell in enumerate(cells):
        values = [e.mean for _, e in cell.per_seed]
        ax.scatter([i] * len(values), values, color=_colour(cell.kind, i, cell.agent), zorder=3)
        if len(values) > 1 and not np.isnan(cell.over_seeds.lo):
            ax.plot([i, i], [cell.over_seeds.lo, cell.over_seeds.hi], color="black", lw=3, alpha=0.35)
    ax.set_xticks(range(len(cells)), [c.agent for c in cells], rotation=20)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def group_by(cells: list[Aggregate], key: str) -> dict[str, list[Aggregate]]:
    out: dict[str, list[Aggregate]] = defaultdict(list)
    for c in cells:
        out[getattr(c, key)].append(c)
    return out
