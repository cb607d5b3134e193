"""Provenance recorded with every run and checkpoint: versions, git commit, machine."""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "misgen",
    "numpy",
    "torch",
    "gymnasium",
    "stable-baselines3",
    "safetensors",
    "scikit-learn",
    "minigrid",
    "procgen-mirror",
)


@cache
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@cache
def git_commit() -> str:
    """The commit of the misgen source tree (``+dirty`` if it has uncommitted changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def machine() -> dict[str, str | int]:
    import os

    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count() or 0}
