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
        env: str = typer.Option(
            None,
            "--env",
            "-e",
            help="Environments, comma-separated (default: the budget's: quick maze-cheese, full maze-cheese,coinrun-shift).",
        ),
        agents: str = typer.Option("ppo,dreamer,planner", help="Agent classes, comma-separated."),
        seeds: int = typer.Option(
            None, help="Seeds per agent class and knob value (default: the budget's: quick 2, full 5)."
        ),
        budget: str = typer.Option(
            "quick", help="quick (a short study; times in misgen/bench/MEASUREMENTS.md) or full."
        ),
        knob: str = typer.Option(
            None,
            help="Disambiguation curve: FIELD=v1,v2,... trains every class at each value of an env field, e.g. "
            "cheese_random_fraction=0,0.01,0.03,0.1,0.3. 'none' skips the curve the full budget runs by default.",
        ),
        backend: str = typer.Option("local", help="local (process pool) or ray."),
        workers: int = typer.Option(None, help="Parallel jobs (default: the number of cores)."),
        ray_address: str = typer.Option(None, help="Ray cluster address (default: local Ray instance)."),
        runs: Path = typer.Option(None, help="Runs root (default: $MISGEN_RUNS or ./runs)."),
        out: Path = typer.Option(
            None, help="Report folder (default: <runs>/<env>/study-<budget>[-<knob field>])."
        ),
    ) -> None:
        """Train each agent class on ENV, probe every checkpoint, write the comparison report.

        Resumable: finished runs are skipped and interrupted ones continue, so re-running the same command after Ctrl-C picks up where it stopped.
        """
        from misgen.errors import MisgenError, unknown_choice
        from misgen.runstore import runs_root
        from misgen.study import BUDGETS, default_knob, parse_knob, study_jobs
        from misgen.sweep import run_sweep

        if backend not in ("local", "ray"):
            raise MisgenError(f"unknown backend {backend!r}; valid choices: local, ray")
        root = runs or runs_root()
        if budget not in BUDGETS:
            raise unknown_choice("budget", budget, BUDGETS)
        plan = BUDGETS[budget]
        envs = _split_csv([env]) if env else list(plan.envs)
        jobs, fields = [], set()
        for env_id in envs:
            if knob is None:
                chosen = default_knob(env_id, plan)
            elif knob.strip().lower() == "none":
                chosen = None
            else:
                chosen = parse_knob(env_id, knob)
            env_jobs = study_jobs(
                env_id, _split_csv([agents]), plan.seeds if seeds is None else seeds, budget, root, chosen
            )
            if chosen is not None:
                fields.add(chosen.field)
                values = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in chosen.values)
                console.print(
                    f"{env_id}: disambiguation curve over {chosen.field} = {values}: {len(env_jobs)} jobs",
                    highlight=False,
                )
            jobs += env_jobs
        results = run_sweep(jobs, backend=backend, workers=workers, ray_address=ray_address, console=console)
        suffix = f"-{'-'.join(sorted(fields))}" if fields else ""
        where = root / envs[0] if len(envs) == 1 else root
        _finish(results, root, out or where / f"study-{budget}{suffix}")
