"""``misgen envs`` and ``misgen agents``: what is registered, as rich tables."""

from __future__ import annotations

import typer
from rich.table import Table

from misgen.progress import console


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def register(app: typer.Typer) -> None:
    @app.command("envs")
    def envs() -> None:
        """List environments with their splits (level-seed ranges) and candidate goals."""
        from misgen.environments import ENVS

        table = Table(title="misgen environments")
        for col in ("env", "backend", "gym id", "splits (level seeds)", "goals", "knob", "available"):
            table.add_column(col)
        for name, spec in ENVS.items():
            splits = "\n".join(f"{s.name}: [{s.seed_start:,}, {s.seed_stop:,})" for s in spec.splits.values())
            goals = "\n".join(f"{g.name} ({g.role})" for g in spec.goals)
            available = "yes" if spec.available() else f"no (needs {', '.join(spec.requires)})"
            table.add_row(name, spec.backend, spec.gym_id, splits, goals, spec.knob or "-", available)
        console.print(table)

    @app.command("agents")
    def agents() -> None:
        """List agent classes with their kind, presets and default training budget."""
        from misgen.agents import AGENTS

        table = Table(title="misgen agents")
        for col in ("agent", "kind", "presets", "default steps", "description"):
            table.add_column(col)
        for name, cls in AGENTS.items():
            steps = f"{cls.default_steps:,}" if cls.trainable else "- (scripted)"
            table.add_row(name, cls.kind, ", ".join(cls.presets), steps, _first_line(cls.__doc__))
        console.print(table)
