"""Seed derivation: one root seed per run, every other seed derived from it.

``derive_seed(root, "env", "train")`` always gives the same integer for the same path of names, and
different names give independent streams (``np.random.SeedSequence`` with hashed name words).
"""

from __future__ import annotations

import hashlib

import numpy as np


def _word(key: str | int) -> int:
    if isinstance(key, int):
        return key & 0xFFFFFFFF
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little")


def derive_seed(root: int, *keys: str | int) -> int:
    """A 31-bit seed derived from ``root`` and a path of names/ints."""
    seq = np.random.SeedSequence([root & 0xFFFFFFFF, *(_word(k) for k in keys)])
    return int(seq.generate_state(1, np.uint32)[0] & 0x7FFFFFFF)


def derive_rng(root: int, *keys: str | int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(root, *keys))
