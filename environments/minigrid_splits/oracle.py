"""Shortest paths with MiniGrid's action semantics, for the scripted oracles.

MiniGrid moves by turning (``left`` / ``right``, one step each) and walking ``forward``; objects
that cannot be overlapped (keys, balls, boxes, closed doors, walls) are acted on from the cell in
front of them. So a plan is a breadth-first search over ``(x, y, direction)`` on the true grid,
which returns the first action of a shortest action sequence. Grids are at most a few hundred
such states, so a plain Python search per env is fast enough for evaluation rollouts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection

import numpy as np
from minigrid.core.actions import Actions
from minigrid.minigrid_env import MiniGridEnv

DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # MiniGrid's DIR_TO_VEC: right, down, left, up
NO_PATH = -1
Cell = tuple[int, int]


def walkable(env: MiniGridEnv, lava_ok: Collection[Cell] = ()) -> np.ndarray:
    """(W, H) bool: cells the agent may walk onto; lava only where listed in ``lava_ok``."""
    walk = np.zeros((env.width, env.height), dtype=bool)
    for j in range(env.height):
        for i in range(env.width):
            obj = env.grid.get(i, j)
            if obj is None:
                walk[i, j] = True
            elif obj.type == "lava":
                walk[i, j] = (i, j) in lava_ok
            else:
                walk[i, j] = obj.can_overlap()
    return walk


def stand_on(cell: Cell) -> set[tuple[int, int, int]]:
    """Search targets: being on ``cell``, any direction."""
    return {(cell[0], cell[1], d) for d in range(4)}


def facing(cell: Cell, walk: np.ndarray) -> set[tuple[int, int, int]]:
    """Search targets: standing on a walkable neighbour of ``cell`` and facing it."""
    out = set()
    for d, (dx, dy) in enumerate(DIRS):
        x, y = cell[0] - dx, cell[1] - dy
        if 0 <= x < walk.shape[0] and 0 <= y < walk.shape[1] and walk[x, y]:
            out.add((x, y, d))
    return out


def first_action(env: MiniGridEnv, walk: np.ndarray, targets: set[tuple[int, int, int]]) -> int | None:
    """First action (left / right / forward) of a shortest path into ``targets``.

    Returns ``None`` when the agent is already in a target state and :data:`NO_PATH` when no
    target can be reached.
    """
    start = (int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir))
    if start in targets:
        return None
    first = {start: NO_PATH}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        x, y, d = state
        dx, dy = DIRS[d]
        succ = [((x, y, (d - 1) % 4), Actions.left), ((x, y, (d + 1) % 4), Actions.right)]
        if walk[x + dx, y + dy]:
            succ.append(((x + dx, y + dy, d), Actions.forward))
        for nxt, action in succ:
            if nxt in first:
                continue
            first[nxt] = int(action) if state == start else first[state]
            if nxt in targets:
                return first[nxt]
            queue.append(nxt)
    return NO_PATH
