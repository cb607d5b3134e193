"""Shared fixtures: every test writes runs under a temporary MISGEN_RUNS."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MISGEN_RUNS", str(tmp_path / "runs"))
    yield
