"""Agent classes compared by the suite, behind one small protocol (see :mod:`.base`).

Every module in this package registers its agent classes in :data:`AGENTS` on import; importing the
package imports them all.
"""

from __future__ import annotations

from misgen.agents.base import Agent, AgentKind, TrainContext
from misgen.registry import Registry

AGENTS: Registry[type[Agent]] = Registry("agent", package="misgen.agents")

__all__ = ["AGENTS", "Agent", "AgentKind", "TrainContext", "get_agent", "register_agent"]


def register_agent(cls: type[Agent]) -> type[Agent]:
    """Class decorator: register an agent class under its ``name``."""
    AGENTS.register(cls.name, cls)
    return cls


def get_agent(name: str) -> type[Agent]:
    return AGENTS.get(name)


AGENTS.load_all()
