"""The training harness: resolve a config, create or resume a run, train with checkpoints.

``train(request)`` is what ``misgen train`` (and ``study`` / ``sweep``) call. It owns the run
directory: it writes ``run.json`` (resolved config, seeds, versions, git commit, status), appends
the training curve to ``metrics.jsonl`` whenever the agent reports, saves checkpoints every
``checkpoint_every`` env steps and at the end, and evaluates the current policy on the task's own
reward every ``eval_every`` env steps (``eval/*`` keys; see :data:`TRUE_OBJECTIVE`).

Ctrl-C is handled here, once, for every agent: at each ``ctx.report`` (the point where an agent's
weights, optimizer state and counters agree) the harness keeps an in-memory snapshot; on
``KeyboardInterrupt`` it restores the agent to the last snapshot, checkpoints it, marks the run
``interrupted`` and re-raises (the CLI then exits 130). ``--resume`` continues from that checkpoint
exactly as it would from a run that had stopped cleanly at that step.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.console import Console

from misgen.agents import get_agent
from misgen.agents.base import Agent
from misgen.agents.checkpoint import load_agent, read_agent_json, save_agent
from misgen.configs import build_config, config_to_dict
from misgen.environments import get_env
from misgen.environments.spec import EnvSpec
from misgen.errors import MisgenError, unknown_choice
from misgen.progress import make_progress
from misgen.provenance import git_commit, machine, package_versions
from misgen.runstore import Run, config_hash, run_dir_for, runs_root
from misgen.seeding import derive_seed

# Fields of the resolved config that may change on --resume without making it a different run.
# Evaluation runs on a separate copy of the agent with the global RNGs restored afterwards, so it
# never changes what training does (tests/test_train_resume.py checks this).
NOT_HASHED = ("steps", "checkpoint_every", "eval_every", "eval_episodes")
TRUE_OBJECTIVE = "eval/success"
"""The metrics.jsonl key of the true-objective curve: the share of evaluation episodes on the train
split that reached the intended goal, acting with the current policy and no training-only bonus."""
EVAL_KEYS = {
    "eval/success": "intended goal reached (the task's own success), share of eval episodes",
    "eval/return": "mean episode return of the env's own reward (no exploration bonus)",
    "eval/length": "mean episode length",
}
DEFAULT_EVAL_EPISODES = 32
MIN_EVAL_STEPS = 20_000
"""Runs shorter than this (debug runs, tests) get no evaluation unless ``eval_every`` is given."""


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
        eval_every: env steps between evaluations of the current policy on the train split without
            training-only bonuses (``None``: the agent class's ``eval_points`` over the run, none
            for runs under :data:`MIN_EVAL_STEPS`; 0: never). Evaluations happen at the first agent
            report past each multiple and at the end.
        eval_episodes: episodes per evaluation.
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
    eval_every: int | None = None
    eval_episodes: int = DEFAULT_EVAL_EPISODES
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
    eval_every: int  # 0: no evaluation
    eval_episodes: int
    config: dict[str, Any]  # JSON record of everything above, saved in run.json
    run_dir: Path


def resolve(request: TrainRequest) -> ResolvedTraining:
    """Validate names and overrides and compute the run directory; raises MisgenError on bad input."""
    spec = get_env(request.env)
    if not spec.available():
        raise MisgenError(
            f"env {spec.id!r} needs {', '.join(spec.requires)}; install the {spec.backend!r} extra"
        )
    cls = get_agent(request.agent)
    if not cls.trainable and request.steps:
        raise MisgenError(
            f"agent {cls.name!r} is scripted and cannot be trained; use it with `misgen eval`/`probe`"
        )
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
    if request.eval_every is None:
        eval_every = (
            max(1, steps // max(1, cls.eval_points)) if steps >= MIN_EVAL_STEPS and cls.eval_points > 0 else 0
        )
    else:
        eval_every = int(request.eval_every)
    if eval_every < 0:
        raise MisgenError(f"--eval-every must be >= 0 (0: no evaluation), got {eval_every}")
    if request.eval_episodes < 1:
        raise MisgenError(f"--eval-episodes must be >= 1, got {request.eval_episodes}")
    config = {
        "env": spec.id,
        "agent": cls.name,
        "preset": request.preset,
        "agent_config": config_to_dict(agent_config),
        "env_overrides": env_overrides,
        "steps": steps,
        "checkpoint_every": every,
        "eval_every": eval_every,
        "eval_episodes": int(request.eval_episodes),
    }
    hashed = {k: v for k, v in config.items() if k not in NOT_HASHED}
    run_dir = run_dir_for(spec.id, cls.name, request.seed, hashed, request.root or runs_root())
    return ResolvedTraining(
        spec,
        cls,
        agent_config,
        env_overrides,
        steps,
        every,
        eval_every,
        int(request.eval_episodes),
        config,
        run_dir,
    )


# Snapshots and evaluation ------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """An agent's complete state (what a checkpoint holds) at a step, kept in memory."""

    step: int
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    wall_s: float

    @classmethod
    def take(cls, agent: Agent, step: int, wall_s: float) -> Snapshot:
        tensors = {k: v.detach().clone() for k, v in agent.tensors().items()}
        return cls(step, tensors, json.loads(json.dumps(agent.state_json())), wall_s)

    def restore(self, agent: Agent) -> None:
        agent.load_tensors(self.tensors)
        agent.load_state_json(self.state)

    def copy_agent(self, agent: Agent) -> Agent:
        """A separate agent in this snapshot's state (same class, config, spaces and seed)."""
        with isolated_rngs():
            twin = type(agent)(agent.config, agent.observation_space, agent.action_space, agent.seed)
        self.restore(twin)
        return twin


@contextlib.contextmanager
def isolated_rngs() -> Iterator[None]:
    """Run the block, then put torch's, NumPy's and Python's global RNGs back as they were.

    SB3 samples rollouts and shuffles minibatches from the global RNGs; whatever the block draws
    (building a network, an evaluation) must not shift them, or evaluation would change training.
    """
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def evaluate_policy(
    agent: Agent, spec: EnvSpec, overrides: Mapping[str, Any], episodes: int, seed: int
) -> dict[str, float]:
    """``eval/*`` metrics of ``agent`` on the train split, on the env's own reward.

    Training-only bonuses (exploration novelty) live inside the agents' ``learn``, so acting
    through ``agent.act`` in a plain env measures the task itself.
    """
    from misgen.probes.rollout import collect

    with isolated_rngs():
        rollouts = collect(agent, spec, "train", episodes, seed, overrides=overrides)
    return {
        "eval/success": float(rollouts.reached(rollouts.intended).mean()),
        "eval/return": float(np.mean(rollouts.intended_return)),
        "eval/length": float(np.mean(rollouts.length)),
    }


# Progress ---------------------------------------------------------------------------------------
class ProgressSink(Protocol):
    def update(self, step: int, status: str) -> None: ...


class LineProgress:
    """Plain progress for logs and pipes: one line per report with rate and ETA, no redraws."""

    def __init__(self, console: Console, description: str, total: int, start: int) -> None:
        self.console, self.description, self.total, self.start = console, description, total, start
        self.started = time.monotonic()

    def update(self, step: int, status: str) -> None:
        elapsed = time.monotonic() - self.started
        rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
        eta = _duration((self.total - step) / rate) if rate > 0 and step < self.total else "-"
        pct = 100.0 * min(step, self.total) / max(self.total, 1)
        self.console.print(
            f"{self.description}: {step:,}/{self.total:,} steps ({pct:.0f}%)  {rate:,.0f} steps/s  ETA {eta}  {status}".rstrip(),
            highlight=False,
            markup=False,
        )


class _RichProgress:
    def __init__(self, progress: Any, task: Any, total: int) -> None:
        self.progress, self.task, self.total = progress, task, total

    def update(self, step: int, status: str) -> None:
        self.progress.update(self.task, completed=min(step, self.total), status=status)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@contextlib.contextmanager
def training_progress(console: Console, description: str, total: int, start: int) -> Iterator[ProgressSink]:
    """A rich bar on a terminal; plain lines, one per report, anywhere else (logs, pipes, CI)."""
    if not console.is_terminal:
        yield LineProgress(console, description, total, start)
        return
    with make_progress("steps", console) as progress:
        yield _RichProgress(
            progress, progress.add_task(description, total=total, completed=start, status=""), total
        )


# The context an agent trains in ----------------------------------------------------------------
class RunContext:
    """The :class:`~misgen.agents.base.TrainContext` backed by a run directory.

    Every ``report`` is a consistent point: it snapshots the agent (the Ctrl-C rollback target),
    appends the curve (with an evaluation when one is due), updates the progress and checkpoints
    when one is due.
    """

    def __init__(
        self,
        run: Run,
        agent: Agent,
        res: ResolvedTraining,
        start_step: int,
        seed: int,
        progress: ProgressSink,
        wall_offset: float = 0.0,
        eval_seed: int = 0,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.run = run
        self.agent = agent
        self.res = res
        self.total_steps = res.steps
        self.start_step = start_step
        self.seed = seed
        self.every = res.checkpoint_every
        self.progress = progress
        self.on_progress = on_progress
        self.wall_offset = wall_offset
        self.eval_seed = eval_seed
        self.started = time.monotonic()
        self.last_saved = start_step
        self.next_checkpoint = (start_step // self.every + 1) * self.every
        self.next_eval = (start_step // res.eval_every + 1) * res.eval_every if res.eval_every else None
        self.last_eval: int | None = None
        self.snapshot = Snapshot.take(agent, start_step, wall_offset)

    def wall_s(self) -> float:
        """Training wall time of the run so far, summed over resumes."""
        return round(self.wall_offset + time.monotonic() - self.started, 3)

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        step = int(step)
        self.snapshot = Snapshot.take(self.agent, step, self.wall_s())
        record: dict[str, Any] = {"step": step, "wall_s": self.snapshot.wall_s}
        record.update({k: float(v) for k, v in metrics.items()})
        if self.next_eval is not None and (step >= self.next_eval or step >= self.total_steps):
            record.update(self.evaluate(step))  # the end of training is always a point of the curve
            self.next_eval = (step // self.res.eval_every + 1) * self.res.eval_every
        self.run.append_metrics(record)
        self.progress.update(step, _status(record))
        if self.on_progress is not None:
            self.on_progress(step, self.total_steps)
        if step >= self.next_checkpoint and step < self.total_steps:
            self.checkpoint(step)
            self.next_checkpoint = (step // self.every + 1) * self.every

    def evaluate(self, step: int) -> dict[str, float]:
        """Evaluate a copy of the agent at the last snapshot (training's state is untouched)."""
        twin = self.snapshot.copy_agent(self.agent)
        self.last_eval = step
        return evaluate_policy(
            twin, self.res.spec, self.res.env_overrides, self.res.eval_episodes, self.eval_seed
        )

    def final_evaluation(self) -> None:
        """The curve's last point, for an agent whose last report came before its final step."""
        step = self.agent.steps_done
        if self.res.eval_every and self.last_eval != step:
            self.snapshot = Snapshot.take(self.agent, step, self.wall_s())
            self.run.append_metrics({"step": step, "wall_s": self.snapshot.wall_s, **self.evaluate(step)})

    def rollback(self) -> int:
        """Restore the agent to the last consistent snapshot; returns its step."""
        self.snapshot.restore(self.agent)
        return self.snapshot.step

    def checkpoint(self, step: int) -> Path:
        wall = self.snapshot.wall_s if self.snapshot.step == step else self.wall_s()
        path = save_agent(
            self.agent, self.run.checkpoint_dir(step), {"run": self.run.name, "step": step, "wall_s": wall}
        )
        self.last_saved = step
        self.run.update(last_checkpoint=step, wall_s=wall)
        return path


def _status(record: Mapping[str, Any]) -> str:
    """The few numbers worth a glance: success and return, training's and evaluation's."""
    return "  ".join(
        f"{'eval ' if k.startswith('eval/') else ''}{k.split('/')[-1]}={float(v):.3g}"
        for k, v in record.items()
        if ("success" in k or "return" in k) and k != "step"
    )


def _provenance(seed: int) -> dict[str, Any]:
    return {
        "seeds": {
            "root": seed,
            "agent": derive_seed(seed, "agent"),
            "env": derive_seed(seed, "env", "train"),
            "learn": derive_seed(seed, "learn"),
            "eval": derive_seed(seed, "train-curve"),
        },
        "versions": package_versions(),
        "git_commit": git_commit(),
        "machine": machine(),
    }


def _curves(res: ResolvedTraining) -> dict[str, Any]:
    """What run.json says about the curves in metrics.jsonl, so readers pick the right key."""
    return {
        "true_objective": TRUE_OBJECTIVE if res.eval_every else None,
        "eval": {"split": "train", "every": res.eval_every, "episodes": res.eval_episodes, "keys": EVAL_KEYS},
        "note": "charts/* are the agent's own training statistics (during exploration, with any "
        "training-only bonus); eval/* evaluate the current policy on the env's own reward.",
    }


def _wall_at(run: Run, checkpoint: Path) -> float:
    """Training wall time when ``checkpoint`` was saved (older runs: the curve's last wall_s)."""
    meta = read_agent_json(checkpoint)
    if "wall_s" in meta:
        return float(meta["wall_s"])
    curve = run.metrics()
    return float(curve[-1].get("wall_s", 0.0)) if curve else 0.0


def train(
    request: TrainRequest,
    console: Console | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Run:
    """Create (or resume) the run for ``request`` and train it to completion.

    ``on_progress(step, total)`` is called after every agent report (e.g. a sweep's live view).
    Raises ``KeyboardInterrupt`` after saving a consistent checkpoint when interrupted.
    """
    from misgen.progress import console as default_console

    console = console or default_console
    res = resolve(request)
    agent: Agent
    wall_offset = 0.0
    if (res.run_dir / "run.json").exists():
        if not request.resume:
            raise MisgenError(
                f"run {res.run_dir} already exists; pass --resume to continue it, or use a new --seed"
            )
        run = Run.open(res.run_dir)
        old = {k: v for k, v in run.config.items() if k not in NOT_HASHED}
        new = {k: v for k, v in res.config.items() if k not in NOT_HASHED}
        if config_hash(old) != config_hash(new):
            raise MisgenError(f"run {res.run_dir} was made with a different config; refusing to resume it")
        run.update(config=res.config, status="running", curves=_curves(res))
        latest = run.latest_checkpoint()
        if latest is None:
            agent = _new_agent(res, request.seed)
        else:
            agent = load_agent(latest[1])
            if agent.name != res.agent_cls.name:
                raise MisgenError(
                    f"checkpoint {latest[1]} holds agent {agent.name!r}, run expects {res.agent_cls.name!r}"
                )
            run.truncate_metrics(latest[0])
            wall_offset = _wall_at(run, latest[1])
        start = agent.steps_done
        console.print(f"resuming [bold]{run.name}[/] from step {start:,}")
    else:
        run = Run.create(
            res.run_dir,
            {
                **_identity(res, request.seed),
                "status": "running",
                "curves": _curves(res),
                **_provenance(request.seed),
            },
        )
        agent = _new_agent(res, request.seed)
        start = 0
        console.print(f"new run [bold]{run.path}[/]")
    if not res.agent_cls.trainable or start >= res.steps:
        if not run.checkpoints():
            save_agent(
                agent, run.checkpoint_dir(start), {"run": run.name, "step": start, "wall_s": wall_offset}
            )
        run.update(status="complete", steps_done=start)
        console.print(f"nothing to train: {start:,} of {res.steps:,} steps done")
        return run
    env = res.spec.make(
        "train", agent.num_envs(), derive_seed(request.seed, "env", "train", start), res.env_overrides
    )
    learn_seed = derive_seed(request.seed, "learn", start)
    with training_progress(console, f"{res.agent_cls.name} on {res.spec.id}", res.steps, start) as progress:
        ctx = RunContext(
            run,
            agent,
            res,
            start,
            learn_seed,
            progress,
            wall_offset,
            derive_seed(request.seed, "train-curve"),
            on_progress,
        )
        try:
            agent.learn(env, ctx)
            ctx.final_evaluation()
        except KeyboardInterrupt:
            step = ctx.rollback()
            if step > ctx.last_saved or not run.checkpoints():
                ctx.checkpoint(step)
            run.update(status="interrupted", steps_done=step)
            console.print(
                f"[yellow]interrupted; rolled back to step {step:,} (the last consistent state) and saved it. "
                f"Continue with the same command plus --resume[/]"
            )
            raise
        except MisgenError:
            run.update(status="failed")
            raise
        except Exception as err:
            run.update(status="failed", error=f"{type(err).__name__}: {err}")
            raise
        finally:
            env.close()
    ctx.snapshot = Snapshot.take(agent, agent.steps_done, ctx.wall_s())
    ctx.checkpoint(agent.steps_done)
    run.update(status="complete", steps_done=agent.steps_done, train_wall_s=ctx.snapshot.wall_s)
    return run


def _identity(res: ResolvedTraining, seed: int) -> dict[str, Any]:
    return {
        "env": res.spec.id,
        "agent": res.agent_cls.name,
        "kind": res.agent_cls.kind,
        "seed": seed,
        "config": res.config,
        "env_difficulty": res.spec.difficulty_config("train", res.env_overrides),
    }


def _new_agent(res: ResolvedTraining, seed: int) -> Agent:
    env = res.spec.make("train", 1, 0, res.env_overrides)
    try:
        return res.agent_cls(
            res.agent_config,
            env.single_observation_space,
            env.single_action_space,
            derive_seed(seed, "agent"),
        )
    finally:
        env.close()
