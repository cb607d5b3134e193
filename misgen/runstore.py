"""The run store: ``runs/<env>/<agent>/s<seed>-<cfghash8>/``, one directory per training run.

Layout::

    run.json            resolved config, root seed, derived seeds, versions, git commit, status
    metrics.jsonl       one JSON object per ``ctx.report`` call (the training curve)
    checkpoints/step_N/ weights.safetensors + agent.json (see misgen.agents.checkpoint)
    rollouts/step_N/    cached rollouts (.npz)
    probes/step_N.json  probe battery results

Every write is atomic (temp file + rename). A run directory is never silently overwritten:
creating one that exists is an error unless the caller resumes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misgen.errors import MisgenError

RUN_FORMAT = 1
STEP_DIR = re.compile(r"^step_(\d+)$")


def runs_root() -> Path:
    """Where runs live: ``$MISGEN_RUNS`` or ``./runs``."""
    return Path(os.environ.get("MISGEN_RUNS", "runs"))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def config_hash(config: Mapping[str, Any]) -> str:
    """First 8 hex digits of the SHA-256 of the canonical JSON of a resolved config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]


def run_dir_for(
    env_id: str, agent: str, seed: int, config: Mapping[str, Any], root: Path | None = None
) -> Path:
    return (root or runs_root()) / env_id / agent / f"s{seed}-{config_hash(config)}"


@dataclass
class Run:
    """A run directory and its ``run.json``."""

    path: Path
    info: dict[str, Any]

    # Construction ------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, info: dict[str, Any]) -> Run:
        """Create a new run; refuses an existing directory (resume it or pick a new seed)."""
        path = Path(path)
        if (path / "run.json").exists():
            raise MisgenError(f"run {path} already exists; pass --resume to continue it, or use a new --seed")
        if path.exists() and any(path.iterdir()):
            raise MisgenError(f"directory {path} exists and is not empty; refusing to overwrite it")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, {"format": RUN_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info})
        run.save()
        return run

    @classmethod
    def open(cls, path: Path | str) -> Run:
        """Open an existing run, with a one-line error if it is missing or broken."""
        path = Path(path)
        file = path / "run.json"
        if not path.exists():
            raise MisgenError(f"no run at {path} (directory does not exist)")
        if not file.is_file():
            raise MisgenError(f"{path} is not a misgen run (no run.json)")
        try:
            info = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise MisgenError(f"corrupt run {path}: run.json is not valid JSON ({err})") from None
        for key in ("env", "agent", "seed", "config"):
            if key not in info:
                raise MisgenError(f"corrupt run {path}: run.json lacks {key!r}")
        return cls(path, info)

    def save(self) -> None:
        atomic_write_json(self.path / "run.json", self.info)

    def update(self, **fields: Any) -> None:
        self.info.update(fields)
        self.save()

    # Convenience -------------------------------------------------------------------------------
    @property
    def env_id(self) -> str:
        return str(self.info["env"])

    @property
    def agent_name(self) -> str:
        return str(self.info["agent"])

    @property
    def seed(self) -> int:
        return int(self.info["seed"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.info["config"])

    @property
    def env_overrides(self) -> dict[str, Any]:
        """The run's env config overrides (``--set env.<field>=...``), as recorded in run.json."""
        return dict(self.config.get("env_overrides", {}))

    @property
    def status(self) -> str:
        return str(self.info.get("status", "unknown"))

    @property
    def name(self) -> str:
        return f"{self.env_id}/{self.agent_name}/{self.path.name}"

    # Checkpoints -------------------------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints_dir / f"step_{step}"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints (those with agent.json), sorted by step."""
        if not self.checkpoints_dir.is_dir():
            return []
        out = []
        for child in self.checkpoints_dir.iterdir():
            match = STEP_DIR.match(child.name)
            if match and (child / "agent.json").is_file():
                out.append((int(match.group(1)), child))
        return sorted(out)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        ckpts = self.checkpoints()
        return ckpts[-1] if ckpts else None

    def resolve_checkpoint(self, which: str | None) -> list[tuple[int, Path]]:
        """``None``/``latest`` -> [latest], ``all`` -> all, ``step_N``/``N`` -> that one."""
        ckpts = self.checkpoints()
        if not ckpts:
            raise MisgenError(f"run {self.path} has no checkpoint yet")
        if which in (None, "", "latest"):
            return [ckpts[-1]]
        if which == "all":
            return ckpts
        step_text = which.removeprefix("step_")
        if step_text.isdigit():
            for step, path in ckpts:
                if step == int(step_text):
                    return [(step, path)]
        valid = ", ".join(["latest", "all", *(f"step_{s}" for s, _ in ckpts)])
        raise MisgenError(f"unknown checkpoint {which!r} in run {self.path}; valid: {valid}")

    # Logs and results ----------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one line to metrics.jsonl (a single write call; lines are never rewritten)."""
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        """The training curve; a torn last line (crash mid-write) is skipped."""
        if not self.metrics_path.is_file():
            return []
        out = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def truncate_metrics(self, max_step: int) -> None:
        """Drop curve entries past ``max_step`` (used when resuming from an earlier checkpoint)."""
        kept = [m for m in self.metrics() if int(m.get("step", 0)) <= max_step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(m) + "\n" for m in kept))

    @property
    def rollouts_dir(self) -> Path:
        return self.path / "rollouts"

    @property
    def probes_dir(self) -> Path:
        return self.path / "probes"

    def probe_results(self) -> dict[int, dict[str, Any]]:
        """All ``probes/step_N.json`` files by step."""
        out: dict[int, dict[str, Any]] = {}
        if not self.probes_dir.is_dir():
            return out
        for file in self.probes_dir.glob("step_*.json"):
            match = STEP_DIR.match(file.stem)
            if match:
                try:
                    out[int(match.group(1))] = json.loads(file.read_text())
                except json.JSONDecodeError as err:
                    raise MisgenError(f"corrupt probe results {file}: {err}") from None
        return dict(sorted(out.items()))


def find_runs(paths: list[Path | str]) -> Iterator[Run]:
    """Runs at or below each path (a run dir, or any folder containing run dirs)."""
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MisgenError(f"no run or folder at {path}")
        candidates = (
            [path] if (path / "run.json").is_file() else sorted(p.parent for p in path.rglob("run.json"))
        )
        if not candidates:
            raise MisgenError(f"no misgen runs under {path}")
        for candidate in candidates:
            real = candidate.resolve()
            if real not in seen:
                seen.add(real)
                yield Run.open(candidate)
