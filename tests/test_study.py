"""Studies: the knob study (disambiguation curve) runs end to end on debug presets, knob parsing
rejects bad input in one line, and the sweep's progress is plain lines off a terminal."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from misgen.errors import MisgenError
from misgen.runstore import find_runs, runs_root
from misgen.study import AgentBudget, Knob, StudyBudget, parse_knob, study_jobs
from misgen.sweep import Job, JobBoard, JobResult, _job_progress, run_sweep

QUIET = Console(quiet=True)
CLASSES = ("ppo", "dreamer", "planner")
# Debug presets on a small maze with short episodes keep the end-to-end knob study to seconds.
SMALL = (("env.size", "9"), ("env.max_steps", "40"))
TINY = StudyBudget(
    agents={
        **{a: AgentBudget(steps=256, preset="debug", overrides=SMALL) for a in CLASSES},
        **{a: AgentBudget(steps=0, overrides=SMALL) for a in ("oracle-intended", "oracle-proxy")},
    },
    episodes=10,
    checkpoints=1,
)


def test_knob_parsing_is_typed_and_checked():
    knob = parse_knob("maze-cheese", "env.cheese_random_fraction=0, 0.01,0.3")
    assert knob.field == "cheese_random_fraction" and knob.values == (0.0, 0.01, 0.3)
    for bad, words in [
        ("nope=1", "unknown --knob field 'nope'"),
        ("cheese_random_fraction", "expected FIELD=v1,v2"),
        ("cheese_random_fraction=1.5", "must be in [0, 1]"),
        ("cheese_random_fraction=0,0", "repeated"),
    ]:
        with pytest.raises(MisgenError, match=words.replace("[", r"\[").replace("]", r"\]")):
            parse_knob("maze-cheese", bad)


def test_knob_jobs_cover_every_class_value_and_seed():
    knob = parse_knob("coinrun-shift", "coin_random_fraction=0,0.1")
    plain = StudyBudget(
        agents={a: AgentBudget(steps=256, preset="debug") for a in CLASSES}, episodes=10, checkpoints=1
    )
    jobs = study_jobs("coinrun-shift", list(CLASSES), 2, plain, None, knob)
    trained = [j for j in jobs if j.agent in CLASSES]
    assert len(trained) == len(CLASSES) * 2 * 2
    # The default value adds no override, so that run is the plain study's run (reused, not retrained).
    assert sum(1 for j in trained if not j.overrides) == len(CLASSES) * 2
    assert sum(1 for j in trained if j.overrides == {"env.coin_random_fraction": "0.1"}) == len(CLASSES) * 2
    assert [j.agent for j in jobs if j.agent not in CLASSES] == ["oracle-intended", "oracle-proxy"], (
        "references run once"
    )


def test_full_budget_runs_the_curve_on_maze_cheese_and_coinrun_shift():
    from misgen.study import BUDGETS, CURVE_VALUES, default_knob

    assert default_knob("maze-cheese", BUDGETS["full"]) == Knob("cheese_random_fraction", CURVE_VALUES)
    assert default_knob("coinrun-shift", BUDGETS["full"]) == Knob("coin_random_fraction", CURVE_VALUES)
    assert default_knob("maze-cheese", BUDGETS["quick"]) is None
    assert default_knob("keys-chests", BUDGETS["full"]) is None


def test_knob_study_runs_end_to_end_and_draws_one_line_per_class(tmp_path, monkeypatch):
    """``misgen study --knob`` through the real CLI, with the quick budget swapped for TINY."""
    from typer.testing import CliRunner

    from misgen.cli import app

    monkeypatch.setattr("misgen.study.BUDGETS", {"quick": TINY})
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "study",
            "--env",
            "maze-cheese",
            "--knob",
            "cheese_random_fraction=0,0.5",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "disambiguation curve over cheese_random_fraction = 0, 0.5: 8 jobs" in result.output
    runs = list(find_runs([runs_root()]))
    assert len(runs) == len(CLASSES) * 2 + 2
    assert {r.config.get("env_overrides", {}).get("cheese_random_fraction") for r in runs} == {None, 0.5}
    assert all(r.config["env_overrides"]["size"] == 9 for r in runs)
    jobs = study_jobs(
        "maze-cheese",
        list(CLASSES),
        1,
        TINY,
        runs_root(),
        parse_knob("maze-cheese", "cheese_random_fraction=0,0.5"),
    )
    again = run_sweep(jobs, backend="local", workers=1, console=QUIET)
    assert all(r.status == "done" and r.probed_steps == [] for r in again), (
        "resumable: finished runs are skipped"
    )

    figures = out / "figures"
    assert (figures / "maze-cheese-curve-proxy-first.png").is_file() and (
        figures / "maze-cheese-curve-shift-success.png"
    ).is_file()
    from misgen.report.curve import series
    from misgen.report.data import aggregate, load_records
    from misgen.report.headline import summaries

    cells = aggregate(load_records([runs_root()]))
    lines = series(cells, summaries(cells), ("intended-success", "test-shift"))
    trained = {s["agent"]: s["x"] for s in lines if s["kind"] != "scripted"}
    assert trained == {a: [0.0, 0.5] for a in CLASSES}, "one line per class over both knob values"
    md = (out / "report.md").read_text()
    assert (
        "| class @ cheese_random_fraction |" in md
        and "| ppo @ 0.0 (not competent) ⚑ |" in md
        and "ppo @ 0.5" in md
    )
    assert "Disambiguation curve over cheese_random_fraction" in md


def _board(tmp_path, steps: list[int]) -> JobBoard:
    jobs = [
        Job("maze-cheese", "ppo", s, steps=1000, preset="debug", root=str(tmp_path))
        for s in range(len(steps))
    ]
    board = JobBoard(jobs, workers=1)
    for p in board.progress:
        assert p.metrics is not None and p.total == 1000
        p.metrics.parent.mkdir(parents=True, exist_ok=True)
        p.metrics.write_text(json.dumps({"step": 0}) + "\n")
    return board


def _start_job_0_then_report_400_steps_after_10_s(board: JobBoard, monkeypatch, why: str) -> None:
    """Start job 0 at t=100 s (the ETA must say "measuring": no rate yet), then let it report
    step 400 at t=110 s (a rate of 40 steps/s)."""
    clock = [100.0]
    monkeypatch.setattr("misgen.sweep.time.monotonic", lambda: clock[0])
    board.start(0)
    board.poll()
    assert board.eta() == "measuring", why
    clock[0] = 110.0
    board.progress[0].metrics.write_text(json.dumps({"step": 0}) + "\n" + json.dumps({"step": 400}) + "\n")
    board.poll()


def test_board_reads_steps_and_estimates_eta_from_step_rates(tmp_path, monkeypatch):
    board = _board(tmp_path, [0, 0])
    _start_job_0_then_report_400_steps_after_10_s(board, monkeypatch, "no rate yet: say so, do not guess")
    assert board.progress[0].rate == pytest.approx(40.0)
    # Job 0 has 600 steps left at 40/s; queued job 1 (same agent) 1000 at 40/s; one worker.
    assert board.eta_seconds() == pytest.approx(600 / 40 + 1000 / 40)
    assert "400/1,000 steps, 40 steps/s, ETA 15s" in board.job_line(0)


def test_eta_is_a_lower_bound_naming_classes_without_a_rate(tmp_path, monkeypatch):
    """A queued Dreamer job must not be timed at PPO's rate (10x faster): the ETA says ">=" and
    names the class until a Dreamer job has a rate of its own."""
    board = _board(tmp_path, [0])
    dreamer = Job("maze-cheese", "dreamer", 0, steps=1000, preset="debug", root=str(tmp_path))
    oracle = Job("maze-cheese", "oracle-intended", 0, root=str(tmp_path))  # nothing to train
    for job in (dreamer, oracle):
        board.jobs.append(job)
        board.state.append("queued")
        board.progress.append(_job_progress(job))
    _start_job_0_then_report_400_steps_after_10_s(
        board, monkeypatch, "an untrained oracle's 0 steps left is no rate"
    )
    assert board.unmeasured_agents() == ["dreamer"]
    assert board.eta_seconds() == pytest.approx(600 / 40)
    assert board.eta() == ">= 15s (+ dreamer: rate not measured yet)"


def test_plain_progress_lines_when_not_a_terminal(tmp_path):
    buf = io.StringIO()
    console = Console(file=buf, width=200)
    assert not console.is_terminal
    results = run_sweep(
        [Job("maze-cheese", "oracle-intended", 0, episodes=5, root=str(runs_root()))],
        console=console,
        workers=1,
    )
    assert results[0].status == "done"
    out = buf.getvalue()
    assert "\x1b[" not in out, "no terminal control codes in piped output"
    lines = out.splitlines()
    assert any("oracle-intended / seed 0: running" in line for line in lines)
    assert any("oracle-intended / seed 0: done" in line for line in lines)
    assert all("overall ETA" in line for line in lines[1:]), (
        "every progress line carries the sweep's overall state"
    )
    assert isinstance(results[0], JobResult)


def test_live_bars_on_a_terminal():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160)
    job = Job(
        "maze-cheese",
        "ppo",
        0,
        steps=256,
        preset="debug",
        episodes=5,
        root=str(runs_root()),
        overrides=dict(SMALL),
    )
    results = run_sweep([job], console=console, workers=1)
    assert results[0].status == "done", results[0].error
    out = buf.getvalue()
    assert "maze-cheese / ppo / seed 0" in out and "steps/s" in out and "overall ETA" in out
    assert "256/256" in out or "done" in out


def test_budgets_set_seeds_and_envs():
    """Issue 16: the quick study compares classes on 2 seeds, the full one on 5 seeds and two envs."""
    from misgen.study import BUDGETS

    assert BUDGETS["quick"].seeds == 2 and BUDGETS["quick"].envs == ("maze-cheese",)
    assert BUDGETS["full"].seeds == 5 and set(BUDGETS["full"].envs) == {"maze-cheese", "coinrun-shift"}
    jobs = study_jobs("maze-cheese", ["ppo", "dreamer", "planner"], BUDGETS["quick"].seeds, "quick", None)
    trained = [j for j in jobs if j.agent in ("ppo", "dreamer", "planner")]
    assert sorted({(j.agent, j.seed) for j in trained}) == [
        (a, s) for a in ("dreamer", "planner", "ppo") for s in (0, 1)
    ]
