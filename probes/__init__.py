"""Probes: which goal does an agent pursue, how consistently, and what do its internals encode.

Rollouts are collected once (:mod:`.rollout`); probes are registered pure functions over them.
"""

from __future__ import annotations
