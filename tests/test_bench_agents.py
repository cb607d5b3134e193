"""``misgen bench agents``: the timing wrapper and one tiny end-to-end run (no speed assertions)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from misgen.bench.agents import TimedEnv, _TimeUp, run_agent_bench
from misgen.environments import get_env
from misgen.errors import MisgenError


def test_timed_env_counts_forwards_and_stops():
    env = TimedEnv(get_env("maze-cheese").make("train", 3, 0), seconds=0.2)
    assert env.misgen_spec.id == "maze-cheese"  # misgen attributes reach the wrapped env
    env.reset(seed=0)
    assert env.oracle_actions("cheese").shape == (3,)
    env.step(np.zeros(3, np.int64))
    assert env.env_steps == 3
    time.sleep(0.25)
    with pytest.raises(_TimeUp):
        env.step(np.zeros(3, np.int64))
    assert env.env_steps == 3


def test_run_agent_bench_writes_rows(tmp_path):
    out = tmp_path / "agents.json"
    run_agent_bench("maze-cheese", out, 1.0, ["dreamer"])
    data = json.loads(out.read_text())
    (row,) = data["agents"]
    assert row["agent"] == "dreamer" and row["kind"] == "model-based"
    assert row["env_steps"] > 0 and row["env_steps_per_s"] > 0
    assert row["updates"] is not None and row["updates"] >= 0
    assert isinstance(data["planner"], list)


def test_unknown_agent_is_a_one_line_error(tmp_path):
    with pytest.raises(MisgenError, match="valid"):
        run_agent_bench("maze-cheese", tmp_path / "x.json", 0.1, ["no-such-agent"])
