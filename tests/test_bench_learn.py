"""``misgen bench learn``: thresholds are read off bonus-free evaluations, training stops at the last."""

from __future__ import annotations

import json

import numpy as np
import pytest

from misgen.bench.learn import LearningClock, _Stop, learn_run, run_learn_bench
from misgen.environments import get_env
from misgen.errors import MisgenError


def test_clock_records_the_first_evaluation_past_each_threshold_and_stops_at_the_last():
    env = get_env("maze-cheese").make("train", 4, 0)
    scores = iter([0.1, 0.55, 0.3, 0.85, 0.95, 0.99])
    clock = LearningClock(env, lambda: next(scores), seconds=1e9, eval_every=8, thresholds=(0.5, 0.8, 0.9))
    clock.reset(seed=0)
    with pytest.raises(_Stop):
        for _ in range(100):
            clock.step(np.zeros(4, dtype=np.int64))
    assert [p["env_steps"] for p in clock.curve] == [0, 8, 16, 24, 32]
    assert clock.reached["0.5"]["env_steps"] == 8  # not reset by the later dip to 0.3
    assert clock.reached["0.8"]["env_steps"] == 24
    assert clock.reached["0.9"]["env_steps"] == 32
    assert clock.env_steps == 32, "no training step after the last threshold"
    env.close()


def test_learn_run_on_a_debug_agent_writes_a_curve(tmp_path):
    short = {"env.max_steps": "16", "env.maze_size_max": "7"}
    row = learn_run(
        "maze-cheese",
        "ppo",
        seed=0,
        seconds=2.0,
        eval_every=64,
        eval_episodes=4,
        overrides=short,
        preset="debug",
    )
    assert row["curve"][0]["env_steps"] == 0 and len(row["curve"]) >= 2
    assert all(0.0 <= p["success"] <= 1.0 for p in row["curve"])
    assert row["target_seconds"] == 300.0 and row["met_target"] in (True, False)
    for t, hit in row["reached"].items():
        first = next((p for p in row["curve"] if p["success"] >= float(t)), None)
        assert (hit is None) == (first is None)
        if hit is not None:
            assert hit["env_steps"] == first["env_steps"]


def test_bench_learn_writes_json_and_refuses_bad_input(tmp_path):
    out = tmp_path / "learn.json"
    short = {"env.max_steps": "16", "env.maze_size_max": "7"}
    run_learn_bench(
        "maze-cheese",
        ["ppo"],
        seeds=1,
        seconds=1.0,
        eval_every=64,
        eval_episodes=2,
        out=out,
        overrides=short,
        preset="debug",
    )
    record = json.loads(out.read_text())
    assert record["runs"][0]["agent"] == "ppo" and record["thresholds"] == [0.5, 0.8, 0.9]
    with pytest.raises(MisgenError, match="unknown agent"):
        run_learn_bench("maze-cheese", ["ppoo"], 1, 1.0, 64, 2, out)
    with pytest.raises(MisgenError, match="not trainable"):
        run_learn_bench("maze-cheese", ["oracle-intended"], 1, 1.0, 64, 2, out)
