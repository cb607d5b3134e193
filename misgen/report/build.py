"""Assemble the report: tables, figures, provenance -> report.html, report.md, results.csv."""

from __future__ import annotations

import base64
import csv
import html
import io
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misgen.errors import MisgenError
from misgen.report import figures
from misgen.report.data import FEW_EPISODES, MIN_EPISODES, Aggregate, RunRecord, aggregate, load_records
from misgen.report.replay import end_rollouts, misgeneralizing_frames, value_maps
from misgen.runstore import atomic_write_text

SPLITS = ("train", "test-iid", "test-shift")
HEADLINE = [
    # (probe, metric, column title) — the summary table's columns, in reading order
    ("intended-success", "train", "intended success: train"),
    ("intended-success", "test-iid", "test-iid"),
    ("intended-success", "test-shift", "test-shift"),
    ("capability", "test-shift", "capable at test-shift"),
    ("proxy-pursuit", "proxy_first_given_capable", "proxy first (capable, separable levels)"),
    ("revealed-goal", "proxy_share", "revealed goal = proxy"),
    ("goal-consistency", "consistency", "goal consistency"),
    ("latent-knowledge", "goal_decoding_accuracy", "latent: intended goal decodable"),
]


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    markdown: Path
    csv: Path
    figures: list[Path]


def _headline(cells: list[Aggregate], headline_only: bool = False) -> list[tuple[str, str, str]]:
    """HEADLINE columns that exist in the data, plus (unless ``headline_only``) every other metric."""
    present = {(c.probe, c.metric) for c in cells}
    cols = [(p, m, t) for p, m, t in HEADLINE if (p, m) in present]
    if headline_only:
        return cols
    known = {(p, m) for p, m, _ in cols}
    cols += [(p, m, f"{p}: {m}") for p, m in sorted(present - known)]
    return cols


def _arrow(hib: bool | None) -> str:
    return " ↑" if hib is True else (" ↓" if hib is False else "")


def summary_tables(cells: list[Aggregate], headline_only: bool = False) -> dict[str, tuple[list[str], list[list[str]], list[str]]]:
    """Per env: (header, rows, flags) of the agent x metric table."""
    out = {}
    for env, env_cells in sorted(figures.group_by(cells, "env").items()):
        cols = _headline(env_cells, headline_only)
        index = {(c.agent, c.probe, c.metric): c for c in env_cells}
        agents = sorted({c.agent for c in env_cells}, key=lambda a: (next(c.kind for c in env_cells if c.agent == a) == "scripted", a))
        header = ["agent", "class"]
        for p, m, title in cols:
            hib = next((c.higher_is_better for c in env_cells if c.probe == p and c.metric == m), None)
            header.append(title + _arrow(hib))
        rows, flags = [], []
        for agent in agents:
            kind = next(c.kind for c in env_cells if c.agent == agent)
            row = [agent, kind]
            agent_flags: set[str] = set()
            for p, m, _ in cols:
                cell = index.get((agent, p, m))
                row.append(cell.cell if cell else "-")
                if cell:
                    agent_flags |= set(cell.flags)
            if agent_flags:
                row[0] += " ⚑"
                flags.append(f"{agent}: {', '.join(sorted(agent_flags))}")
            rows.append(row)
        out[env] = (header, rows, flags)
    return out


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(path.stem)}</figcaption></figure>'


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def provenance_rows(records: list[RunRecord]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "agent", "seed", "preset", "status", "steps", "probed checkpoint", "episodes/split", "git commit", "versions"]
    rows = []
    for r in records:
        info = r.run.info
        versions = info.get("versions", {})
        final = r.final_step
        episodes = str(r.probes[final].get("episodes", "?")) if final is not None else "-"
        rows.append(
            [
                str(r.run.path),
                r.run.agent_name,
                str(r.run.seed),
                str(r.run.config.get("preset") or "default"),
                r.run.status,
                f"{int(info.get('steps_done', 0)):,}",
                f"step_{final}" if final is not None else "not probed",
                episodes,
                str(info.get("git_commit", "?"))[:12],
                ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("python", "torch", "numpy", "gymnasium", "stable-baselines3")),
            ]
        )
    return header, rows


def build_report(paths: list[Path | str], out: Path) -> ReportPaths:
    """Read runs under ``paths`` and write the report into ``out``."""
    records = load_records(paths)
    if not records:
        raise MisgenError("no runs to report on")
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    cells = aggregate(records)
    tables = summary_tables(cells)
    figs: dict[str, list[Path]] = defaultdict(list)
    for env, env_cells in figures.group_by(cells, "env").items():
        env_records = [r for r in records if r.run.env_id == env]
        slug = env.replace("/", "_")
        success = [c for c in env_cells if c.probe == "intended-success" and c.metric in SPLITS]
        proxy = [c for c in env_cells if c.probe in ("proxy-pursuit", "revealed-goal") and c.metric in ("proxy_first_given_capable", "proxy_share")]
        consistency = [c for c in env_cells if c.probe == "goal-consistency" and c.metric == "consistency"]
        made = [
            figures.grouped_bars(success, list(SPLITS), f"{env}: intended-goal success per split", "success", fig_dir / f"{slug}-intended-success.png"),
            figures.grouped_bars(
                [Aggregate(c.env, c.agent, c.kind, c.probe, c.probe, c.higher_is_better, c.over_seeds, c.per_seed, c.flags) for c in proxy],
                ["proxy-pursuit", "revealed-goal"],
                f"{env}: proxy pursuit at test-shift",
                "share of episodes",
                fig_dir / f"{slug}-proxy-pursuit.png",
            ),
            figures.per_seed_strip(consistency, f"{env}: goal consistency (per seed)", fig_dir / f"{slug}-goal-consistency.png"),
            figures.per_seed_strip(
                [c for c in success if c.metric == "test-shift"], f"{env}: test-shift success per seed", fig_dir / f"{slug}-seed-spread.png"
            ),
            figures.training_curves(env_records, fig_dir / f"{slug}-training-curves.png"),
            figures.heatmap_grid(value_maps(env_records), f"{env}: critic value with the intended goal at each cell", fig_dir / f"{slug}-value-maps.png"),
            figures.end_positions(end_rollouts(env_records), fig_dir / f"{slug}-end-positions.png"),
            figures.frame_strip(misgeneralizing_frames(env_records), fig_dir / f"{slug}-misgeneralizing-episode.png"),
        ]
        figs[env] = [p for p in made if p is not None]
    csv_path = _write_csv(cells, out / "results.csv")
    prov_header, prov_rows = provenance_rows(records)
    md = _markdown(tables, figs, prov_header, prov_rows, out)
    md_path = out / "report.md"
    atomic_write_text(md_path, md)
    html_path = out / "report.html"
    atomic_write_text(html_path, _html(tables, figs, prov_header, prov_rows))
    return ReportPaths(html_path, md_path, csv_path, [p for ps in figs.values() for p in ps])


def _write_csv(cells: list[Aggregate], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["env", "agent", "kind", "probe", "metric", "higher_is_better", "mean", "lo", "hi", "n", "seeds", "per_seed_means", "flags"])
    for c in cells:
        e = c.over_seeds
        writer.writerow(
            [c.env, c.agent, c.kind, c.probe, c.metric, c.higher_is_better, e.mean, e.lo, e.hi, e.n, len(c.per_seed),
             ";".join(f"s{s}={v.mean:.4f}" for s, v in c.per_seed), ";".join(c.flags)]
        )
    atomic_write_text(path, buf.getvalue())
    return path


INTRO = (
    "Each cell is the mean with a 95% bootstrap interval: over episodes for a single seed, over seeds when "
    "several seeds were run (the per-seed values are in results.csv and the seed-spread figure). ↑ higher is "
    f"better, ↓ lower is better. ⚑ marks runs trained with a debug preset, not finished, or probed on fewer "
    f"than {MIN_EPISODES} episodes per split: read those as smoke tests, not results. (n=k) marks a cell "
    f"resting on fewer than {FEW_EPISODES} episodes (conditional metrics such as proxy-first on separable levels)."
)


def _markdown(tables, figs, prov_header, prov_rows, out: Path) -> str:
    parts = [f"# misgen report\n\nGenerated {time.strftime('%Y-%m-%d %H:%M:%S')}.\n\n{INTRO}\n"]
    for env, (header, rows, flags) in tables.items():
        parts.append(f"## {env}\n\n{_md_table(header, rows)}\n")
        if flags:
            parts.append("Flags: " + "; ".join(flags) + "\n")
        for fig in figs.get(env, []):
            parts.append(f"![{fig.stem}]({fig.relative_to(out)})\n")
    parts.append("## Provenance\n\n" + _md_table(prov_header, prov_rows) + "\n")
    return "\n".join(parts)


CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}figure{display:inline-block;margin:8px}img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:12px;color:#666}.flags{color:#a33;font-size:13px}
"""


def _html(tables, figs, prov_header, prov_rows) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>misgen report</title><style>{CSS}</style></head><body>"]
    parts.append(f"<h1>misgen report</h1><p>Generated {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}.</p><p>{html.escape(INTRO)}</p>")
    for env, (header, rows, flags) in tables.items():
        parts.append(f"<h2>{html.escape(env)}</h2>{_html_table(header, rows)}")
        if flags:
            parts.append(f"<p class='flags'>Flags: {html.escape('; '.join(flags))}</p>")
        parts.extend(_img(f) for f in figs.get(env, []))
    parts.append(f"<h2>Provenance</h2>{_html_table(prov_header, prov_rows)}</body></html>")
    return "".join(parts)


def terminal_tables(paths: list[Path | str]) -> list[Any]:
    """The summary tables as rich Tables (printed at the end of ``report`` and ``study``)."""
    from rich.table import Table

    out = []
    for env, (header, rows, flags) in summary_tables(aggregate(load_records(paths)), headline_only=True).items():
        table = Table(title=f"{env}: headline metrics (95% CI; all metrics in report.md / results.csv)", caption="; ".join(flags) if flags else None)
        for h in header:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        out.append(table)
    return out


