"""``misgen envs`` and ``misgen agents [NAME]``: what is registered, as rich tables or ``--json``."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from misgen.progress import console


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def _print_json(data: Any) -> None:
    """JSON on stdout, bypassing rich (no wrapping, no highlighting)."""
    print(json.dumps(data, indent=2))


def env_record(spec: Any) -> dict[str, Any]:
    return {
        "id": spec.id,
        "gym_id": spec.gym_id,
        "backend": spec.backend,
        "description": spec.description,
        "splits": {
            s.name: {
                "seed_start": s.seed_start,
                "seed_stop": s.seed_stop,
                "kwargs": json.loads(json.dumps(dict(s.kwargs), default=str)),
            }
            for s in spec.splits.values()
        },
        "goals": [{"name": g.name, "role": g.role, "meaning": g.meaning} for g in spec.goals],
        "knob": spec.knob,
        "difficulty": spec.difficulty_config() if spec.available() else {},
        "requires": list(spec.requires),
        "available": spec.available(),
    }


def agent_record(cls: Any, fields: bool = False) -> dict[str, Any]:
    from misgen.configs import describe_fields

    out: dict[str, Any] = {
        "name": cls.name,
        "kind": cls.kind,
        "trainable": cls.trainable,
        "default_steps": cls.default_steps if cls.trainable else None,
        "presets": {
            name: json.loads(json.dumps(values, default=str)) for name, values in cls.presets.items()
        },
        "description": _first_line(cls.__doc__),
    }
    if fields:
        out["config"] = describe_fields(cls.Config)
    return out


def register(app: typer.Typer) -> None:
    @app.command("envs")
    def envs(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """List environments with their splits (level-seed ranges) and candidate goals."""
        from misgen.environments import ENVS

        if as_json:
            _print_json([env_record(spec) for _, spec in ENVS.items()])
            return
        table = Table(title="misgen environments")
        for col in (
            "env",
            "backend",
            "gym id",
            "splits (level seeds)",
            "goals",
            "knob",
            "difficulty (train)",
            "available",
        ):
            table.add_column(col)
        for name, spec in ENVS.items():
            splits = "\n".join(f"{s.name}: [{s.seed_start:,}, {s.seed_stop:,})" for s in spec.splits.values())
            goals = "\n".join(f"{g.name} ({g.role})" for g in spec.goals)
            available = "yes" if spec.available() else f"no (needs {', '.join(spec.requires)})"
            difficulty = (
                "\n".join(f"{k}={v}" for k, v in spec.difficulty_config().items()) if spec.available() else ""
            )
            table.add_row(
                name, spec.backend, spec.gym_id, splits, goals, spec.knob or "-", difficulty or "-", available
            )
        console.print(table)

    @app.command("agents")
    def agents(
        name: str = typer.Argument(
            None, help="An agent: list its config fields (type, default, doc) and presets."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """List agent classes (kind, presets, default budget), or one agent's config fields."""
        from misgen.agents import AGENTS, get_agent

        if name is not None:
            cls = get_agent(name)
            record = agent_record(cls, fields=True)
            if as_json:
                _print_json(record)
                return
            table = Table(title=f"{cls.name} ({cls.kind}): {record['description']}")
            for col in ("field", "type", "default", "doc"):
                table.add_column(col, overflow="fold")
            for f in record["config"]:
                table.add_row(f["name"], f["type"], json.dumps(f["default"]), f["doc"])
            console.print(table)
            for preset, values in record["presets"].items():
                changes = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "(the defaults)"
                console.print(f"preset [bold]{preset}[/]: {changes}", highlight=False)
            console.print(
                f"set a field with: misgen train --agent {cls.name} --set FIELD=VALUE", highlight=False
            )
            return
        if as_json:
            _print_json([agent_record(cls) for _, cls in AGENTS.items()])
            return
        table = Table(title="misgen agents")
        for col in ("agent", "kind", "presets", "default steps", "description"):
            table.add_column(col)
        for agent_name, cls in AGENTS.items():
            steps = f"{cls.default_steps:,}" if cls.trainable else "- (scripted)"
            table.add_row(agent_name, cls.kind, ", ".join(cls.presets), steps, _first_line(cls.__doc__))
        console.print(table)
