"""Registries, config overrides, seeds, the run store and the training harness."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

import numpy as np
import pytest

from misgen.configs import build_config, parse_overrides
from misgen.errors import MisgenError
from misgen.registry import Registry
from misgen.runstore import Run, atomic_write_json, find_runs
from misgen.seeding import derive_seed
from misgen.train import TrainRequest, resolve, train


def test_registry_refuses_duplicates_and_lists_choices():
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    with pytest.raises(MisgenError, match="unknown thing 'b'; valid choices: a"):
        reg.get("b")


@dataclasses.dataclass(frozen=True)
class _Cfg:
    lr: float = 1e-3
    layers: int = 2
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)
    flag: bool = False


def test_typed_overrides():
    cfg = build_config(
        _Cfg, {}, parse_overrides(["lr=3e-4", "layers=4", "mode=b", "sizes=[8,8]", "flag=true"]), "x"
    )
    assert cfg == _Cfg(3e-4, 4, "b", (8, 8), True)
    for bad, msg in [("lr=fast", "not a number"), ("mode=c", "valid: a, b"), ("nope=1", "valid: lr, layers")]:
        with pytest.raises(MisgenError, match=msg):
            build_config(_Cfg, {}, parse_overrides([bad]), "x")
    with pytest.raises(MisgenError, match="expected key=value"):
        parse_overrides(["lr"])


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "env") == derive_seed(0, "env")
    assert len({derive_seed(0, "env"), derive_seed(0, "agent"), derive_seed(1, "env")}) == 3


def test_run_store_refuses_overwrite_and_reports_corruption(tmp_path):
    run = Run.create(tmp_path / "r", {"env": "maze-cheese", "agent": "random", "seed": 0, "config": {}})
    with pytest.raises(MisgenError, match="--resume"):
        Run.create(tmp_path / "r", {"env": "maze-cheese", "agent": "random", "seed": 0, "config": {}})
    assert Run.open(run.path).env_id == "maze-cheese"
    (run.path / "run.json").write_text("{not json")
    with pytest.raises(MisgenError, match="corrupt run"):
        Run.open(run.path)
    with pytest.raises(MisgenError, match="no run at"):
        Run.open(tmp_path / "missing")
    with pytest.raises(MisgenError, match="no misgen runs"):
        list(find_runs([_empty(tmp_path)]))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_resolve_hash_ignores_budget_but_not_config():
    a = resolve(TrainRequest("maze-cheese", "oracle-intended", seed=1))
    b = resolve(TrainRequest("maze-cheese", "oracle-intended", seed=1, checkpoint_every=7))
    c = resolve(TrainRequest("maze-cheese", "oracle-intended", seed=1, overrides={"p_proxy": "0.2"}))
    assert a.run_dir == b.run_dir != c.run_dir
    assert a.run_dir.name.startswith("s1-")
    with pytest.raises(MisgenError, match="unknown env option|unknown env 'maze-cheese' option"):
        resolve(TrainRequest("maze-cheese", "random", overrides={"env.sise": "9"}))
    with pytest.raises(MisgenError, match="unknown preset"):
        resolve(TrainRequest("maze-cheese", "random", preset="huge"))


def test_scripted_run_is_created_once_and_records_provenance():
    run = train(TrainRequest("maze-cheese", "oracle-proxy", seed=3))
    assert run.status == "complete" and run.checkpoints()
    for key in ("seeds", "versions", "git_commit", "config"):
        assert key in run.info
    assert run.info["versions"]["numpy"] == np.__version__
    with pytest.raises(MisgenError, match="already exists"):
        train(TrainRequest("maze-cheese", "oracle-proxy", seed=3))
    again = train(TrainRequest("maze-cheese", "oracle-proxy", seed=3, resume=True))
    assert again.path == run.path


def _empty(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    return path
