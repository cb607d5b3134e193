"""The CLI as a user meets it: subprocess smoke test and one clear line for each bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The installed console script (the real entry point); ``-m misgen.cli`` where it is not installed.
SCRIPT = Path(sys.executable).with_name("misgen")
ENTRY = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "misgen.cli"]


def misgen(*args: str, runs: Path, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MISGEN_RUNS": str(runs), "COLUMNS": str(columns), "NO_COLOR": "1"}
    return subprocess.run([*ENTRY, *args], capture_output=True, text=True, env=env, timeout=300)


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
    assert (
        "test-shift" in result.stdout
        and "cheese success" in result.stdout
        and "top-right-corner" in result.stdout
    )
    assert "1.000" in result.stdout  # the intended oracle always finds the cheese
    assert "success by maze side" in result.stdout  # which levels it solves, per difficulty draw


def test_unknown_names(tmp_path):
    assert_one_line_error(
        misgen("train", "--env", "nope", "--agent", "ppo", runs=tmp_path), "unknown env 'nope'", "maze-cheese"
    )
    assert_one_line_error(
        misgen("train", "--env", "maze-cheese", "--agent", "nope", runs=tmp_path),
        "unknown agent",
        "oracle-intended",
    )


def test_unknown_split(scripted_run):
    runs, run = scripted_run
    assert_one_line_error(
        misgen("eval", str(run), "--split", "validation", runs=runs), "validation", "test-shift"
    )


def test_existing_run_is_refused(scripted_run):
    runs, _ = scripted_run
    result = misgen("train", "--env", "maze-cheese", "--agent", "oracle-intended", "--seed", "4", runs=runs)
    assert_one_line_error(result, "already exists", "--resume")


def test_missing_run_and_checkpoint(tmp_path, scripted_run):
    assert_one_line_error(misgen("eval", str(tmp_path / "nowhere"), runs=tmp_path), "no run at")
    runs, run = scripted_run
    assert_one_line_error(
        misgen("eval", str(run), "--checkpoint", "step_99", runs=runs), "unknown checkpoint", "step_0"
    )


def test_corrupt_checkpoint(tmp_path, scripted_run):
    runs, run = scripted_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "step_0" / "agent.json").write_text("{broken")
    assert_one_line_error(misgen("eval", str(copy), runs=runs), "corrupt checkpoint")
    (copy / "checkpoints" / "step_0" / "agent.json").write_text(
        (run / "checkpoints" / "step_0" / "agent.json").read_text()
    )
    (copy / "checkpoints" / "step_0" / "weights.safetensors").write_bytes(b"garbage")
    assert_one_line_error(misgen("eval", str(copy), runs=runs), "corrupt checkpoint", "weights.safetensors")


def test_bad_overrides(tmp_path):
    result = misgen(
        "train", "--env", "maze-cheese", "--agent", "oracle-mixed", "--set", "p_proxy=lots", runs=tmp_path
    )
    assert_one_line_error(result, "p_proxy", "not a number")
    result = misgen(
        "train", "--env", "maze-cheese", "--agent", "oracle-mixed", "--set", "colour=red", runs=tmp_path
    )
    assert_one_line_error(result, "unknown", "colour", "valid:")
    result = misgen(
        "train", "--env", "maze-cheese", "--agent", "oracle-mixed", "--set", "p_proxy", runs=tmp_path
    )
    assert_one_line_error(result, "key=value")
    result = misgen(
        "train", "--env", "maze-cheese", "--agent", "oracle-mixed", "--set", "env.size=12", runs=tmp_path
    )
    assert_one_line_error(result, "odd")


@pytest.mark.parametrize(
    "args,needles",
    [
        (
            ["train", "--agnet", "ppo"],
            ["no such option --agnet", "--agent", "valid options"],
        ),  # typo'd option
        (["train", "--env", "maze-cheese"], ["Missing option", "--agent"]),  # missing option
        (["train", "-e", "maze-cheese", "-a", "ppo", "--steps", "abc"], ["--steps", "integer"]),  # bad type
        (["eval"], ["Missing argument"]),  # missing argument
        (["trian"], ["No such command", "trian", "train"]),  # unknown command, with the valid ones
        (["bench", "nope"], ["No such command", "envs, agents"]),  # unknown sub-command
        (["envs", "--wide"], ["no such option --wide", "--json"]),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(tmp_path, args, needles):
    assert_one_line_error(misgen(*args, runs=tmp_path), *needles)


def test_piped_tables_keep_full_names(tmp_path):
    result = misgen("envs", runs=tmp_path, columns=40)  # a narrow COLUMNS must not matter in a pipe
    assert result.returncode == 0
    assert "…" not in result.stdout
    lines = [line for line in result.stdout.splitlines() if "maze-cheese" in line]
    assert lines and "misgen/MazeCheese-v0" in lines[0]
    agents = misgen("agents", runs=tmp_path, columns=40)
    assert "…" not in agents.stdout and "oracle-intended" in agents.stdout


def test_json_catalogs(tmp_path):
    from misgen.agents import AGENTS
    from misgen.environments import ENVS

    envs = json.loads(misgen("envs", "--json", runs=tmp_path).stdout)
    assert [e["id"] for e in envs] == ENVS.names()
    maze = next(e for e in envs if e["id"] == "maze-cheese")
    assert maze["gym_id"] == "misgen/MazeCheese-v0" and set(maze["splits"]) >= {
        "train",
        "test-iid",
        "test-shift",
    }
    agents = json.loads(misgen("agents", "--json", runs=tmp_path).stdout)
    assert [a["name"] for a in agents] == [
        n for n in AGENTS.names() if not n.startswith("test-")
    ]  # test doubles live in-process
    ppo = json.loads(misgen("agents", "ppo", "--json", runs=tmp_path).stdout)
    fields = {f["name"]: f for f in ppo["config"]}
    assert (
        fields["lr"] == {**fields["lr"], "type": "float", "default": 1e-3}
        and "learning rate" in fields["lr"]["doc"]
    )
    assert fields["network"]["type"] == "auto | grid | impala"
    table = misgen("agents", "ppo", runs=tmp_path)
    assert table.returncode == 0 and "n_epochs" in table.stdout and "passes over each rollout" in table.stdout


@pytest.mark.parametrize("name", ["ppo", "dreamer", "planner"])
def test_every_agent_config_field_is_documented(name):
    from misgen.agents import get_agent
    from misgen.configs import describe_fields

    undocumented = [f["name"] for f in describe_fields(get_agent(name).Config) if not f["doc"]]
    assert not undocumented, f"{name} config fields without a doc: {undocumented}"


def test_ctrl_c_saves_exits_130_and_resumes(tmp_path):
    env = {**os.environ, "MISGEN_RUNS": str(tmp_path), "NO_COLOR": "1"}
    args = [
        "train",
        "-e",
        "maze-cheese",
        "-a",
        "ppo",
        "--preset",
        "debug",
        "--steps",
        "1000000",
        "--seed",
        "9",
    ]
    proc = subprocess.Popen(
        [*ENTRY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # piped: one plain progress line per update
            line = proc.stdout.readline()
            lines.append(line)
            if "steps/s" in line and "ETA" in line and "/1,000,000 steps" in line:
                break
        else:
            pytest.fail(f"no progress line: {lines}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in (out + err)
    (path,) = tmp_path.glob("maze-cheese/ppo/s9-*")
    info = json.loads((path / "run.json").read_text())
    assert info["status"] == "interrupted" and info["steps_done"] > 0
    step = info["steps_done"]
    resumed = misgen(*args[:-4], "--steps", str(step + 128), "--seed", "9", "--resume", runs=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming maze-cheese/ppo/{path.name} from step {step:,}" in resumed.stdout
    assert json.loads((path / "run.json").read_text())["status"] == "complete"
