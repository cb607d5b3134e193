"""misgen: a test suite for goal misgeneralization and deceptive alignment in RL agents."""

from __future__ import annotations

__version__ = "0.1.0"
