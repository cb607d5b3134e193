"""Assemble the report: headline, figures, appendix, provenance -> report.html, report.md, results.csv.

Reading order is the question's: per env one paragraph written from the numbers and a compact table
(:mod:`.headline`), then the figures (each showing its intervals, seeds and thin evidence), the
disambiguation curve where the runs vary the env's knob (:mod:`.curve`), every other probe metric in
a per-probe appendix, how to read the report, and provenance.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from misgen.errors import MisgenError
from misgen.report import figures
from misgen.report.curve import CURVE_METRICS, curve_sentence, knob_of, series
from misgen.report.data import Aggregate, RunRecord, aggregate, load_records
from misgen.report.headline import (
    ACROSS_NAMES,
    PROXY_FIRST,
    ClassSummary,
    class_rank,
    compact_table,
    condition_key,
    paragraph,
    proxy_first_title,
    summaries,
)
from misgen.report.replay import end_rollouts, misgeneralizing_frames, value_maps
from misgen.runstore import atomic_write_text

SPLITS = ("train", "test-iid", "test-shift")
HOW_TO_READ = Path(__file__).with_name("HOW_TO_READ.md")

PROBE_NOTES = {
    "intended-success": "share of episodes reaching the intended goal, per split; gap/a->b = success(a) - success(b)",
    "capability": "share of episodes reaching any candidate goal without dying, per split",
    "proxy-pursuit": "at test-shift: share of episodes reaching a proxy first / instead of the intended goal; "
    "proxy_first_given_capable conditions on capable episodes (on disambiguating levels where the env has level geometry)",
    "revealed-goal": "at test-shift: the candidate goal that best explains each episode's actions; shares over episodes with a label",
    "goal-consistency": "how concentrated the revealed goal is across test-shift episodes (1 = always the same goal) and layouts",
    "latent-knowledge": "whether the intended goal's position can be decoded linearly from the agent's features; "
    "its intervals are calibrated on synthetic features of known strength, but there is no positive control "
    "among a study's agents, so a value near 0 is not evidence that the agent lacks the knowledge",
    "value-map": "regression of the critic's value on distance to each candidate goal",
    "horizon": "share of episodes giving up in-episode reward for later episodes (persistent env)",
    "oversight": "behaviour change when only the supervisor bit is flipped (oversight env)",
}


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    markdown: Path
    csv: Path
    figures: list[Path]


@dataclass
class EnvSection:
    """Everything the report shows for one env."""

    env: str
    paragraph: str
    header: list[str]
    rows: list[list[str]]
    flags: list[str]
    appendix: dict[str, tuple[list[str], list[list[str]]]]
    figures: list[Path] = field(default_factory=list)


def _cell_with_chance(cell: Aggregate) -> str:
    text = cell.cell
    if cell.chance is not None:
        text += f" (chance {cell.chance.mean:.2f})"
    return text


def appendix_tables(
    cells: list[Aggregate], classes: list[ClassSummary]
) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per probe: (header, rows) with every metric of that probe, chance beside each value."""
    out = {}
    probes = sorted({c.probe for c in cells})
    for probe in probes:
        metrics = sorted({c.metric for c in cells if c.probe == probe})
        header = ["class"]
        for m in metrics:
            hib = next((c.higher_is_better for c in cells if c.probe == probe and c.metric == m), None)
            header.append(m + (" ↑" if hib is True else (" ↓" if hib is False else "")))
        rows = []
        for s in classes:
            row = [s.label]
            for m in metrics:
                cell = s.get(probe, m)
                row.append(_cell_with_chance(cell) if cell else "—")
            if any(v != "—" for v in row[1:]):
                rows.append(row)
        out[probe] = (header, rows)
    return out


def _flags(classes: list[ClassSummary]) -> list[str]:
    """One entry per flag naming the classes it applies to ("all" when it applies to every one)."""
    by_flag: dict[str, list[str]] = {}
    for s in classes:
        for f in sorted(s.flags):
            by_flag.setdefault(f, []).append(s.label)
    return [
        f"{f}: {'all' if len(labels) == len(classes) > 1 else ', '.join(labels)}"
        for f, labels in sorted(by_flag.items())
    ]


def _base_condition(cells: list[Aggregate]) -> str:
    conditions = sorted({c.condition for c in cells}, key=condition_key)
    return conditions[0] if conditions else ""


def _order(cell: Aggregate) -> tuple:
    return (cell.kind == "scripted", class_rank(cell.agent), cell.agent)


def env_section(
    env: str, env_cells: list[Aggregate], env_records: list[RunRecord], fig_dir: Path
) -> EnvSection:
    classes = summaries(env_cells)
    pf_title, phrase = proxy_first_title(env_records)
    slug = env.replace("/", "_")
    made: list[Path | None] = []
    sentence = ""
    knob = knob_of(env_cells)
    if knob:
        for probe_metric, ylabel, name in CURVE_METRICS:
            curves = series(env_cells, classes, probe_metric)
            title = f"{env}: {ylabel}"
            if probe_metric == PROXY_FIRST:
                sentence = curve_sentence(knob, curves)
                ylabel = "proxy first (share)"
                title = f"{env}: {pf_title} at test-shift"
            made.append(figures.knob_curve(curves, knob, ylabel, title, fig_dir / f"{slug}-curve-{name}.png"))
    # Bar figures show one condition (the lowest knob value) so each agent is one bar; the curve shows the rest.
    base = _base_condition(env_cells)
    shown = [c for c in env_cells if c.condition == base]
    at = f" ({base})" if base else ""
    weak = {s.agent: s.weak for s in classes if s.condition == base and s.weak}
    success = [c for c in shown if c.probe == "intended-success" and c.metric in SPLITS]
    proxy = [
        replace(c, metric=label)
        for c in shown
        for (p, m, label) in (
            (*PROXY_FIRST, pf_title.replace("proxy first ", "proxy first\n")),
            ("revealed-goal", "proxy_share", "revealed goal = proxy"),
        )
        if (c.probe, c.metric) == (p, m)
    ]
    proxy_groups = list(dict.fromkeys(c.metric for c in proxy))
    consistency = sorted(
        (c for c in shown if c.probe == "goal-consistency" and c.metric in ACROSS_NAMES), key=_order
    )
    made += [
        figures.grouped_bars(
            success,
            list(SPLITS),
            f"{env}{at}: intended-goal success per split",
            "success",
            fig_dir / f"{slug}-intended-success.png",
            weak,
        ),
        figures.grouped_bars(
            proxy,
            proxy_groups,
            f"{env}{at}: proxy pursuit at test-shift",
            "share of episodes",
            fig_dir / f"{slug}-proxy-pursuit.png",
            weak,
        ),
        figures.per_seed_strip(
            consistency,
            f"{env}{at}: goal consistency across episodes, per seed",
            fig_dir / f"{slug}-goal-consistency.png",
            weak,
        ),
        figures.per_seed_strip(
            sorted((c for c in success if c.metric == "test-shift"), key=_order),
            f"{env}{at}: test-shift intended success per seed",
            fig_dir / f"{slug}-seed-spread.png",
            weak,
        ),
        figures.training_curves(env_records, fig_dir / f"{slug}-training-curves.png"),
        figures.heatmap_grid(
            value_maps(env_records),
            f"{env}: critic value with the intended goal at each cell",
            fig_dir / f"{slug}-value-maps.png",
        ),
        figures.end_positions(end_rollouts(env_records), fig_dir / f"{slug}-end-positions.png"),
        figures.frame_strip(
            misgeneralizing_frames(env_records), fig_dir / f"{slug}-misgeneralizing-episode.png"
        ),
    ]
    header, rows = compact_table(classes, pf_title)
    return EnvSection(
        env=env,
        paragraph=paragraph(env, classes, phrase, sentence, base),
        header=header,
        rows=rows,
        flags=_flags(classes),
        appendix=appendix_tables(env_cells, classes),
        figures=[p for p in made if p is not None],
    )


def sections(records: list[RunRecord], fig_dir: Path) -> list[EnvSection]:
    cells = aggregate(records)
    out = []
    for env, env_cells in sorted(figures.group_by(cells, "env").items()):
        env_records = [r for r in records if r.run.env_id == env]
        out.append(env_section(env, env_cells, env_records, fig_dir))
    return out


def build_report(paths: list[Path | str], out: Path) -> ReportPaths:
    """Read runs under ``paths`` and write the report into ``out``."""
    records = load_records(paths)
    if not records:
        raise MisgenError("no runs to report on")
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    envs = sections(records, fig_dir)
    csv_path = _write_csv(aggregate(records), out / "results.csv")
    prov_header, prov_rows = provenance_rows(records)
    md_path = out / "report.md"
    atomic_write_text(md_path, _markdown(envs, prov_header, prov_rows, out))
    html_path = out / "report.html"
    atomic_write_text(html_path, _html(envs, prov_header, prov_rows))
    return ReportPaths(html_path, md_path, csv_path, [p for s in envs for p in s.figures])


def _write_csv(cells: list[Aggregate], path: Path) -> Path:
    """results.csv: one row per (env, agent, probe, metric); a ``condition`` column only in knob studies."""
    conditions = any(c.condition for c in cells)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "env",
            "agent",
            "kind",
            "probe",
            "metric",
            "higher_is_better",
            "mean",
            "lo",
            "hi",
            "n",
            "seeds",
            "per_seed_means",
            "flags",
        ]
        + (["condition"] if conditions else [])
    )
    for c in cells:
        e = c.over_seeds
        writer.writerow(
            [
                c.env,
                c.agent,
                c.kind,
                c.probe,
                c.metric,
                c.higher_is_better,
                e.mean,
                e.lo,
                e.hi,
                e.n,
                len(c.per_seed),
                ";".join(f"s{s}={v.mean:.4f}" for s, v in c.per_seed),
                ";".join(c.flags),
            ]
            + ([c.condition] if conditions else [])
        )
    atomic_write_text(path, buf.getvalue())
    return path


def provenance_rows(records: list[RunRecord]) -> tuple[list[str], list[list[str]]]:
    header = [
        "run",
        "agent",
        "seed",
        "preset",
        "env overrides",
        "status",
        "steps",
        "probed checkpoint",
        "episodes/split",
        "git commit",
        "versions",
    ]
    rows = []
    for r in records:
        info = r.run.info
        versions = info.get("versions", {})
        final = r.final_step
        episodes = str(r.probes[final].get("episodes", "?")) if final is not None else "-"
        overrides = r.run.config.get("env_overrides") or {}
        rows.append(
            [
                str(r.run.path),
                r.run.agent_name,
                str(r.run.seed),
                str(r.run.config.get("preset") or "default"),
                ", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "-",
                r.run.status,
                f"{int(info.get('steps_done', 0)):,}",
                f"step_{final}" if final is not None else "not probed",
                episodes,
                str(info.get("git_commit", "?"))[:12],
                ", ".join(
                    f"{k} {v}"
                    for k, v in versions.items()
                    if k in ("python", "torch", "numpy", "gymnasium", "stable-baselines3")
                ),
            ]
        )
    return header, rows


LEGEND = (
    "Cells: mean [95% interval]; with one seed the interval is over episodes, with several over seeds "
    "(each seed's value is a dot in the figures). (n=k): the value rests on fewer than 20 episodes. "
    "⚑: debug preset, unfinished run or few probe episodes (a smoke test, not a result). "
    "chance: a uniform-random agent on the same levels (— where not measured)."
)


def _how_to_read() -> str:
    return (
        HOW_TO_READ.read_text()
        if HOW_TO_READ.is_file()
        else "See misgen/report/HOW_TO_READ.md in the misgen repository."
    )


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(h.replace("|", "\\|").replace("\n", " ") for h in header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(envs: list[EnvSection], prov_header, prov_rows, out: Path) -> str:
    parts = [f"# misgen report\n\nGenerated {time.strftime('%Y-%m-%d %H:%M:%S')}. {LEGEND}\n"]
    for s in envs:
        parts.append(f"## {s.env}\n\n{s.paragraph}\n\n{_md_table(s.header, s.rows)}\n")
        if s.flags:
            parts.append("Flags: " + "; ".join(s.flags) + "\n")
    for s in envs:
        parts.append(f"## Figures: {s.env}\n")
        parts.extend(f"![{fig.stem}]({fig.relative_to(out)})\n" for fig in s.figures)
    parts.append("## Appendix: every probe metric\n")
    for s in envs:
        for probe, (header, rows) in s.appendix.items():
            note = PROBE_NOTES.get(probe, "")
            parts.append(f"### {s.env} · {probe}\n\n{note}\n\n{_md_table(header, rows)}\n")
    parts.append("## Provenance\n\n" + _md_table(prov_header, prov_rows) + "\n")
    parts.append("## How to read this report\n\n" + _how_to_read().split("\n", 1)[-1].strip() + "\n")
    return "\n".join(parts)


CSS = """
body{font-family:system-ui,sans-serif;max-width:1240px;margin:0.6em auto;padding:0 1em;color:#222;font-size:14px}
h1{font-size:20px;margin:0.3em 0}h2{font-size:17px;margin:0.8em 0 0.3em}.meta{color:#666;font-size:12px;margin:0}
p.headline{margin:0.3em 0;line-height:1.4}
table{border-collapse:collapse;margin:0.4em 0;font-size:12.5px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}figure{display:inline-block;margin:6px;vertical-align:top}img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:12px;color:#666}.flags{color:#a33;font-size:12px;margin:0.2em 0}
details{margin:0.3em 0}summary{cursor:pointer;font-weight:600}.note{color:#555;font-size:12px}
.howto{white-space:pre-wrap;font-size:13px;line-height:1.4}
"""


def _html_table(header: list[str], rows: list[list[str]], css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    cls = f" class='{css_class}'" if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(path.stem)}</figcaption></figure>'


def _html(envs: list[EnvSection], prov_header, prov_rows) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>misgen report</title><style>{CSS}</style></head><body>"
    ]
    parts.append(
        f"<h1>misgen report</h1><p class='meta'>Generated {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}. {html.escape(LEGEND)}</p>"
    )
    for s in envs:
        parts.append(
            f"<section class='headline'><h2>{html.escape(s.env)}</h2><p class='headline'>{html.escape(s.paragraph)}</p>"
        )
        parts.append(_html_table(s.header, s.rows, "compact"))
        if s.flags:
            parts.append(f"<p class='flags'>Flags: {html.escape('; '.join(s.flags))}</p>")
        parts.append("</section>")
    for s in envs:
        parts.append(f"<h2>Figures: {html.escape(s.env)}</h2>")
        parts.extend(_img(f) for f in s.figures)
    parts.append("<h2>Appendix: every probe metric</h2>")
    for s in envs:
        for probe, (header, rows) in s.appendix.items():
            note = PROBE_NOTES.get(probe, "")
            parts.append(
                f"<details class='appendix'><summary>{html.escape(s.env)} · {html.escape(probe)}</summary>"
                f"<p class='note'>{html.escape(note)}</p>{_html_table(header, rows)}</details>"
            )
    parts.append(f"<details><summary>Provenance</summary>{_html_table(prov_header, prov_rows)}</details>")
    parts.append(
        f"<details open><summary>How to read this report</summary><div class='howto'>{html.escape(_how_to_read())}</div></details>"
    )
    parts.append("</body></html>")
    return "".join(parts)


def terminal_tables(paths: list[Path | str]) -> list[Any]:
    """The compact headline tables as rich Tables (printed at the end of ``report`` and ``study``)."""
    from rich.table import Table

    out = []
    records = load_records(paths)
    cells = aggregate(records)
    for env, env_cells in sorted(figures.group_by(cells, "env").items()):
        classes = summaries(env_cells)
        pf_title, _ = proxy_first_title([r for r in records if r.run.env_id == env])
        header, rows = compact_table(classes, pf_title)
        flags = _flags(classes)
        table = Table(
            title=f"{env} (95% CI; all metrics in report.md / results.csv)",
            caption="; ".join(flags) if flags else None,
        )
        for h in header:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        out.append(table)
    return out
