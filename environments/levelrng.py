"""Counter-based randomness for level generation: level content as a pure function of its seed.

Procedural levels must depend only on their level seed (so level 17 is the same level whatever batch
it is generated in, and split ranges mean something), yet generating a batch must not loop over
envs in Python. A stateful generator per env would force that loop; instead every random number is
``hash(level_seed, salt...)``, computed for the whole batch at once with the SplitMix64 finalizer.
"""

from __future__ import annotations

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer: a bijective avalanche on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash64(seeds: np.ndarray, *salt: int | np.ndarray) -> np.ndarray:
    """A uint64 per seed, independent across distinct ``salt`` tuples."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(seeds).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
        for s in salt:
            h = _mix(h ^ (np.asarray(s).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    return h


def uniform(seeds: np.ndarray, *salt: int | np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1), one per seed (broadcast with array salts)."""
    return (hash64(seeds, *salt) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def integers(seeds: np.ndarray, high: int | np.ndarray, *salt: int | np.ndarray) -> np.ndarray:
    """Integers in [0, high) per seed; ``high`` may be an array (must be >= 1)."""
    u = uniform(seeds, *salt)
    return np.minimum((u * high).astype(np.int64), np.asarray(high) - 1)


def choose_cells(mask: np.ndarray, seeds: np.ndarray, *salt: int) -> np.ndarray:
    """Pick one True cell uniformly per row of a batched mask (N, H, W) -> (N, 2) [row, col].

    Rows with no True cell raise: callers guarantee a candidate exists.
    """
    n = mask.shape[0]
    flat = mask.reshape(n, -1)
    counts = flat.sum(axis=1)
    if (counts == 0).any():
        raise ValueError("choose_cells: a level has no candidate cell")
    k = integers(seeds, counts, *salt)
    idx = np.argmax(flat.cumsum(axis=1) > k[:, None], axis=1)
    return np.stack(np.divmod(idx, mask.shape[2]), axis=1)
