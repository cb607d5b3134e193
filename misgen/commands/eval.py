"""``misgen eval RUN``: success on the intended and proxy goals per split, as a rich table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from misgen.progress import console


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_(
        run: Path = typer.Argument(..., help="Run directory (runs/<env>/<agent>/s<seed>-<hash>)."),
        split: list[str] = typer.Option(None, "--split", "-s", help="Split(s) to evaluate (default: all)."),
        episodes: int = typer.Option(200, help="Episodes per split."),
        checkpoint: str = typer.Option("latest", help="Checkpoint: latest, step_N."),
        seed: int = typer.Option(None, help="Evaluation seed (default: the run's seed)."),
    ) -> None:
        """Evaluate a run's checkpoint: intended success, proxy goals, outcomes, with 95% intervals."""
        from misgen.environments import get_env
        from misgen.evaluate import evaluate_checkpoint
        from misgen.runstore import Run

        opened = Run.open(run)
        spec = get_env(opened.env_id)
        splits = list(split) if split else list(spec.splits)
        ((step, path),) = opened.resolve_checkpoint(checkpoint)
        with console.status(f"evaluating {opened.name} step {step:,} on {', '.join(splits)}"):
            _, summaries = evaluate_checkpoint(opened, path, splits, episodes, seed)
        proxies = [g.name for g in spec.proxy_goals]
        outcomes = sorted({o for s in summaries for o in s.first_goal})
        table = Table(
            title=f"{opened.name} @ step {step:,} ({episodes} episodes per split, 95% bootstrap CI)"
        )
        table.add_column("split")
        table.add_column(f"{spec.intended_goal.name} success ↑ (intended)")
        for g in proxies:
            table.add_column(f"{g} reached (proxy)")
        for o in outcomes:
            table.add_column(f"first: {o}")
        table.add_column("return")
        for s in summaries:
            table.add_row(
                s.split,
                str(s.intended_success),
                *(str(s.proxy_reached[g]) for g in proxies),
                *(f"{s.first_goal[o].mean:.2f}" if o in s.first_goal else "-" for o in outcomes),
                f"{s.mean_return.mean:.2f}",
            )
        console.print(table)
        hard = [s for s in summaries if s.by_difficulty]
        if hard:
            values = sorted({v for s in hard for v in s.by_difficulty})
            by = Table(
                title=f"{spec.intended_goal.name} success by {hard[0].difficulty} (95% bootstrap CI, episodes)"
            )
            by.add_column(hard[0].difficulty)
            for s in hard:
                by.add_column(s.split)
            for v in values:
                by.add_row(
                    str(v),
                    *(
                        f"{s.by_difficulty[v]} ({s.by_difficulty[v].n})" if v in s.by_difficulty else "-"
                        for s in hard
                    ),
                )
            console.print(by)
