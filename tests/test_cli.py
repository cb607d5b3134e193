"""The CLI as a user meets it: subprocess smoke test and one clear line for each bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def misgen(*args: str, runs: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MISGEN_RUNS": str(runs), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "misgen.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    result = misgen("train", "--env", "maze-cheese", "--agent", "oracle-intended", "--seed", "4", runs=runs)
    assert result.returncode == 0, result.stderr
    (run,) = list(runs.glob("maze-cheese/oracle-intended/s4-*"))
    return runs, run


def test_help_and_catalog(tmp_path):
    assert misgen("--help", runs=tmp_path).returncode == 0
    envs = misgen("envs", runs=tmp_path)
    assert envs.returncode == 0 and "maze-cheese" in envs.stdout and "misgen/MazeCheese-v0" in envs.stdout
    agents = misgen("agents", runs=tmp_path)
    assert agents.returncode == 0 and "oracle-proxy" in agents.stdout


def test_eval_prints_intended_and_proxy_success(scripted_run):
    runs, run = scripted_run
    result = misgen("eval", str(run), "--split", "test-shift", "--episodes", "40", runs=runs)
    assert result.returncode == 0, result.stderr
    assert "test-shift" in result.stdout and "cheese success" in result.stdout and "top-right-corner" in result.stdout
    assert "1.000" in result.stdout  # the intended oracle always finds the cheese


def test_unknown_names(tmp_path):
    assert_one_line_error(misgen("train", "--env", "nope", "--agent", "ppo", runs=tmp_path), "unknown env 'nope'", "maze-cheese")
    assert_one_line_error(misgen("train", "--env", "maze-cheese", "--agent", "nope", runs=tmp_path), "unknown agent", "oracle-intended")


def test_unknown_split(scripted_run):
    runs, run = scripted_run
    assert_one_line_error(misgen("eval", str(run), "--split", "validation", runs=runs), "validation", "test-shift")


def test_existing_run_is_refused(scripted_run):
    runs, _ = scripted_run
    result = misgen("train", "--env", "maze-cheese", "--agent", "oracle-intended", "--seed", "4", runs=runs)
    assert_one_line_error(result, "already exists", "--resume")


def test_missing_run_and_checkpoint(tmp_path, scripted_run):
    assert_one_line_error(misgen("eval", str(tmp_path / "nowhere"), runs=tmp_path), "no run at")
    runs, run = scripted_run
    assert_one_line_error(misgen("eval", str(run), "--checkpoint", "step_99", runs=runs), "unknown checkpoint", "step_0")


def test_corrupt_checkpoint(tmp_path, scripted_run):
    runs, run = scripted_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "step_0" / "agent.json").write_text("{broken")
    assert_one_line_error(misgen("eval", str(copy), runs=runs), "corrupt checkpoint")
    (copy / "checkpoints" / "step_0" / "agent.json").write_text((run / "checkpoints" / "step_0" / "agent.json").read_text())
    (copy / "checkpoints" / "step_0" / "weights.safetensors").write_bytes(b"garbage")
    assert_one_line_error(misgen("eval", str(copy), runs=runs), "corrupt checkpoint", "weights.safetensors")


def test_bad_overrides(tmp_path):
    result = misgen("train", "--env", "maze-cheese", "--agent", "oracle-mixed", "--set", "p_proxy=lots", runs=tmp_path)
    assert_one_line_error(result, "p_proxy", "not a number")
    result = misgen("train", "--env", "maze-cheese", "--agent", "oracle-mixed", "--set", "colour=red", runs=tmp_path)
    assert_one_line_error(result, "unknown", "colour", "valid:")
    result = misgen("train", "--env", "maze-cheese", "--agent", "oracle-mixed", "--set", "p_proxy", runs=tmp_path)
    assert_one_line_error(result, "key=value")
    result = misgen("train", "--env", "maze-cheese", "--agent", "oracle-mixed", "--set", "env.size=12", runs=tmp_path)
    assert_one_line_error(result, "odd")
