"""Batched shortest paths on grids, for scripted oracles and probes.

Oracles must pursue exactly one candidate goal using the true state; on grid games that means
following a breadth-first-search distance field. Computing the field for a whole batch at once
(iterated 4-neighbour relaxation) keeps oracles free of per-env Python loops.
"""

from __future__ import annotations

import numpy as np

UNREACHABLE = np.iinfo(np.int32).max // 2
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)  # up, down, left, right


def distance_field(targets: np.ndarray, passable: np.ndarray) -> np.ndarray:
    """BFS distance (in moves) from every cell to the nearest target cell.

    Args:
        targets: (N, H, W) bool, the goal cells.
        passable: (N, H, W) bool, cells the agent may stand on.

    Returns:
        (N, H, W) int32 distances; :data:`UNREACHABLE` where no target can be reached.
    """
    dist = np.where(targets & passable, 0, UNREACHABLE).astype(np.int32)
    big = np.int32(UNREACHABLE)
    for _ in range(targets.shape[1] * targets.shape[2]):
        best = dist.copy()
        best[:, 1:, :] = np.minimum(best[:, 1:, :], dist[:, :-1, :] + 1)
        best[:, :-1, :] = np.minimum(best[:, :-1, :], dist[:, 1:, :] + 1)
        best[:, :, 1:] = np.minimum(best[:, :, 1:], dist[:, :, :-1] + 1)
        best[:, :, :-1] = np.minimum(best[:, :, :-1], dist[:, :, 1:] + 1)
        best = np.where(passable, np.minimum(best, big), big)
        if np.array_equal(best, dist):
            break
        dist = best
    return dist


def greedy_actions(dist: np.ndarray, agent: np.ndarray, moves: np.ndarray = MOVES) -> np.ndarray:
    """The move that most decreases ``dist`` from each agent cell (ties -> first in ``moves``)."""
    n, h, w = dist.shape
    target = agent[:, None, :] + moves[None]
    r = np.clip(target[..., 0], 0, h - 1)
    c = np.clip(target[..., 1], 0, w - 1)
    d = dist[np.arange(n)[:, None], r, c]
    return np.argmin(d, axis=1).astype(np.int64)


def path_length(dist: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Distance field value at one cell per env, (N, 2) -> (N,)."""
    return dist[np.arange(len(cell)), cell[:, 0], cell[:, 1]]
