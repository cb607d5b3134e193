"""``misgen sweep`` and ``misgen study``: grids of runs, probed and reported."""

from __future__ import annotations

from pathlib import Path

import typer

from misgen.progress import console


def _split_csv(values: list[str]) -> list[str]:
    return [v for value in values for v in value.split(",") if v]


def _finish(results, root: Path, out: Path) -> None:
    from misgen.report.build import build_report, terminal_tables

    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        console.print(f"[red]failed[/] {r.job.label}: {(r.error or '').splitlines()[0]}")
    done = [r.run_path for r in results if r.status == "done" and r.run_path]
    if not done:
        raise typer.Exit(1)
    paths = build_report(done, out)
    for table in terminal_tables(done):
        console.print(table)
    console.print(f"[green]report[/]: {paths.html}")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep(
        env: list[str] = typer.Option(..., "--env", "-e", help="Env(s); repeat or comma-separate."),
        agent: list[str] = typer.Option(..., "--agent", "-a", help="Agent(s); repeat or comma-separate."),
        seeds: int = typer.Option(3, help="Seeds per (env, agent): 0..N-1."),
        steps: int = typer.Option(None, help="Training steps per run (default: each agent's default)."),
        preset: str = typer.Option(None, help="Agent preset for every run."),
        episodes: int = typer.Option(200, help="Probe episodes per split."),
        backend: str = typer.Option("local", help="local (process pool) or ray."),
        workers: int = typer.Option(None, help="Parallel jobs (default: the number of cores)."),
        ray_address: str = typer.Option(None, help="Ray cluster address (default: local Ray instance)."),
        runs: Path = typer.Option(None, help="Runs root (default: $MISGEN_RUNS or ./runs)."),
        out: Path = typer.Option(None, help="Report folder (default: <runs>/sweep-report)."),
    ) -> None:
        """Run the (env x agent x seed) grid: train (resuming/skipping finished runs), probe, report."""
        from misgen.errors import MisgenError
        from misgen.runstore import runs_root
        from misgen.sweep import expand_grid, run_sweep

        if backend not in ("local", "ray"):
            raise MisgenError(f"unknown backend {backend!r}; valid choices: local, ray")
        root = runs or runs_root()
        jobs = expand_grid(
            _split_csv(env),
            _split_csv(agent),
            list(range(seeds)),
            steps=steps,
            preset=preset,
            episodes=episodes,
            root=str(root),
        )
        results = run_sweep(jobs, backend=backend, workers=workers, ray_address=ray_address, console=console)
        _finish(results, root, out or root / "sweep-report")

    @app.command("study")
    def study(
        env: str = typer.Option("maze-cheese", "--env", "-e", help="Environment."),
        agents: str = typer.Option("ppo,dreamer,planner", help="Agent classes, comma-separated."),
        seeds: int = typer.Option(1, help="Seeds per agent class."),
        budget: str = typer.Option(
            "quick", help="quick (a short study; times in misgen/bench/MEASUREMENTS.md) or full."
        ),
        workers: int = typer.Option(None, help="Parallel jobs (default: the number of cores)."),
        runs: Path = typer.Option(None, help="Runs root (default: $MISGEN_RUNS or ./runs)."),
        out: Path = typer.Option(None, help="Report folder (default: <runs>/<env>/study-<budget>)."),
    ) -> None:
        """Train each agent class on ENV, probe every checkpoint, write the comparison report."""
        from misgen.runstore import runs_root
        from misgen.study import study_jobs
        from misgen.sweep import run_sweep

        root = runs or runs_root()
        jobs = study_jobs(env, _split_csv([agents]), seeds, budget, root)
        results = run_sweep(jobs, backend="local", workers=workers, console=console)
        _finish(results, root, out or root / env / f"study-{budget}")
