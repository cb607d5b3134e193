"""``misgen report RUNS... --out DIR``: the comparison report from the run store."""

from __future__ import annotations

from pathlib import Path

import typer

from misgen.progress import console


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        runs: list[Path] = typer.Argument(..., help="Run directories, or folders containing runs."),
        out: Path = typer.Option(Path("runs/report"), "--out", "-o", help="Output folder."),
    ) -> None:
        """Write report.html, report.md, results.csv and figures/ comparing agent classes."""
        from misgen.report.build import build_report, terminal_tables

        with console.status("building report"):
            paths = build_report(list(runs), out)
        for table in terminal_tables(list(runs)):
            console.print(table)
        console.print(
            f"[green]report[/]: {paths.html}  ({len(paths.figures)} figures, {paths.csv.name}, {paths.markdown.name})"
        )
