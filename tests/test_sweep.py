"""Sweeps and studies: a tiny grid on the local backend and on a local Ray instance, idempotent
re-runs, resume after interruption, and a failing job that does not stop the others."""

from __future__ import annotations

import pytest
from rich.console import Console

from misgen.errors import MisgenError
from misgen.runstore import find_runs, runs_root
from misgen.sweep import Job, expand_grid, run_job, run_sweep

QUIET = Console(quiet=True)


def _grid(**kw):
    return expand_grid(
        ["maze-cheese"], ["oracle-intended", "oracle-proxy"], [0], episodes=20, root=str(runs_root()), **kw
    )


def test_local_sweep_runs_probes_and_is_idempotent():
    results = run_sweep(_grid(), backend="local", workers=1, console=QUIET)
    assert [r.status for r in results] == ["done", "done"], [r.error for r in results]
    assert all(r.probed_steps == [0] for r in results)
    runs = list(find_runs([runs_root()]))
    assert len(runs) == 2 and all(0 in run.probe_results() for run in runs)
    again = run_sweep(_grid(), backend="local", workers=1, console=QUIET)
    assert [r.status for r in again] == ["done", "done"]
    assert all(r.probed_steps == [] for r in again), "finished runs are skipped, not re-probed"
    assert len(list(find_runs([runs_root()]))) == 2, "no duplicate runs"


def test_failing_job_is_reported_and_others_finish():
    jobs = [
        Job("maze-cheese", "oracle-intended", 0, episodes=20, root=str(runs_root())),
        Job(
            "maze-cheese", "oracle-proxy", 0, episodes=20, root=str(runs_root()), overrides={"env.size": "12"}
        ),
    ]
    results = run_sweep(jobs, backend="local", workers=2, console=QUIET)
    assert results[0].status == "done"
    assert results[1].status == "failed" and "odd" in results[1].error


def test_interrupted_run_is_resumed_by_the_sweep():
    pytest.importorskip("misgen.agents.ppo")
    job = Job(
        "maze-cheese",
        "ppo",
        0,
        steps=2048,
        preset="debug",
        episodes=10,
        root=str(runs_root()),
        checkpoint_every=1024,
        overrides={},
    )
    from misgen.train import TrainRequest, train

    # A run interrupted after its first checkpoint, as Ctrl-C would leave it.
    first = train(
        TrainRequest(
            "maze-cheese", "ppo", 0, steps=1024, preset="debug", checkpoint_every=1024, root=runs_root()
        ),
        QUIET,
    )
    first.update(status="interrupted")
    result = run_job(job)
    assert result.status == "done", result.error
    runs = list(find_runs([runs_root()]))
    assert len(runs) == 1 and runs[0].path == first.path
    assert [s for s, _ in runs[0].checkpoints()][-1] >= 2048
    assert runs[0].status == "complete"


def test_bad_grid_fails_before_any_work():
    with pytest.raises(MisgenError, match="unknown agent"):
        expand_grid(["maze-cheese"], ["nope"], [0])
    with pytest.raises(MisgenError, match="unknown backend"):
        run_sweep(_grid(), backend="slurm", console=QUIET)


def test_ray_backend_runs_the_same_jobs():
    pytest.importorskip("ray")
    results = run_sweep(_grid(), backend="ray", workers=2, console=QUIET)
    assert [r.status for r in results] == ["done", "done"], [r.error for r in results]
    assert len(list(find_runs([runs_root()]))) == 2
