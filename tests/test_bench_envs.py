"""``misgen bench envs`` end to end on a tiny budget: the JSON it writes and the ratios it derives.

Speeds are never asserted here (timed targets belong to the benchmark, not to unit tests)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from misgen.bench.envs import MINIGRID_REF, PROCGEN_REF, Measurement, ratios, run_env_bench
from misgen.errors import MisgenError


def test_tiny_bench_writes_every_env_and_reference(tmp_path):
    out = tmp_path / "bench" / "envs.json"
    run_env_bench(out=out, seconds=0.05, env_ids=["keys-chests", "coinrun-shift"])
    data = json.loads(out.read_text())
    rows = {(r["env"], r["batch"]): r for r in data["results"]}
    for env in ("keys-chests", "coinrun-shift"):
        for batch in (1, 16, 256):
            r = rows[(env, batch)]
            assert r["source"] == "misgen" and r["steps"] >= 3 * batch and r["steps"] % batch == 0
            assert r["steps_per_s"] > 0 and r["steps_per_cpu_s"] > 0
    refs = {r["env"] for r in data["results"] if r["source"] == "reference"}
    assert (MINIGRID_REF in refs) == (importlib.util.find_spec("minigrid") is not None)
    assert (PROCGEN_REF in refs) != (PROCGEN_REF in data["skipped"])
    assert {(r["env"], r["reference"]) for r in data["ratios"]} == {
        (e, ref) for e in ("keys-chests", "coinrun-shift") for ref in refs
    }
    assert data["machine"]["cpu_count"] >= 1 and "numpy" in json.dumps(data["versions"])


def test_ratios_use_each_references_best_per_core_figure():
    m = [
        Measurement("a", "misgen", "native", 256, 1000, 1.0, 0.5),  # 2000 per CPU-second
        Measurement("a", "misgen", "native", 16, 10, 1.0, 1.0),
        Measurement("ref", "reference", "x", 1, 100, 1.0, 1.0),
        Measurement("ref", "reference", "x", 16, 400, 1.0, 2.0),  # best: 200 per CPU-second
    ]
    (row,) = ratios(m)
    assert row == {"env": "a", "reference": "ref", "ratio_per_core": pytest.approx(10.0)}


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(MisgenError, match="seconds"):
        run_env_bench(out=tmp_path / "x.json", seconds=0, env_ids=["keys-chests"])
    with pytest.raises(MisgenError, match="valid choices"):
        run_env_bench(out=tmp_path / "x.json", seconds=0.01, env_ids=["no-such-env"])
