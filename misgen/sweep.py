"""Sweeps: the grid of (env, agent, seed) runs, each a normal run in the run store, then probes.

A job trains with ``resume=True`` (so a finished run is skipped, an interrupted one continues from its
last checkpoint, and no run is ever duplicated: the run directory is a function of env, agent, seed
and config), then probes every checkpoint that has no probe results yet. Jobs run in a local process
pool sized to the cores, or as Ray tasks with per-task CPU requests on an existing cluster. A failing
job is reported with its error and does not stop the others. A rich live table shows the jobs.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.live import Live
from rich.table import Table

from misgen.errors import MisgenError

Backend = Literal["local", "ray"]


@dataclass(frozen=True)
class Job:
    """One cell of the sweep grid.

    Attributes:
        env: env registry name.
        agent: agent registry name.
        seed: the run's root seed.
        steps: training budget (``None``: the agent's default).
        preset: agent preset (``None``: defaults).
        overrides: ``--set`` pairs.
        episodes: probe episodes per split.
        checkpoints: which checkpoints to probe: ``all`` or ``latest``.
        root: runs root.
        threads: torch threads inside the job.
        checkpoint_every: env steps between checkpoints (``None``: the harness default).
    """

    env: str
    agent: str
    seed: int
    steps: int | None = None
    preset: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    episodes: int = 200
    checkpoints: str = "all"
    root: str | None = None
    threads: int = 1
    checkpoint_every: int | None = None

    @property
    def label(self) -> str:
        return f"{self.env} / {self.agent} / seed {self.seed}"


@dataclass
class JobResult:
    job: Job
    status: Literal["done", "failed"]
    run_path: str | None
    wall_s: float
    error: str | None = None
    probed_steps: list[int] = field(default_factory=list)


def run_job(job: Job) -> JobResult:
    """Train (or resume / skip) and probe one job. Never raises: errors become a failed result."""
    start = time.monotonic()
    run_path = None
    try:
        import torch

        torch.set_num_threads(max(1, job.threads))
        from misgen.train import TrainRequest, train

        quiet = Console(file=open(os.devnull, "w"), width=120)  # noqa: SIM115 - lives for the job
        request = TrainRequest(
            env=job.env,
            agent=job.agent,
            seed=job.seed,
            steps=job.steps,
            preset=job.preset,
            overrides=dict(job.overrides),
            checkpoint_every=job.checkpoint_every,
            resume=True,
            root=Path(job.root) if job.root else None,
        )
        run = train(request, quiet)
        run_path = str(run.path)
        probed = probe_pending(run, job.checkpoints, job.episodes, quiet)
        return JobResult(job, "done", run_path, time.monotonic() - start, probed_steps=probed)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - a job's failure must not stop the sweep
        detail = traceback.format_exc(limit=-3)
        message = f"{type(err).__name__}: {err}".strip()
        return JobResult(job, "failed", run_path, time.monotonic() - start, error=message + "\n" + detail)


def probe_pending(run: Any, which: str, episodes: int, console: Console) -> list[int]:
    """Probe the run's checkpoints that have no results for ``episodes`` episodes yet."""
    from misgen.probing import run_battery

    done = run.probe_results()
    probed = []
    for step, path in run.resolve_checkpoint(which):
        previous = done.get(step)
        if previous is not None and int(previous.get("episodes", -1)) == episodes:
            continue
        run_battery(run, (step, path), episodes=episodes, console=console)
        probed.append(step)
    return probed


def expand_grid(
    envs: Sequence[str], agents: Sequence[str], seeds: Sequence[int], **common: Any
) -> list[Job]:
    """Every (env, agent, seed) combination, validated up front so a typo fails before any work."""
    from misgen.agents import get_agent
    from misgen.environments import get_env

    for env in envs:
        get_env(env)
    for agent in agents:
        get_agent(agent)
    if not seeds:
        raise MisgenError("a sweep needs at least one seed")
    return [Job(env=e, agent=a, seed=s, **common) for e in envs for a in agents for s in seeds]


class JobBoard:
    """The live table of jobs: queued / running / done / failed, with elapsed time and an ETA.

    Jobs are tracked by their position in the grid (a Job holds a dict and is not hashable).
    """

    def __init__(self, jobs: Sequence[Job], workers: int) -> None:
        self.jobs = list(jobs)
        self.workers = workers
        self.state = ["queued"] * len(self.jobs)
        self.started: dict[int, float] = {}
        self.results: dict[int, JobResult] = {}
        self.t0 = time.monotonic()

    def start(self, i: int, state: str = "running") -> None:
        self.state[i] = state
        self.started[i] = time.monotonic()

    def finish(self, i: int, result: JobResult) -> None:
        self.state[i] = result.status
        self.results[i] = result

    def eta(self) -> str:
        finished = [r.wall_s for r in self.results.values()]
        left = sum(1 for s in self.state if s in ("queued", "submitted", "running"))
        if not finished or not left:
            return "-" if left else "0s"
        seconds = sum(finished) / len(finished) * left / max(1, self.workers)
        return f"{seconds / 60:.1f} min" if seconds > 90 else f"{seconds:.0f}s"

    def table(self) -> Table:
        counts = {s: self.state.count(s) for s in ("queued", "submitted", "running", "done", "failed")}
        counts = {k: v for k, v in counts.items() if v or k != "submitted"}
        title = "  ".join(f"{k} {v}" for k, v in counts.items()) + f"   elapsed {time.monotonic() - self.t0:.0f}s   ETA {self.eta()}"
        table = Table(title=f"sweep: {title}")
        for col in ("job", "state", "time", "run / error"):
            table.add_column(col)
        colours = {"queued": "dim", "submitted": "cyan", "running": "yellow", "done": "green", "failed": "red"}
        for i, job in enumerate(self.jobs):
            result = self.results.get(i)
            if result is not None:
                elapsed = f"{result.wall_s:.0f}s"
                where = (result.run_path or "") if result.status == "done" else (result.error or "").splitlines()[0]
            else:
                elapsed = f"{time.monotonic() - self.started[i]:.0f}s" if i in self.started else ""
                where = ""
            table.add_row(job.label, f"[{colours[self.state[i]]}]{self.state[i]}[/]", elapsed, where)
        return table


def run_sweep(
    jobs: Sequence[Job],
    backend: Backend = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    console: Console | None = None,
) -> list[JobResult]:
    """Run ``jobs`` on ``backend`` with a live table; returns one result per job."""
    console = console or Console()
    workers = workers or max(1, (os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [Job(**{**asdict(j), "threads": threads}) for j in jobs]
    board = JobBoard(jobs, workers)
    runner: Callable[[Sequence[Job], JobBoard, Live], None]
    if backend == "local":
        runner = lambda js, b, live: _run_local(js, b, live, workers)  # noqa: E731
    elif backend == "ray":
        runner = lambda js, b, live: _run_ray(js, b, live, threads, ray_address)  # noqa: E731
    else:
        raise MisgenError(f"unknown backend {backend!r}; valid choices: local, ray")
    with Live(board.table(), console=console, refresh_per_second=2, transient=False) as live:
        runner(jobs, board, live)
        live.update(board.table())
    return [board.results[i] for i in range(len(jobs))]


def _run_local(jobs: Sequence[Job], board: JobBoard, live: Live, workers: int) -> None:
    import multiprocessing

    if workers == 1:
        for i, job in enumerate(jobs):
            board.start(i)
            live.update(board.table())
            board.finish(i, run_job(job))
            live.update(board.table())
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: dict[Future[JobResult], int] = {}
        queue = list(range(len(jobs)))
        while queue or pending:
            while queue and len(pending) < workers:
                i = queue.pop(0)
                board.start(i)
                pending[pool.submit(run_job, jobs[i])] = i
            live.update(board.table())
            finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                try:
                    board.finish(i, future.result())
                except Exception as err:  # noqa: BLE001 - e.g. a worker killed by the OS
                    board.finish(i, JobResult(jobs[i], "failed", None, 0.0, error=f"{type(err).__name__}: {err}"))
            live.update(board.table())


def _run_ray(jobs: Sequence[Job], board: JobBoard, live: Live, cpus: int, address: str | None) -> None:
    try:
        import ray
    except ImportError:
        raise MisgenError("the ray backend needs Ray: pip install 'misgen[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        remote = ray.remote(num_cpus=cpus)(run_job)
        refs = {}
        for i, job in enumerate(jobs):  # Ray queues tasks by their CPU request; "submitted" until done
            refs[remote.remote(job)] = i
            board.start(i, "submitted")
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in done:
                i = refs[ref]
                try:
                    board.finish(i, ray.get(ref))
                except Exception as err:  # noqa: BLE001
                    board.finish(i, JobResult(jobs[i], "failed", None, 0.0, error=f"{type(err).__name__}: {err}"))
            live.update(board.table())
    finally:
        if started_here:
            ray.shutdown()
