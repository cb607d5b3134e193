"""``misgen probe RUN``: run the probe battery on a run's checkpoints and print the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from misgen.progress import console


def _arrow(hib: bool | None) -> str:
    return "↑" if hib is True else ("↓" if hib is False else "")


def results_table(result: dict[str, Any]) -> Table:
    """One row per probe metric: estimate, 95% interval, n, direction."""
    title = f"{result['run']} @ step {result['step']:,} ({result['episodes']} episodes per split, 95% bootstrap CI)"
    table = Table(title=title)
    for col, kw in (
        ("probe", {}),
        ("metric", {}),
        ("mean", {"justify": "right"}),
        ("95% CI", {"justify": "right"}),
        ("n", {"justify": "right"}),
        ("", {}),
    ):
        table.add_column(col, **kw)
    for name, entry in result["probes"].items():
        first = True
        for metric, est in entry["metrics"].items():
            n = int(est["n"])
            nan = n == 0 or est["mean"] != est["mean"]
            table.add_row(
                f"{name} v{entry['version']}" if first else "",
                metric,
                "n/a" if nan else f"{est['mean']:.3f}",
                "" if nan or est["lo"] != est["lo"] else f"[{est['lo']:.3f}, {est['hi']:.3f}]",
                str(n),
                _arrow(entry["higher_is_better"].get(metric)),
                end_section=False,
            )
            first = False
        notes = [
            f"{k}: {entry['details'][k]}"
            for k in ("critic_values", "modal_goal", "method")
            if k in entry.get("details", {})
        ]
        if notes:
            table.add_row("", f"[dim]{'; '.join(notes)}[/]", "", "", "", "")
        table.add_section()
    return table


def register(app: typer.Typer) -> None:
    @app.command("probe")
    def probe(
        run: Path = typer.Argument(None, help="Run directory (runs/<env>/<agent>/s<seed>-<hash>)."),
        checkpoint: str = typer.Option("latest", help="Checkpoint(s): latest, all, or step_N."),
        episodes: int = typer.Option(200, help="Episodes per split (train, test-iid, test-shift)."),
        seed: int = typer.Option(
            None, help="Root seed of rollouts and bootstraps (default: the run's seed)."
        ),
        only: list[str] = typer.Option([], "--probe", "-p", help="Run only these probes (repeatable)."),
        threads: int = typer.Option(
            1, help="Torch/BLAS threads while probing (small batches: 1 is fastest on a busy CPU)."
        ),
        list_: bool = typer.Option(False, "--list", help="List the registered probes and exit."),
    ) -> None:
        """Probe a run's checkpoint(s): capability, success, proxy pursuit, revealed goal, value map, latents."""
        from misgen.errors import MisgenError
        from misgen.probes.base import PROBES

        if list_:
            table = Table(title="registered probes")
            for col in ("probe", "version", "needs policy", "envs", "description"):
                table.add_column(col)
            for name, pdef in PROBES.items():
                table.add_row(
                    name,
                    str(pdef.version),
                    "yes" if pdef.needs_policy else "",
                    ", ".join(pdef.envs or ("any",)),
                    pdef.description,
                )
            console.print(table)
            return
        if run is None:
            raise MisgenError("missing RUN (a run directory); see `misgen probe --help`")
        from misgen.probes.battery import run_battery
        from misgen.runstore import Run

        opened = Run.open(run)
        failed = False
        for step, path in opened.resolve_checkpoint(checkpoint):
            console.print(f"[bold]probing[/] {opened.name} step {step:,}")
            result = run_battery(
                opened,
                (step, path),
                episodes=episodes,
                seed=seed,
                probes=only or None,
                console=console,
                threads=threads,
            )
            console.print(results_table(result))
            for name, reason in result["skipped"].items():
                console.print(f"[dim]skipped {name}: {reason}[/]")
            for name, message in result["errors"].items():
                console.print(f"[bold red]probe {name} failed:[/] {message.splitlines()[0]}", highlight=False)
                failed = True
            t = result["timing"]
            console.print(
                f"wrote {opened.probes_dir / f'step_{step}.json'} in {t['total_s']:.1f}s "
                f"(load {t['load_s']:.1f}s, rollouts {t['rollouts_s']:.1f}s, probes {t['probes_s']:.1f}s; CPU {t['cpu_s']:.1f}s)"
            )
        if failed:
            raise typer.Exit(1)
