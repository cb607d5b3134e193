"""The training harness: resolve a config, create or resume a run, train with checkpoints.

``train(request)`` is what ``misgen train`` (and ``study`` / ``sweep``) call. It owns the run
directory: it writes ``run.json`` (resolved config, seeds, versions, git commit, status), appends
the training curve to ``metrics.jsonl`` whenever the agent reports, saves checkpoints every
``checkpoint_every`` env steps and at the end, and on Ctrl-C saves a last checkpoint and marks the
run ``interrupted`` so ``--resume`` continues it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from misgen.agents import get_agent
from misgen.agents.base import Agent
from misgen.agents.checkpoint import load_agent, save_agent
from misgen.configs import build_config, config_to_dict
from misgen.environments import get_env
from misgen.environments.spec import EnvSpec
from misgen.errors import MisgenError, unknown_choice
from misgen.progress import make_progress
from misgen.provenance import git_commit, machine, package_versions
from misgen.runstore import Run, config_hash, run_dir_for, runs_root
from misgen.seeding import derive_seed

# Fields of the resolved config that may change on --resume without making it a different run.
NOT_HASHED = ("steps", "checkpoint_every")


@dataclass(frozen=True)
class TrainRequest:
    """What the user asked for, before resolution.

    Attributes:
        env: env registry name.
        agent: agent registry name.
        seed: the run's root seed; every other seed derives from it.
        steps: env steps to train in total (``None``: the agent's default).
        preset: agent config preset (``None``: the agent's defaults).
        overrides: ``--set`` pairs; ``env.<field>`` keys go to the env config.
        checkpoint_every: env steps between checkpoints (``None``: 5 checkpoints over the run).
        resume: continue an existing run with the same config instead of refusing.
        root: runs root (``None``: ``$MISGEN_RUNS`` or ``./runs``).
    """

    env: str
    agent: str
    seed: int = 0
    steps: int | None = None
    preset: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    checkpoint_every: int | None = None
    resume: bool = False
    root: Path | None = None


@dataclass(frozen=True)
class ResolvedTraining:
    spec: EnvSpec
    agent_cls: type[Agent]
    agent_config: Any
    env_overrides: dict[str, Any]
    steps: int
    checkpoint_every: int
    config: dict[str, Any]  # JSON record of everything above, saved in run.json
    run_dir: Path


def resolve(request: TrainRequest) -> ResolvedTraining:
    """Validate names and overrides and compute the run directory; raises MisgenError on bad input."""
    spec = get_env(request.env)
    if not spec.available():
        raise MisgenError(f"env {spec.id!r} needs {', '.join(spec.requires)}; install the {spec.backend!r} extra")
    cls = get_agent(request.agent)
    if not cls.trainable and request.steps:
        raise MisgenError(f"agent {cls.name!r} is scripted and cannot be trained; use it with `misgen eval`/`probe`")
    presets = cls.presets
    if request.preset is not None and request.preset not in presets:
        raise unknown_choice(f"preset for agent {cls.name!r}:", request.preset, presets)
    agent_sets = {k: v for k, v in request.overrides.items() if not k.startswith("env.")}
    env_sets = {k.removeprefix("env."): v for k, v in request.overrides.items() if k.startswith("env.")}
    defaults = {**cls.env_defaults(spec), **presets.get(request.preset or "", {})}
    agent_config = build_config(cls.Config, defaults, agent_sets, f"agent {cls.name!r}")
    env_overrides: dict[str, Any] = {}
    if env_sets:
        if spec.config_type is None:
            raise MisgenError(f"env {spec.id!r} takes no env.* options")
        # Typed against the env config; split kwargs still apply underneath.
        typed = build_config(spec.config_type, {}, env_sets, f"env {spec.id!r}")
        env_overrides = {k: getattr(typed, k) for k in env_sets}
    steps = int(request.steps if request.steps is not None else cls.default_steps)
    if steps < 0:
        raise MisgenError(f"--steps must be >= 0, got {steps}")
    every = int(request.checkpoint_every or max(1, steps // 5))
    if every < 1:
        raise MisgenError(f"--checkpoint-every must be >= 1, got {every}")
    config = {
        "env": spec.id,
        "agent": cls.name,
        "preset": request.preset,
        "agent_config": config_to_dict(agent_config),
        "env_overrides": env_overrides,
        "steps": steps,
        "checkpoint_every": every,
    }
    hashed = {k: v for k, v in config.items() if k not in NOT_HASHED}
    run_dir = run_dir_for(spec.id, cls.name, request.seed, hashed, request.root or runs_root())
    return ResolvedTraining(spec, cls, agent_config, env_overrides, steps, every, config, run_dir)


class RunContext:
    """The :class:`~misgen.agents.base.TrainContext` backed by a run directory and a progress bar."""

    def __init__(self, run: Run, agent: Agent, total_steps: int, start_step: int, seed: int, every: int, progress, task) -> None:
        self.run = run
        self.agent = agent
        self.total_steps = total_steps
        self.start_step = start_step
        self.seed = seed
        self.every = every
        self.progress = progress
        self.task = task
        self.started = time.monotonic()
        self.last_saved = start_step
        self.next_checkpoint = (start_step // every + 1) * every

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        record = {"step": int(step), "wall_s": round(time.monotonic() - self.started, 3)}
        record.update({k: float(v) for k, v in metrics.items()})
        self.run.append_metrics(record)
        status = "  ".join(f"{k.split('/')[-1]}={float(v):.3g}" for k, v in metrics.items() if "success" in k or "return" in k)
        self.progress.update(self.task, completed=min(step, self.total_steps), status=status)
        if step >= self.next_checkpoint and step < self.total_steps:
            self.checkpoint(step)
            self.next_checkpoint = (step // self.every + 1) * self.every

    def checkpoint(self, step: int) -> Path:
        path = save_agent(self.agent, self.run.checkpoint_dir(step), {"run": self.run.name, "step": step})
        self.last_saved = step
        self.run.update(last_checkpoint=step)
        return path


def _provenance(seed: int) -> dict[str, Any]:
    return {
        "seeds": {
            "root": seed,
            "agent": derive_seed(seed, "agent"),
            "env": derive_seed(seed, "env", "train"),
            "learn": derive_seed(seed, "learn"),
        },
        "versions": package_versions(),
        "git_commit": git_commit(),
        "machine": machine(),
    }


def train(request: TrainRequest, console: Console | None = None) -> Run:
    """Create (or resume) the run for ``request`` and train it to completion."""
    from misgen.progress import console as default_console

    console = console or default_console
    res = resolve(request)
    agent: Agent
    if (res.run_dir / "run.json").exists():
        if not request.resume:
            raise MisgenError(f"run {res.run_dir} already exists; pass --resume to continue it, or use a new --seed")
        run = Run.open(res.run_dir)
        old = {k: v for k, v in run.config.items() if k not in NOT_HASHED}
        new = {k: v for k, v in res.config.items() if k not in NOT_HASHED}
        if config_hash(old) != config_hash(new):
            raise MisgenError(f"run {res.run_dir} was made with a different config; refusing to resume it")
        run.update(config=res.config, status="running")
        latest = run.latest_checkpoint()
        if latest is None:
            agent = _new_agent(res, request.seed)
        else:
            agent = load_agent(latest[1])
            if agent.name != res.agent_cls.name:
                raise MisgenError(f"checkpoint {latest[1]} holds agent {agent.name!r}, run expects {res.agent_cls.name!r}")
            run.truncate_metrics(latest[0])
        start = agent.steps_done
        console.print(f"resuming [bold]{run.name}[/] from step {start:,}")
    else:
        run = Run.create(res.run_dir, {**_identity(res, request.seed), "status": "running", **_provenance(request.seed)})
        agent = _new_agent(res, request.seed)
        start = 0
        console.print(f"new run [bold]{run.path}[/]")
    if not res.agent_cls.trainable or start >= res.steps:
        if not run.checkpoints():
            save_agent(agent, run.checkpoint_dir(start), {"run": run.name, "step": start})
        run.update(status="complete", steps_done=start)
        console.print(f"nothing to train: {start:,} of {res.steps:,} steps done")
        return run
    env = res.spec.make("train", agent.num_envs(), derive_seed(request.seed, "env", "train", start), res.env_overrides)
    learn_seed = derive_seed(request.seed, "learn", start)
    with make_progress("steps", console) as progress:
        task = progress.add_task(f"{res.agent_cls.name} on {res.spec.id}", total=res.steps, completed=start, status="")
        ctx = RunContext(run, agent, res.steps, start, learn_seed, res.checkpoint_every, progress, task)
        try:
            agent.learn(env, ctx)
        except KeyboardInterrupt:
            if agent.steps_done > ctx.last_saved or not run.checkpoints():
                ctx.checkpoint(agent.steps_done)
            run.update(status="interrupted", steps_done=agent.steps_done)
            console.print(f"[yellow]interrupted at step {agent.steps_done:,}; checkpoint saved. "
                          f"Continue with the same command plus --resume[/]")
            raise
        except MisgenError:
            run.update(status="failed")
            raise
        except Exception as err:
            run.update(status="failed", error=f"{type(err).__name__}: {err}")
            raise
        finally:
            env.close()
    ctx.checkpoint(agent.steps_done)
    run.update(status="complete", steps_done=agent.steps_done, train_wall_s=round(time.monotonic() - ctx.started, 2))
    return run


def _identity(res: ResolvedTraining, seed: int) -> dict[str, Any]:
    return {"env": res.spec.id, "agent": res.agent_cls.name, "kind": res.agent_cls.kind, "seed": seed, "config": res.config}


def _new_agent(res: ResolvedTraining, seed: int) -> Agent:
    env = res.spec.make("train", 1, 0, res.env_overrides)
    try:
        return res.agent_cls(res.agent_config, env.single_observation_space, env.single_action_space, derive_seed(seed, "agent"))
    finally:
        env.close()
