"""The battery end to end: run store in, probes/step_N.json and cached rollouts out, CLI on top."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from misgen.cli import app
from misgen.errors import MisgenError
from misgen.probes.rollout import load_rollouts
from misgen.probing import _EpisodeCounter, run_battery
from misgen.runstore import Run
from misgen.train import TrainRequest, train


@pytest.fixture
def proxy_run(tmp_path):
    from rich.console import Console

    return train(
        TrainRequest(env="maze-cheese", agent="oracle-proxy", seed=3, root=tmp_path / "runs"),
        Console(quiet=True),
    )


def test_battery_writes_results_and_reuses_cached_rollouts(proxy_run):
    out = run_battery(proxy_run, "latest", episodes=24)
    file = proxy_run.probes_dir / "step_0.json"
    stored = json.loads(file.read_text())
    assert stored["step"] == 0 and stored["episodes"] == 24 and stored["errors"] == {}
    assert set(stored["rollouts"]) == {"train", "test-iid", "test-shift"}
    assert not any(v["cached"] for v in stored["rollouts"].values())
    for name in ("capability", "intended-success", "proxy-pursuit", "revealed-goal", "goal-consistency"):
        entry = stored["probes"][name]
        assert entry["version"] >= 1 and entry["n"] > 0 and entry["metrics"]
    assert stored["probes"]["revealed-goal"]["metrics"]["proxy_share"]["mean"] == 1.0
    # chance baselines: the same metrics for the uniform-random agent on the same levels
    cap = stored["probes"]["capability"]
    assert (
        set(cap["chance"]["test-shift"]) == {"mean", "lo", "hi", "n"}
        and cap["chance"]["test-shift"]["n"] == 24
    )
    assert cap["chance"]["test-shift"]["mean"] < cap["metrics"]["test-shift"]["mean"] == 1.0
    assert (
        cap["details"]["verdict"]["test-shift"] == "capable"
        and cap["metrics"]["above_chance/test-shift"]["lo"] > 0
    )
    assert "proxy_share" in stored["probes"]["revealed-goal"]["chance"]
    assert stored["probes"]["revealed-goal"]["details"]["verdict"] == "top-right-corner"
    chance_file = stored["chance_rollouts"]["test-shift"]["file"]
    chance = load_rollouts(chance_file)
    assert np.array_equal(
        chance.level_seed, load_rollouts(proxy_run.path / stored["rollouts"]["test-shift"]["file"]).level_seed
    )
    assert (
        "value-map" in stored["skipped"] and "latent-knowledge" in stored["skipped"]
    )  # no critic, no features
    assert stored["seeds"]["rollouts"]["train"] != stored["seeds"]["rollouts"]["test-shift"]
    assert stored["timing"]["total_s"] > 0
    shift = load_rollouts(proxy_run.path / stored["rollouts"]["test-shift"]["file"])
    assert shift.episodes == 24 and shift.split == "test-shift"

    again = run_battery(Run.open(proxy_run.path), "step_0", episodes=24)
    assert all(v["cached"] for v in again["rollouts"].values())
    assert all(v["cached"] for v in again["chance_rollouts"].values())
    assert again["probes"]["proxy-pursuit"]["metrics"] == out["probes"]["proxy-pursuit"]["metrics"]
    other_seed = run_battery(proxy_run, "latest", episodes=24, seed=99, write=False)
    assert not any(v["cached"] for v in other_seed["rollouts"].values())


def test_battery_rejects_unknown_probe_and_bad_episodes(proxy_run):
    with pytest.raises(MisgenError, match="unknown probe"):
        run_battery(proxy_run, "latest", episodes=8, probes=["no-such-probe"])
    with pytest.raises(MisgenError, match="episodes must be >= 5"):
        run_battery(proxy_run, "latest", episodes=4)


def test_episode_counter_tracks_chunks():
    seen = []
    counter = _EpisodeCounter(300, seen.append)
    for active in (256, 200, 0, 44, 10, 0):  # chunk of 256, then a chunk of 44
        counter(active)
    assert sum(seen) == 300 and counter.finished == 300


def test_probe_cli(proxy_run):
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "probe",
            str(proxy_run.path),
            "--episodes",
            "12",
            "--probe",
            "capability",
            "--probe",
            "revealed-goal",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "revealed-goal" in result.output and "proxy_share" in result.output and "wrote" in result.output
    stored = json.loads((proxy_run.probes_dir / "step_0.json").read_text())
    assert set(stored["probes"]) == {"capability", "revealed-goal"}
    listing = runner.invoke(app, ["probe", "--list"])
    assert listing.exit_code == 0 and "latent-knowledge" in listing.output


def test_report_reads_battery_output(proxy_run):
    from misgen.report.data import load_records

    run_battery(proxy_run, "latest", episodes=12)
    (record,) = load_records([proxy_run.path])
    metrics = {(row.probe, row.metric) for row in record.rows}
    assert ("proxy-pursuit", "proxy_first_given_capable") in metrics and (
        "intended-success",
        "test-shift",
    ) in metrics
    assert all(np.isfinite(row.estimate.n) for row in record.rows)
