"""User-facing errors.

Anything a user can get wrong (an unknown name, a bad path, a corrupt checkpoint, a bad override)
raises :class:`MisgenError`. The CLI turns it into one line on stderr and exit code 2, so a typo
never produces a traceback wall and never leaves partial state behind.
"""

from __future__ import annotations

from collections.abc import Iterable


class MisgenError(Exception):
    """An error caused by user input, reported as one clear line."""


def unknown_choice(kind: str, name: str, choices: Iterable[str]) -> MisgenError:
    """Build the standard 'unknown X' error that names the valid choices."""
    valid = ", ".join(sorted(choices)) or "(none registered)"
    return MisgenError(f"unknown {kind} {name!r}; valid choices: {valid}")
