"""Shared fixtures: every test writes runs under a temporary MISGEN_RUNS."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MISGEN_RUNS", str(tmp_path / "runs"))
    yield


@pytest.fixture
def one_torch_thread():
    """Small batches: multi-threaded torch only spins against other work on a shared machine.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
