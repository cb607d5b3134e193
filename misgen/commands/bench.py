"""``misgen bench envs|agents|learn``: throughput benchmarks, printed as rich tables and written as JSON.

With ``--json`` (envs, agents, learn) the results go to stdout as JSON and the tables to stderr, so the
output pipes into ``jq`` or a file.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console


def _console(as_json: bool) -> Console:
    from misgen.progress import console

    return Console(stderr=True) if as_json else console


def register(app: typer.Typer) -> None:
    bench = typer.Typer(help="Speed benchmarks (rich table + JSON).", no_args_is_help=True)

    @bench.command("envs")
    def bench_envs(
        out: Path = typer.Option(Path("runs/bench/envs.json"), help="Where to write the JSON results."),
        seconds: float = typer.Option(2.0, help="Measuring time per (env, batch size)."),
        envs: str = typer.Option("", help="Comma-separated env ids (default: all available)."),
        as_json: bool = typer.Option(
            False, "--json", help="Print the JSON results on stdout (tables go to stderr)."
        ),
    ) -> None:
        """Steps/s of every env at batch sizes 1, 16, 256 beside procgen and MiniGrid references."""
        from misgen.bench.envs import run_env_bench

        record = run_env_bench(
            out=out, seconds=seconds, env_ids=[e for e in envs.split(",") if e], console=_console(as_json)
        )
        if as_json:
            print(json.dumps(record, indent=2))

    @bench.command("agents")
    def bench_agents(
        env: str = typer.Option("maze-cheese", help="Env to benchmark the agents on."),
        out: Path = typer.Option(Path("runs/bench/agents.json"), help="Where to write the JSON results."),
        seconds: float = typer.Option(20.0, help="Training time per agent."),
        agents: str = typer.Option("", help="Comma-separated agents (default: all trainable)."),
        as_json: bool = typer.Option(
            False, "--json", help="Print the JSON results on stdout (tables go to stderr)."
        ),
    ) -> None:
        """Env-steps/s and updates/s of each agent class (and planner decisions/s) in one run."""
        from misgen.bench.agents import run_agent_bench

        record = run_agent_bench(
            env_id=env,
            out=out,
            seconds=seconds,
            agent_names=[a for a in agents.split(",") if a],
            console=_console(as_json),
        )
        if as_json:
            print(json.dumps(record, indent=2))

    @bench.command("learn")
    def bench_learn(
        env: str = typer.Option("maze-cheese", help="Env whose train split the agents learn."),
        agents: str = typer.Option("ppo,dreamer,planner", help="Comma-separated agent classes."),
        seeds: int = typer.Option(1, help="Seeds per agent class (0, 1, ...)."),
        minutes: float = typer.Option(20.0, help="Training time limit per run (evaluation excluded)."),
        eval_every: int = typer.Option(16_384, help="Env steps between bonus-free evaluations."),
        eval_episodes: int = typer.Option(100, help="Train-split episodes per evaluation."),
        preset: str = typer.Option(
            "", help="Agent config preset for every run (default: each agent's defaults)."
        ),
        set_: list[str] = typer.Option(
            [], "--set", help="Config override key=value for every run (env.<field> for the env)."
        ),
        out: Path = typer.Option(Path("runs/bench/learn.json"), help="Where to write the JSON results."),
        as_json: bool = typer.Option(
            False, "--json", help="Print the JSON results on stdout (tables and progress go to stderr)."
        ),
    ) -> None:
        """Wall time and env steps to 0.5 / 0.8 / 0.9 train success per agent class and seed."""
        from misgen.bench.learn import run_learn_bench
        from misgen.configs import parse_overrides

        record = run_learn_bench(
            env_id=env, agent_names=[a for a in agents.split(",") if a], seeds=seeds, seconds=minutes * 60,
            eval_every=eval_every, eval_episodes=eval_episodes, out=out, overrides=parse_overrides(set_),
            preset=preset or None, console=_console(as_json),
        )  # fmt: skip
        if as_json:
            print(json.dumps(record, indent=2, default=str))

    app.add_typer(bench, name="bench")
