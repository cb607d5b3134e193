"""The report: built from a run store, rendered in a real headless browser (Debian's chromium).

The run store here is written by the test with known probe numbers, so the test can check that the
tables show exactly those numbers, that seeds are aggregated, and that flags appear; the end-to-end
path from trained agents to a report is covered by the study/sweep tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from misgen.agents import get_agent
from misgen.agents.checkpoint import save_agent
from misgen.environments import get_env
from misgen.probes.rollout import collect, save_rollouts
from misgen.report.build import build_report
from misgen.runstore import Run, atomic_write_json

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _estimate(mean: float, n: int = 200) -> dict:
    return {"mean": mean, "lo": max(0.0, mean - 0.05), "hi": min(1.0, mean + 0.05), "n": n}


def _make_run(root: Path, agent: str, kind: str, seed: int, shift_success: float, preset: str | None = None) -> Path:
    path = root / "maze-cheese" / agent / f"s{seed}-00000000"
    run = Run.create(
        path,
        {
            "env": "maze-cheese",
            "agent": agent,
            "kind": kind,
            "seed": seed,
            "config": {"env": "maze-cheese", "agent": agent, "preset": preset, "env_overrides": {}},
            "status": "complete",
            "steps_done": 1000,
            "git_commit": "abc123",
            "versions": {"python": "3.11", "numpy": np.__version__},
        },
    )
    for step in (500, 1000):
        run.append_metrics({"step": step, "charts/success": step / 1000 * 0.9})
    cls = get_agent(agent if agent.startswith("oracle") else "oracle-proxy")
    env = get_env("maze-cheese").make("train", 1, 0)
    policy = cls(cls.Config(), env.single_observation_space, env.single_action_space, seed)
    save_agent(policy, run.checkpoint_dir(1000))
    rollouts = collect(policy, get_env("maze-cheese"), "test-shift", 30, seed)
    save_rollouts(rollouts, run.rollouts_dir / "step_1000" / "test-shift-e30-s0.npz")
    atomic_write_json(
        run.probes_dir / "step_1000.json",
        {
            "step": 1000,
            "episodes": 200,
            "probes": {
                "intended-success": {
                    "version": 1,
                    "metrics": {"train": _estimate(0.95), "test-iid": _estimate(0.9), "test-shift": _estimate(shift_success)},
                    "higher_is_better": {"train": True, "test-iid": True, "test-shift": True},
                },
                "goal-consistency": {"version": 1, "metrics": {"consistency": _estimate(0.7)}, "higher_is_better": {"consistency": None}},
                "value-map": {
                    "version": 1,
                    "metrics": {},
                    "higher_is_better": {},
                    "details": {"heatmap": np.linspace(0, 1, 169).reshape(13, 13).tolist(), "markers": {"intended:cheese": [5, 7]}},
                },
            },
        },
    )
    return path


@pytest.fixture()
def store(tmp_path):
    root = tmp_path / "runs"
    _make_run(root, "oracle-proxy", "scripted", 0, 0.31)
    _make_run(root, "oracle-intended", "scripted", 0, 0.97)
    _make_run(root, "oracle-intended", "scripted", 1, 0.93, preset="debug")
    return root


def test_report_files_tables_and_aggregation(store, tmp_path):
    out = tmp_path / "report"
    paths = build_report([store], out)
    md = paths.markdown.read_text()
    assert "0.31 [0.26, 0.36]" in md  # single-seed cell shows the episode interval
    assert "(2 seeds)" in md and "0.95 [" in md  # two seeds of oracle-intended: mean 0.95 over seeds
    assert "debug preset" in md and "⚑" in md
    assert "abc123" in md  # provenance
    rows = paths.csv.read_text().splitlines()
    assert rows[0].startswith("env,agent,kind,probe,metric") and any("s0=0.9700;s1=0.9300" in r for r in rows)
    names = {p.name for p in paths.figures}
    assert {"maze-cheese-intended-success.png", "maze-cheese-training-curves.png", "maze-cheese-value-maps.png",
            "maze-cheese-end-positions.png", "maze-cheese-misgeneralizing-episode.png"} <= names
    html = paths.html.read_text()
    assert html.count("data:image/png;base64,") == len(paths.figures), "figures are embedded"
    assert "src=\"figures/" not in html


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(store, tmp_path):
    paths = build_report([store], tmp_path / "report")
    shot = tmp_path / "shot.png"
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--run-all-compositor-stages-before-draw",
         # After load, record whether every <img> decoded and how many tables there are.
         "--dump-dom", paths.html.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    assert dom.count("<table") >= 2
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile2'}",
         "--window-size=1280,2400", f"--screenshot={shot}", paths.html.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 20_000
    from matplotlib.image import imread

    pixels = imread(str(shot))
    # Figures are colourful; an all-white page (images failed to load) has almost no colour variance.
    colourful = (np.abs(pixels[..., 0] - pixels[..., 2]) > 0.15).mean()
    assert colourful > 0.01, f"screenshot looks blank ({colourful:.4f} coloured pixels)"
    json.dumps({"shot": str(shot)})


def test_single_seed_cells_show_small_denominators():
    from misgen.probes.stats import Estimate
    from misgen.report.data import FEW_EPISODES, Aggregate

    def cell(n: int) -> str:
        est = Estimate(1.0, 1.0, 1.0, n)
        return Aggregate("e", "a", "k", "p", "m", True, est, ((0, est),), ()).cell

    assert cell(2) == "1.00 [1.00, 1.00] (n=2)"
    assert cell(FEW_EPISODES) == "1.00 [1.00, 1.00]"
