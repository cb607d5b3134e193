"""``misgen probe RUN``: run the probe battery on a run's checkpoints and print the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from misgen.progress import console


def _arrow(hib: bool | None) -> str:
    return "↑" if hib is True else ("↓" if hib is False else "")


def _interval(est: dict[str, Any]) -> str:
    from misgen.probes.stats import MIN_N

    n = int(est["n"])
    if n == 0 or est["mean"] != est["mean"]:
        return ""
    if n < MIN_N:
        return f"too few (n<{MIN_N})"
    return "" if est["lo"] != est["lo"] else f"[{est['lo']:.3f}, {est['hi']:.3f}]"


def _chance(est: dict[str, Any] | None) -> str:
    if est is None or est["mean"] != est["mean"]:
        return ""
    return f"{est['mean']:.3f} {_interval(est)}".strip()


def results_table(result: dict[str, Any]) -> Table:
    """One row per probe metric: estimate, 95% interval, the random agent's value, n, direction."""
    title = f"{result['run']} @ step {result['step']:,} ({result['episodes']} episodes per split, 95% CI)"
    table = Table(title=title)
    # Names never shrink to "revealed-…" (they are what a reader greps for); numbers wrap instead.
    probe_width = max((len(f"{k} v{e['version']}") for k, e in result["probes"].items()), default=5)
    metric_width = max((len(m) for e in result["probes"].values() for m in e["metrics"]), default=6)
    columns = (
        ("probe", {"min_width": probe_width, "no_wrap": True}), ("metric", {"min_width": metric_width, "no_wrap": True}),
        ("mean", {"justify": "right"}), ("95% CI", {"justify": "right", "overflow": "fold"}),
        ("chance", {"justify": "right", "overflow": "fold"}), ("n", {"justify": "right"}), ("", {}),
    )  # fmt: skip
    for col, kw in columns:
        table.add_column(col, **kw)
    for name, entry in result["probes"].items():
        first = True
        chance = entry.get("chance", {})
        for metric, est in entry["metrics"].items():
            n = int(est["n"])
            nan = n == 0 or est["mean"] != est["mean"]
            table.add_row(
                f"{name} v{entry['version']}" if first else "",
                metric,
                "n/a" if nan else f"{est['mean']:.3f}",
                _interval(est),
                _chance(chance.get(metric)),
                str(n),
                _arrow(entry["higher_is_better"].get(metric)),
                end_section=False,
            )
            first = False
        details = entry.get("details", {})
        notes = [
            f"{k}: {details[k]}" for k in ("verdict", "critic_values", "modal_goal", "method") if k in details
        ]
        if notes:
            table.add_row("", f"[dim]{'; '.join(notes)}[/]", "", "", "", "", "")
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
        from misgen.probing import run_battery
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
