"""``misgen train``: train an agent class on an env's train split into the run store."""

from __future__ import annotations

from pathlib import Path

import typer

from misgen.configs import parse_overrides
from misgen.progress import console


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        env: str = typer.Option(..., "--env", "-e", help="Environment (see `misgen envs`)."),
        agent: str = typer.Option(..., "--agent", "-a", help="Agent class (see `misgen agents`)."),
        seed: int = typer.Option(0, help="Root seed of the run; all other seeds derive from it."),
        steps: int = typer.Option(None, help="Env steps to train (default: the agent's default)."),
        preset: str = typer.Option(None, help="Agent config preset, e.g. debug."),
        set_: list[str] = typer.Option(
            [], "--set", help="Config override key=value (env.<field>=... for the env)."
        ),
        checkpoint_every: int = typer.Option(None, help="Env steps between checkpoints (default: steps/5)."),
        eval_every: int = typer.Option(
            None,
            help="Env steps between evaluations of the current policy on the train split, on the env's own reward "
            "(logged as eval/success, eval/return; default: 10 per run, none under 20,000 steps; 0: off).",
        ),
        eval_episodes: int = typer.Option(32, help="Episodes per evaluation."),
        resume: bool = typer.Option(
            False, "--resume", help="Continue an existing run from its last checkpoint."
        ),
        runs: Path = typer.Option(None, help="Runs root (default: $MISGEN_RUNS or ./runs)."),
    ) -> None:
        """Train AGENT on ENV's train split; checkpoints go to runs/<env>/<agent>/s<seed>-<hash>/.

        Ctrl-C rolls the agent back to its last consistent state, saves it and exits 130; the same
        command plus --resume continues the run.
        """
        from misgen.train import TrainRequest
        from misgen.train import train as run_training

        request = TrainRequest(
            env=env,
            agent=agent,
            seed=seed,
            steps=steps,
            preset=preset,
            overrides=parse_overrides(set_),
            checkpoint_every=checkpoint_every,
            eval_every=eval_every,
            eval_episodes=eval_episodes,
            resume=resume,
            root=runs,
        )
        run = run_training(request, console)
        ckpt = run.latest_checkpoint()
        console.print(
            f"[green]done[/]: {run.path} (status {run.status}, latest checkpoint step {ckpt[0] if ckpt else '-'})"
        )
        console.print(f"next: misgen eval {run.path}")
