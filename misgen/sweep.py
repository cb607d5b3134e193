"""Sweeps: the grid of (env, agent, seed) runs, each a normal run in the run store, then probes.

A job trains with ``resume=True`` (so a finished run is skipped, an interrupted one continues from its
last checkpoint, and no run is ever duplicated: the run directory is a function of env, agent, seed
and config), then probes every checkpoint that has no probe results yet. Jobs run in a local process
pool sized to the cores, or as Ray tasks with per-task CPU requests on an existing cluster. A failing
job is reported with its error and does not stop the others. On a terminal a live table shows the jobs
with one progress bar per running job and an overall ETA; elsewhere progress is printed as plain lines.
"""

from __future__ import annotations

import json
import os
import threading
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
        env_sets = ", ".join(
            f"{k.removeprefix('env.')}={v}" for k, v in sorted(self.overrides.items()) if k.startswith("env.")
        )
        return f"{self.env} / {self.agent} / seed {self.seed}" + (f" / {env_sets}" if env_sets else "")

    def train_request(self) -> Any:
        """The harness's :class:`~misgen.train.TrainRequest` for this job (resuming a started run)."""
        from misgen.train import TrainRequest

        return TrainRequest(
            env=self.env,
            agent=self.agent,
            seed=self.seed,
            steps=self.steps,
            preset=self.preset,
            overrides=dict(self.overrides),
            checkpoint_every=self.checkpoint_every,
            resume=True,
            root=Path(self.root) if self.root else None,
        )


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
        from misgen.train import train

        quiet = Console(file=open(os.devnull, "w"), width=120)  # noqa: SIM115 - lives for the job
        request = job.train_request()
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


def expand_grid(envs: Sequence[str], agents: Sequence[str], seeds: Sequence[int], **common: Any) -> list[Job]:
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


def _last_step(path: Path) -> int | None:
    """The ``step`` of the last complete line of a run's metrics.jsonl (read from its tail only)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


@dataclass
class JobProgress:
    """Training progress of one job, read from its run's metrics.jsonl (works for any backend that
    shares the runs folder): steps, a step rate over this session, and when training ended."""

    metrics: Path | None
    total: int
    first_step: int | None = None
    first_seen: float | None = None
    step: int = 0
    rate: float | None = None
    trained_at: float | None = None

    def poll(self, now: float) -> None:
        if self.metrics is None:
            return
        step = _last_step(self.metrics)
        if step is None:
            return
        if self.first_step is None:
            self.first_step, self.first_seen = step, now
        self.step = min(step, self.total) if self.total else step
        if self.first_seen is not None and now > self.first_seen and step > (self.first_step or 0):
            self.rate = (step - (self.first_step or 0)) / (now - self.first_seen)
        if self.total and self.step >= self.total and self.trained_at is None:
            self.trained_at = now


def _job_progress(job: Job) -> JobProgress:
    """Where the job's run will log its steps (``metrics=None`` when that cannot be known here)."""
    try:
        from misgen.train import resolve

        resolved = resolve(job.train_request())
        return JobProgress(resolved.run_dir / "metrics.jsonl", int(resolved.steps))
    except Exception:  # noqa: BLE001 - a job that cannot resolve fails in its worker, with its error
        return JobProgress(None, 0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "measuring"
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds > 90 else f"{seconds:.0f}s"


class JobBoard:
    """The state of a sweep: queued / running / done / failed per job, training progress per job and
    an overall ETA from the jobs' step rates.

    Jobs are tracked by their position in the grid (a Job holds a dict and is not hashable).
    """

    def __init__(self, jobs: Sequence[Job], workers: int) -> None:
        self.jobs = list(jobs)
        self.workers = workers
        self.state = ["queued"] * len(self.jobs)
        self.started: dict[int, float] = {}
        self.results: dict[int, JobResult] = {}
        self.t0 = time.monotonic()
        self.progress = [_job_progress(j) for j in self.jobs]

    def start(self, i: int, state: str = "running") -> None:
        self.state[i] = state
        self.started[i] = time.monotonic()

    def finish(self, i: int, result: JobResult) -> None:
        self.state[i] = result.status
        self.results[i] = result
        self.progress[i].poll(time.monotonic())

    def poll(self) -> None:
        now = time.monotonic()
        for i, state in enumerate(self.state):
            if state in ("running", "submitted"):
                self.progress[i].poll(now)

    def _rate(self, i: int) -> float | None:
        """This job's step rate, else the mean rate of running or finished jobs of the same agent
        class. ``None`` when no job of that class has a rate yet: classes differ by 10x and more
        (PPO against Dreamer or the planner), so another class's rate would be a guess."""
        own = self.progress[i].rate
        if own:
            return own
        same = [
            p.rate for j, p in enumerate(self.progress) if p.rate and self.jobs[j].agent == self.jobs[i].agent
        ]
        return sum(same) / len(same) if same else None

    def unmeasured_agents(self) -> list[str]:
        """Agent classes with unfinished jobs and no measured step rate yet (the ETA leaves them out)."""
        left = [i for i, s in enumerate(self.state) if s in ("queued", "submitted", "running")]
        missing = {
            self.jobs[i].agent
            for i in left
            if self.progress[i].total > self.progress[i].step and self._rate(i) is None
        }
        return sorted(missing)

    def eta_seconds(self) -> float | None:
        """Seconds until every job with a known rate is done: each unfinished job's steps left at
        its rate, plus the probing time finished jobs needed after training, spread over the
        workers. Jobs of classes with no rate yet are left out (see :meth:`eta`); ``None`` when no
        unfinished job has a rate."""
        left = [i for i, s in enumerate(self.state) if s in ("queued", "submitted", "running")]
        if not left:
            return 0.0
        after = [
            r.wall_s - (self.progress[i].trained_at - self.started[i])
            for i, r in self.results.items()
            if r.status == "done" and self.progress[i].trained_at is not None and i in self.started
        ]
        overhead = sum(after) / len(after) if after else 0.0
        total, timed, untimed = 0.0, 0, 0
        for i in left:
            p = self.progress[i]
            remaining = max(0, p.total - p.step)
            if remaining == 0:
                total += overhead
                continue
            rate = self._rate(i)
            if rate is None:
                untimed += 1
            else:
                total, timed = total + remaining / rate + overhead, timed + 1
        if untimed and not timed:
            return None
        return total / max(1, min(self.workers, len(left)))

    def eta(self) -> str:
        """The overall ETA; a lower bound (``>= ...``, naming the classes) while some queued class
        has no measured rate."""
        seconds = self.eta_seconds()
        if seconds is None:
            return "measuring"
        missing = self.unmeasured_agents()
        if missing:
            return f">= {_duration(seconds)} (+ {', '.join(missing)}: rate not measured yet)"
        return _duration(seconds)

    def summary(self) -> str:
        counts = {s: self.state.count(s) for s in ("queued", "submitted", "running", "done", "failed")}
        counts = {k: v for k, v in counts.items() if v or k != "submitted"}
        return (
            "  ".join(f"{k} {v}" for k, v in counts.items())
            + f"   elapsed {_duration(time.monotonic() - self.t0)}   overall ETA {self.eta()}"
        )

    def job_line(self, i: int) -> str:
        """One plain line for job ``i`` (non-terminal output)."""
        p, job = self.progress[i], self.jobs[i]
        state = self.state[i]
        if state in ("done", "failed"):
            result = self.results[i]
            where = result.run_path if state == "done" else (result.error or "").splitlines()[0]
            return f"{job.label}: {state} in {_duration(result.wall_s)} {where or ''}".rstrip()
        if state == "running" and p.total:
            rate = f"{p.rate:,.0f} steps/s" if p.rate else "? steps/s"
            eta = _duration((p.total - p.step) / p.rate) if p.rate else "measuring"
            return f"{job.label}: {p.step:,}/{p.total:,} steps, {rate}, ETA {eta}"
        return f"{job.label}: {state}"

    def table(self) -> Table:
        table = Table(title=f"sweep: {self.summary()}")
        for col in ("job", "state", "time", "run / error"):
            table.add_column(col)
        colours = {
            "queued": "dim",
            "submitted": "cyan",
            "running": "yellow",
            "done": "green",
            "failed": "red",
        }
        for i, job in enumerate(self.jobs):
            result = self.results.get(i)
            if result is not None:
                elapsed = f"{result.wall_s:.0f}s"
                where = (
                    (result.run_path or "")
                    if result.status == "done"
                    else (result.error or "").splitlines()[0]
                )
            else:
                elapsed = f"{time.monotonic() - self.started[i]:.0f}s" if i in self.started else ""
                where = ""
            table.add_row(job.label, f"[{colours[self.state[i]]}]{self.state[i]}[/]", elapsed, where)
        return table


class LiveDisplay:
    """On a terminal: the table of jobs, then one rich bar per running job (steps, steps/s, ETA).

    Rendering polls the runs' metrics from rich's refresh thread, so the bars move even while a job
    runs in this process (``workers=1``).
    """

    def __init__(self, board: JobBoard, console: Console) -> None:
        from misgen.progress import make_progress

        self.board = board
        self.bars = make_progress("steps", console)
        self.tasks: dict[int, Any] = {}
        self.lock = threading.Lock()
        self.live = Live(console=console, refresh_per_second=2, transient=False, get_renderable=self.render)

    def render(self) -> Any:
        from rich.console import Group

        with self.lock:
            self.board.poll()
            for i, state in enumerate(self.board.state):
                p = self.board.progress[i]
                active = state == "running" or (state == "submitted" and p.first_step is not None)
                if active and i not in self.tasks and p.total:
                    self.tasks[i] = self.bars.add_task(
                        self.board.jobs[i].label, total=p.total, completed=p.step, status=""
                    )
                if i in self.tasks:
                    if state in ("done", "failed"):
                        self.bars.remove_task(self.tasks.pop(i))
                    else:
                        self.bars.update(
                            self.tasks[i], completed=p.step, status="probing" if p.trained_at else ""
                        )
            return Group(self.board.table(), self.bars.get_renderable())

    def update(self) -> None:
        self.live.refresh()

    def __enter__(self) -> LiveDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)


class LineDisplay:
    """Not on a terminal (a pipe, a log file): plain lines, one per state change and, per running
    job, one at most every ``every`` seconds (a background thread keeps them coming while a job
    runs in this process)."""

    def __init__(self, board: JobBoard, console: Console, every: float = 30.0) -> None:
        self.board, self.console, self.every = board, console, every
        self.seen = ["queued"] * len(board.jobs)
        self.last: dict[int, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        while not self.stop.wait(min(5.0, self.every)):
            self.update()

    def update(self) -> None:
        with self.lock:
            self.board.poll()
            now = time.monotonic()
            for i, state in enumerate(self.board.state):
                changed = state != self.seen[i]
                due = state == "running" and now - self.last.get(i, now) >= self.every
                if changed or due:
                    self.seen[i] = state
                    self.last[i] = now
                    self.console.print(
                        f"{time.strftime('%H:%M:%S')} {self.board.job_line(i)}   [{self.board.summary()}]",
                        highlight=False,
                        markup=False,
                        soft_wrap=True,
                    )

    def __enter__(self) -> LineDisplay:
        self.console.print(
            f"{time.strftime('%H:%M:%S')} sweep of {len(self.board.jobs)} jobs on {self.board.workers} worker(s)",
            highlight=False,
        )
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.update()


Display = LiveDisplay | LineDisplay


def run_sweep(
    jobs: Sequence[Job],
    backend: Backend = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    console: Console | None = None,
) -> list[JobResult]:
    """Run ``jobs`` on ``backend`` with live progress; returns one result per job."""
    console = console or Console()
    workers = workers or max(1, (os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [Job(**{**asdict(j), "threads": threads}) for j in jobs]
    runner: Callable[[Sequence[Job], JobBoard, Display], None]
    if backend == "local":
        runner = lambda js, b, d: _run_local(js, b, d, workers)  # noqa: E731
    elif backend == "ray":
        runner = lambda js, b, d: _run_ray(js, b, d, threads, ray_address)  # noqa: E731
    else:
        raise MisgenError(f"unknown backend {backend!r}; valid choices: local, ray")
    board = JobBoard(jobs, workers)
    display: Display = LiveDisplay(board, console) if console.is_terminal else LineDisplay(board, console)
    with display:
        runner(jobs, board, display)
    return [board.results[i] for i in range(len(jobs))]


def _run_local(jobs: Sequence[Job], board: JobBoard, display: Display, workers: int) -> None:
    import multiprocessing

    if workers == 1:
        for i, job in enumerate(jobs):
            board.start(i)
            display.update()
            board.finish(i, run_job(job))
            display.update()
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: dict[Future[JobResult], int] = {}
        queue = list(range(len(jobs)))
        while queue or pending:
            while queue and len(pending) < workers:
                i = queue.pop(0)
                board.start(i)
                pending[pool.submit(run_job, jobs[i])] = i
            display.update()
            finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                try:
                    board.finish(i, future.result())
                except Exception as err:  # noqa: BLE001 - e.g. a worker killed by the OS
                    board.finish(
                        i, JobResult(jobs[i], "failed", None, 0.0, error=f"{type(err).__name__}: {err}")
                    )
            display.update()


def _run_ray(jobs: Sequence[Job], board: JobBoard, display: Display, cpus: int, address: str | None) -> None:
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
                    board.finish(
                        i, JobResult(jobs[i], "failed", None, 0.0, error=f"{type(err).__name__}: {err}")
                    )
            display.update()
    finally:
        if started_here:
            ray.shutdown()
