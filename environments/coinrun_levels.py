"""Procedural coinrun-shift levels, generated for a whole batch at once from their level seeds.

A level is a left-to-right sequence of segments after a 3-column start platform and before a
3-column end platform, walled at both ends. Each segment is one of:

* **flat**: 2-4 columns of ground, its height 2 below to 2 above the previous one;
* **pit**: 1 to ``max_pit`` columns without ground, then a 2-4 column landing at most 1 above and
  3 below the take-off height;
* **obstacle**: 3-5 columns of flat ground with, at its second column, a crate stack (1-2 wide,
  1-2 high) or a wall (1 wide, 3 high);
* **enemy**: ``enemy_span + 3`` flat columns whose columns 1..span an enemy patrols.

The limits are what the physics can always cross (a jump rises 3 cells and clears 3 columns), so
every level is solvable by construction; tests confirm it with the exact planner. Segments are
drawn with counter-based randomness (``levelrng``) keyed by (level seed, segment index), for all
levels and segments at once with array operations, never a loop over levels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from misgen.environments.levelrng import hash64
from misgen.environments.native import BatchState
from misgen.environments.platformer_physics import Physics

if TYPE_CHECKING:
    from misgen.environments.coinrun_shift import CoinRunShiftConfig

AIR, GROUND, CRATE, WALL = 0, 1, 2, 3
FLAT, PIT, OBSTACLE, ENEMY = range(4)
PLATFORM = 4  # start and end platforms are this many columns from the level's edge (incl. wall)


@dataclass(frozen=True)
class Level(BatchState):
    """A batch of generated levels (see :class:`~.coinrun_shift.CoinRunState` for the fields)."""

    kind: np.ndarray  # (N, H, W) int8
    start: np.ndarray  # (N, 2)
    end: np.ndarray  # (N, 2)
    enemy_row: np.ndarray  # (N, E)
    enemy_lo: np.ndarray
    enemy_offset: np.ndarray
    enemy_active: np.ndarray


def _field(data: np.ndarray, byte: int, m: int | np.ndarray) -> np.ndarray:
    """An integer in [0, m) from byte ``byte`` of each hash (``data``: its bytes, last axis 8)."""
    return (data[..., byte].astype(np.int64) * m) >> 8


@functools.cache
def _walk_table(gmax: int) -> np.ndarray:
    """``table[g, d + 3] = clip(g + d, 1, gmax)`` for heights 0..gmax and steps -3..2."""
    return np.clip(np.arange(gmax + 1)[:, None] + np.arange(-3, 3)[None, :], 1, gmax)


def clipped_walk(g0: np.ndarray, delta: np.ndarray, gmax: int) -> np.ndarray:
    """Heights ``g_k = clip(g_{k-1} + delta_k, 1, gmax)`` from ``g_{-1} = g0``, (N,) x (N, K) -> (N, K).

    The clipping makes this sequential: one table lookup per segment for the whole batch (a
    log-depth prefix composition was measured slower at these sizes).
    """
    walk = _walk_table(gmax)
    g = np.empty(delta.shape, np.int64)
    prev = g0
    for k in range(delta.shape[1]):
        prev = walk[prev, delta[:, k] + 3]
        g[:, k] = prev
    return g


def generate_levels(seeds: np.ndarray, cfg: CoinRunShiftConfig, physics: Physics) -> Level:
    """Levels for ``seeds``; each depends only on its own seed and the config.

    All segments of all levels are drawn at once from one 64-bit hash per (seed, segment); only
    the ground-height recurrence (each height is clipped relative to the previous one) loops, over
    segments. Columns then look up the segment they fall in.
    """
    n, h, w = len(seeds), cfg.height, cfg.width
    gmax = h - 6  # highest ground; leaves room for a 2-cell obstacle and a 3-cell jump above it
    top_max = h - 4  # ground + obstacle never higher than this
    limit = w - PLATFORM
    e_max = max(cfg.max_enemies, 1)
    enemy_len = physics.enemy_span + 3
    # Every segment is at least 2 columns long, so this many segments always fill the level.
    segments = (limit - PLATFORM + 1) // 2 + 1
    # One 64-bit hash per (seed, segment) holds all of a segment's draws, one byte each (a last
    # column serves the level-wide draws): hashing dominates the cost of small resets.
    hashes = hash64(seeds[:, None], 2, np.arange(segments + 1)[None, :])
    data = hashes.astype("<u8").view(np.uint8).reshape(n, segments + 1, 8)  # byte 0 = lowest
    h1, level_hash = hashes[:, :segments], data[:, segments]
    d1 = data[:, :segments]

    u = (h1 & np.uint64(0xFFFF)).astype(np.float64) / 65536.0
    p_enemy, p_pit = cfg.enemy_prob, cfg.enemy_prob + cfg.pit_prob
    kind = np.where(
        u < p_enemy, ENEMY, np.where(u < p_pit, PIT, np.where(u < p_pit + cfg.obstacle_prob, OBSTACLE, FLAT))
    )
    drawn = kind == ENEMY
    kind = np.where(drawn & (np.cumsum(drawn, axis=1) > cfg.max_enemies), FLAT, kind)
    run = 2 + _field(d1, 2, 3)  # flat / landing length 2..4
    step = _field(d1, 3, 5)  # height step 0..4, centred below
    pit_w = np.where(kind == PIT, 1 + _field(d1, 4, cfg.max_pit), 0)
    length = np.where(kind == ENEMY, enemy_len, np.where(kind == OBSTACLE, 3 + _field(d1, 5, 3), pit_w + run))
    delta = np.where(kind == FLAT, step - 2, np.where(kind == PIT, step - 3, 0))

    g0 = 1 + _field(level_hash, 0, min(3, gmax))
    g = clipped_walk(g0, delta, gmax)

    crate_byte = d1[..., 6].astype(np.int64)
    is_crate = crate_byte < 154  # 60% crates, 40% walls; the low bits size the crate stack
    width = np.where(is_crate, 1 + (crate_byte & 1), 1)
    height = np.minimum(np.where(is_crate, 1 + ((crate_byte >> 1) & 1), 3), top_max - g)
    start = PLATFORM + np.cumsum(length, axis=1) - length

    cols = np.arange(w)
    seg = np.clip((cols[None, :, None] >= start[:, None, :]).sum(axis=2) - 1, 0, segments - 1)

    rows_n = np.arange(n)[:, None]

    def at(a: np.ndarray) -> np.ndarray:
        return a[rows_n, seg]

    offset = cols[None, :] - at(start)
    seg_kind, seg_g = at(kind), at(g)
    in_body = (cols >= PLATFORM) & (cols < limit)
    ground = np.where((seg_kind == PIT) & (offset < at(pit_w)), 0, seg_g)
    ground = np.where(in_body, ground, 0)
    ground[:, 1:PLATFORM] = g0[:, None]
    ground[:, limit : w - 1] = seg_g[:, limit - 1 : limit]
    obstacle = in_body & (seg_kind == OBSTACLE) & (offset >= 1) & (offset < 1 + at(width))
    extra = np.where(obstacle, at(height), 0)
    extra_kind = np.where(obstacle, np.where(at(is_crate), CRATE, WALL), AIR)

    # Enemies patrol columns start+1 .. start+span of their segment, on its ground.
    # The first e_max enemy segments that fit, in order (a stable sort puts them first).
    enemy = (kind == ENEMY) & (start + enemy_len <= limit)
    first = np.argsort(~enemy, axis=1, kind="stable")[:, :e_max]
    real = np.arange(e_max)[None, :] < min(cfg.max_enemies, first.shape[1])
    if first.shape[1] < e_max:  # more enemy slots than segments: pad with inactive slots
        first = np.pad(first, ((0, 0), (0, e_max - first.shape[1])))
    active = enemy[rows_n, first] & real
    enemy_row = h - 1 - g[rows_n, first]
    enemy_lo = start[rows_n, first] + 1
    enemy_offset = _field(d1, 7, physics.period)[rows_n, first]

    rows = np.arange(h)[None, :, None]
    surface = h - ground[:, None, :]  # first ground row per column (h for pits)
    kind_grid = np.where(rows >= surface, GROUND, AIR).astype(np.int8)
    stacked = (rows >= surface - extra[:, None, :]) & (rows < surface)
    kind_grid = np.where(stacked, extra_kind[:, None, :], kind_grid).astype(np.int8)
    kind_grid[:, :, 0] = WALL
    kind_grid[:, :, w - 1] = WALL

    start_cell = np.stack([h - 1 - ground[:, 2], np.full(n, 2)], axis=1)
    end_cell = np.stack([h - 1 - ground[:, w - 2], np.full(n, w - 2)], axis=1)
    return Level(kind_grid, start_cell, end_cell, enemy_row, enemy_lo, enemy_offset, active)
