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
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from misgen.report.data import FEW_EPISODES, Aggregate, RunRecord  # noqa: E402

AGENT_NAME_COLOURS = {
    "ppo": "#4c72b0",
    "dreamer": "#55a868",
    "planner": "#c44e52",
    "oracle-intended": "#b8b8b8",
    "oracle-proxy": "#7a7a7a",
}


def _colour(kind: str, i: int, agent: str = "") -> Any:
    """Stable colours: the three agent classes and the two reference oracles by name, else tab10."""
    return AGENT_NAME_COLOURS.get(agent) or plt.cm.tab10(i % 10)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps legends placed below the axes
    plt.close(fig)
    return path


WEAK_NOTE = f"hatched outline, n printed: fewer than {FEW_EPISODES} episodes or agent not competent"


def _err(e: Any) -> tuple[float, float]:
    lo = max(0.0, e.mean - e.lo) if not np.isnan(e.lo) else 0.0
    hi = max(0.0, e.hi - e.mean) if not np.isnan(e.hi) else 0.0
    return lo, hi


def grouped_bars(
    cells: list[Aggregate],
    groups: list[str],
    title: str,
    ylabel: str,
    path: Path,
    weak: dict[str, str] | None = None,
) -> Path | None:
    """Bars of ``metric`` per group (x) and agent (colour) that show the evidence behind them.

    Every bar carries its interval (over seeds with several seeds, else over episodes); each seed's
    value is a dot over the bar; a bar resting on fewer than FEW_EPISODES episodes, or of an agent
    in ``weak`` (agent -> reason, e.g. not competent), is drawn as a hatched outline with its n
    printed; a uniform-random agent's value, where the probe reports it, is a dashed black tick.
    ``cells`` are aggregates whose ``metric`` names are the x groups (e.g. splits).
    """
    weak = weak or {}
    agents = sorted({c.agent for c in cells}, key=lambda a: (next(c.kind for c in cells if c.agent == a), a))
    if not cells or not agents:
        return None
    fig, ax = plt.subplots(figsize=(max(5.5, 1.8 * len(groups) + 1.5), 3.6))
    width = 0.8 / len(agents)
    any_weak = any_chance = False
    for i, agent in enumerate(agents):
        kind = next(c.kind for c in cells if c.agent == agent)
        colour = _colour(kind, i, agent)
        first = True
        for j, group in enumerate(groups):
            match = [c for c in cells if c.agent == agent and c.metric == group]
            if not match or np.isnan(match[0].over_seeds.mean):
                continue
            cell = match[0]
            e = cell.over_seeds
            x = j + (i - (len(agents) - 1) / 2) * width
            thin = cell.n_episodes < FEW_EPISODES or agent in weak
            any_weak |= thin
            style = (
                {"facecolor": "white", "edgecolor": colour, "hatch": "///", "linewidth": 1.2}
                if thin
                else {"color": colour, "edgecolor": "white"}
            )
            ax.bar(
                [x],
                [e.mean],
                width,
                yerr=np.array([_err(e)]).T,
                capsize=3,
                ecolor="black",
                label=agent if first else None,
                **style,
            )
            first = False
            if len(cell.per_seed) > 1:
                ax.scatter(
                    [x] * len(cell.per_seed),
                    [v.mean for _, v in cell.per_seed],
                    s=12,
                    color="black",
                    zorder=4,
                )
            if thin:
                ax.annotate(
                    f"n={cell.n_episodes}",
                    (x, min(1.0, e.hi if not np.isnan(e.hi) else e.mean) + 0.02),
                    ha="center",
                    fontsize=7,
                )
            if cell.chance is not None and not np.isnan(cell.chance.mean):
                any_chance = True
                ax.plot(
                    [x - width / 2, x + width / 2],
                    [cell.chance.mean] * 2,
                    color="black",
                    ls="--",
                    lw=1.2,
                    zorder=5,
                )
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, 1.12)
    handles, labels = ax.get_legend_handles_labels()
    if any_chance:
        handles.append(Line2D([], [], color="black", ls="--"))
        labels.append("uniform-random agent (chance)")
    if any(len(c.per_seed) > 1 for c in cells):
        handles.append(Line2D([], [], color="black", marker="o", ls="", markersize=3))
        labels.append("one seed")
    if any_weak:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///"))
        labels.append(WEAK_NOTE)
    ax.legend(
        handles, labels, fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False
    )
    return _save(fig, path)


EVAL_KEY = "eval/success"
TRAIN_KEY = "charts/success"


def training_curves(records: list[RunRecord], path: Path) -> Path | None:
    """Success on the intended goal over training, one colour per agent, one line per seed.

    Solid: the training episodes (``charts/success``; these may include training-only bonuses such
    as a novelty bonus in the planner's search). Dashed with dots: the periodic evaluation under the
    task's own reward without any training-only bonus (``eval/success``), where the run logged it.
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    drawn = 0
    agents: dict[str, int] = {}
    labelled: set[tuple[str, str]] = set()
    has_eval = False
    without_eval: list[str] = []
    for record in records:
        curve = record.run.metrics()
        keys = {k for m in curve for k in m}
        train_key = (
            TRAIN_KEY
            if TRAIN_KEY in keys
            else next((k for k in sorted(keys) if "success" in k and not k.startswith("eval/")), None)
        )
        agent = record.run.agent_name
        i = agents.setdefault(agent, len(agents))
        colour = _colour(str(record.run.info.get("kind", "")), i, agent)
        if EVAL_KEY not in keys and train_key is not None and agent not in without_eval:
            without_eval.append(agent)
        for key, style in (
            (train_key, {"ls": "-"}),
            (EVAL_KEY if EVAL_KEY in keys else None, {"ls": "--", "marker": "o", "markersize": 3}),
        ):
            if key is None:
                continue
            steps = [m["step"] for m in curve if key in m]
            values = [m[key] for m in curve if key in m]
            which = "eval" if key == EVAL_KEY else "train"
            has_eval |= which == "eval"
            label = (
                None
                if (agent, which) in labelled
                else f"{agent}: "
                + ("evaluation, task reward only" if which == "eval" else "training episodes")
            )
            labelled.add((agent, which))
            ax.plot(steps, values, color=colour, alpha=0.85, label=label, **style)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("env steps")
    ax.set_ylabel("success (intended goal)")
    ax.set_ylim(-0.02, 1.02)
    if not has_eval:
        note = " (no bonus-free evaluation logged: training episodes only)"
    else:
        note = f" (no bonus-free evaluation logged for {', '.join(without_eval)})" if without_eval else ""
    ax.set_title("Training curves: train split" + note, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    return _save(fig, path)


def heatmap_grid(
    maps: list[tuple[str, np.ndarray, list[tuple[str, tuple[int, int]]]]],
    title: str,
    path: Path,
    cmap: str = "viridis",
) -> Path | None:
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
            ax.scatter(
                [c],
                [r],
                marker="*" if "intended" in name else "s",
                s=90,
                edgecolor="white",
                facecolor="none",
                linewidths=1.5,
            )
            ax.annotate(
                name.split(":")[-1],
                (c, r),
                color="white",
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
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
    return heatmap_grid(
        maps, "Where test-shift episodes end (share of episodes per cell; grey: none)", path, cmap="YlOrRd"
    )


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


def per_seed_strip(
    cells: list[Aggregate], title: str, path: Path, weak: dict[str, str] | None = None
) -> Path | None:
    """Per-seed values of one metric per agent: a dot with its episode interval per seed, and the
    over-seed interval as a grey bar; thin or not-competent cells are hollow with their n printed."""
    weak = weak or {}
    cells = [c for c in cells if c.per_seed]
    if not cells:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(cells) + 1.5), 3.2))
    any_weak = False
    for i, cell in enumerate(cells):
        colour = _colour(cell.kind, i, cell.agent)
        k = len(cell.per_seed)
        xs = i + (np.arange(k) - (k - 1) / 2) * min(0.12, 0.6 / max(1, k))
        for x, (_, e) in zip(xs, cell.per_seed, strict=True):
            if np.isnan(e.mean):
                continue
            thin = e.n < FEW_EPISODES or cell.agent in weak
            any_weak |= thin
            ax.errorbar(
                [x],
                [e.mean],
                yerr=np.array([_err(e)]).T,
                fmt="o",
                color=colour,
                mfc="white" if thin else colour,
                capsize=2,
                zorder=3,
            )
            if thin:
                ax.annotate(f"n={e.n}", (x, e.mean), xytext=(4, 2), textcoords="offset points", fontsize=7)
        if k > 1 and not np.isnan(cell.over_seeds.lo):
            ax.plot(
                [i, i],
                [cell.over_seeds.lo, cell.over_seeds.hi],
                color="black",
                lw=6,
                alpha=0.18,
                solid_capstyle="butt",
            )
        if cell.chance is not None and not np.isnan(cell.chance.mean):
            ax.plot([i - 0.3, i + 0.3], [cell.chance.mean] * 2, color="black", ls="--", lw=1)
    ax.set_xticks(range(len(cells)), [c.agent for c in cells], rotation=20)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title, fontsize=10)
    notes = "dot: one seed with its episode interval; grey bar: interval over seeds; dashed: chance"
    if any_weak:
        notes += f"; hollow, n printed: < {FEW_EPISODES} episodes or not competent"
    ax.set_xlabel(notes, fontsize=7)
    return _save(fig, path)


def knob_curve(series: list[dict[str, Any]], knob: str, ylabel: str, title: str, path: Path) -> Path | None:
    """A metric against the disambiguating knob: one line per agent class, seed intervals as bands.

    ``series`` items: ``{"agent", "kind", "x": [...], "mean": [...], "lo": [...], "hi": [...],
    "thin": [bool...], "chance": [...]}`` (NaN where absent). Hollow markers: fewer than
    FEW_EPISODES episodes or not competent at that value. The x axis is logarithmic (symmetric-log
    when 0 is among the values) when the positive values span a decade or more. A class with no
    value at any knob setting is named on the plot instead of silently missing; scripted references
    (run at one value only) are left out, the headline reports them as controls.
    """
    if not series:
        return None
    xs_all = sorted({x for s in series for x in s["x"]})
    series = [s for s in series if s["kind"] != "scripted" or len(s["x"]) > 1]
    empty = [s["agent"] for s in series if all(np.isnan(m) for m in s["mean"])]
    series = [s for s in series if s["agent"] not in empty]
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    if empty:
        ax.text(
            0.5,
            0.5,
            "no episodes to measure this on (n = 0)\nat any value: " + ", ".join(empty),
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=8,
            color="#a33",
        )
    chance_x, chance_y = [], []
    for x in xs_all:
        values = [
            c
            for s in series
            for xx, c in zip(s["x"], s["chance"], strict=True)
            if xx == x and not np.isnan(c)
        ]
        if values:
            chance_x.append(x)
            chance_y.append(float(np.mean(values)))
    any_thin = False
    for i, s in enumerate(series):
        colour = _colour(s["kind"], i, s["agent"])
        x, m, lo, hi = (np.asarray(s[k], dtype=float) for k in ("x", "mean", "lo", "hi"))
        ok = ~np.isnan(m)
        ls = ":" if s["kind"] == "scripted" else "-"
        ax.plot(x[ok], m[ok], color=colour, ls=ls, lw=1.6, label=s["agent"])
        band = ok & ~np.isnan(lo) & ~np.isnan(hi)
        ax.fill_between(x[band], lo[band], hi[band], color=colour, alpha=0.18, lw=0)
        thin = np.asarray(s["thin"], dtype=bool)
        any_thin |= bool((thin & ok).any())
        ax.scatter(x[ok & ~thin], m[ok & ~thin], color=colour, s=22, zorder=3)
        ax.scatter(x[ok & thin], m[ok & thin], facecolor="white", edgecolor=colour, s=22, zorder=3)
    if chance_x:
        ax.plot(chance_x, chance_y, color="black", ls="--", lw=1.2, label="uniform-random agent (chance)")
    positive = [x for x in xs_all if x > 0]
    if positive and max(positive) / min(positive) >= 10:
        if min(xs_all) <= 0:
            ax.set_xscale("symlog", linthresh=min(positive))
        else:
            ax.set_xscale("log")
    else:
        pad = 0.05 * ((max(xs_all) - min(xs_all)) or 1.0)
        ax.set_xlim(min(xs_all) - pad, max(xs_all) + pad)
    ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all], fontsize=8)
    ax.set_xlabel(f"{knob} (training levels where the goals come apart)", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_ylim(-0.03, 1.05)
    ax.set_title(title, fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Patch(color="grey", alpha=0.25))
    labels.append("band: 95% interval over seeds (over episodes with one seed)")
    if any_thin:
        handles.append(Line2D([], [], marker="o", mfc="white", mec="black", ls=""))
        labels.append(f"hollow: < {FEW_EPISODES} episodes or not competent")
    ax.legend(
        handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False
    )
    return _save(fig, path)


def group_by(cells: list[Aggregate], key: str) -> dict[str, list[Aggregate]]:
    out: dict[str, list[Aggregate]] = defaultdict(list)
    for c in cells:
        out[getattr(c, key)].append(c)
    return out
