"""Discrete side-view platformer physics and an exact planner over it, for coinrun-shift.

The game is played on a grid of solid cells. The agent occupies one cell and has an integer
vertical velocity ``vy`` (negative is up). One step:

1. A jump action while standing on solid ground sets ``vy = -jump_speed``.
2. The horizontal part of the action moves one column unless the target cell is solid.
3. Gravity, unless rising: ``vy = 0`` on solid ground, else ``vy + 1`` capped at ``max_fall``
   (so walking off a ledge drops at once and one-column gaps cannot be run over).
4. The agent moves ``|vy|`` cells vertically, one cell at a time, stopping at solid cells.
5. A rising agent slows by one (or stops if it bumped its head).

With the default jump speed 2 a jump rises 3 cells (2, then 1) and lands 4 steps later on flat
ground (falling 1, then 2), so walls up to 3 cells and pits up to 3 columns can be crossed; air
control lets the agent shorten a jump. Enemies patrol ``span`` cells of one row back and forth, one cell per step,
so their positions are a function of the step count: ``lo + tri((t + offset) mod period)``.
The agent dies when an enemy ends a step on any cell the agent swept through that step, when they
swap cells, or when the agent falls to the bottom row (pits have no floor).

Everything is vectorized over arbitrary batch shapes: the same :func:`advance` moves a batch of
real agents in the environment and every (state, action) pair of a level in :func:`plan_distances`,
so the planner can never disagree with the game.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOOP, LEFT, RIGHT, JUMP, JUMP_LEFT, JUMP_RIGHT = range(6)
ACTION_NAMES = ("noop", "left", "right", "jump", "jump-left", "jump-right")
DX = np.array([0, -1, 1, 0, -1, 1], dtype=np.int64)
JUMPS = np.array([False, False, False, True, True, True])
UNREACHABLE = np.iinfo(np.int16).max
# Order in which a forward search tries actions, so that its shortest plans prefer moving on, then
# waiting, then jumping (the exact planner's oracle breaks ties the same way).
PLAN_ORDER = np.array([RIGHT, NOOP, JUMP_RIGHT, JUMP, LEFT, JUMP_LEFT])


@dataclass(frozen=True)
class Physics:
    """Movement constants.

    Attributes:
        jump_speed: upward speed a jump starts with (cells per step).
        max_fall: terminal falling speed (cells per step).
        enemy_span: cells an enemy patrols (>= 2); its period is ``2 * (enemy_span - 1)`` steps.
    """

    jump_speed: int = 2
    max_fall: int = 2
    enemy_span: int = 3

    @property
    def period(self) -> int:
        return 2 * (self.enemy_span - 1)

    @property
    def speeds(self) -> int:
        """Number of distinct vertical velocities, ``-jump_speed .. max_fall``."""
        return self.jump_speed + self.max_fall + 1

    @property
    def substeps(self) -> int:
        return max(self.jump_speed, self.max_fall)


@dataclass(frozen=True)
class Move:
    """Result of one step of physics for a batch (all arrays share the batch shape).

    ``sweep_rows`` holds, for each sub-step, the row the agent occupied in column ``c`` (first the
    row it had before moving vertically); enemies and pickups touch every one of those cells.
    """

    r: np.ndarray
    c: np.ndarray
    vy: np.ndarray
    sweep_rows: np.ndarray  # (substeps + 1, *batch)


def padded(solid: np.ndarray) -> np.ndarray:
    """``solid`` with a one-cell solid border, so that lookups one step outside need no clipping:
    the level is a closed box (pits end at the bottom row, where the agent dies)."""
    n, h, w = solid.shape
    out = np.ones((n, h + 2, w + 2), dtype=bool)
    out[:, 1:-1, 1:-1] = solid
    return out


def advance(
    solid: np.ndarray,
    e: np.ndarray,
    r: np.ndarray,
    c: np.ndarray,
    vy: np.ndarray,
    action: np.ndarray,
    physics: Physics,
) -> Move:
    """Apply one step of physics (see the module docstring) to agents in levels ``solid[e]``.

    Agents are always inside their level, so every lookup is at most one cell outside it.
    """
    box = padded(solid)

    def solid_at(rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
        return box[e, rr + 1, cc + 1]

    action = np.asarray(action, dtype=np.int64)
    grounded = solid_at(r + 1, c)
    vy = np.where(JUMPS[action] & grounded, -physics.jump_speed, vy)
    c1 = c + DX[action]
    c = np.where(solid_at(r, c1), c, c1)
    # Gravity acts before a non-rising agent moves, so walking off a ledge drops at once.
    vy = np.where(vy >= 0, np.where(solid_at(r + 1, c), 0, np.minimum(vy + 1, physics.max_fall)), vy)
    direction = np.sign(vy)
    remaining = np.abs(vy)
    blocked = np.zeros(np.shape(r), dtype=bool)
    rows = [r]
    for _ in range(physics.substeps):
        go = (remaining > 0) & ~blocked
        nr = r + direction
        hit = go & solid_at(nr, c)
        blocked |= hit
        r = np.where(go & ~hit, nr, r)
        remaining = remaining - 1
        rows.append(r)
    rising = np.where(blocked, 0, vy + 1)  # a bumped head stops the rise
    vy_next = np.where(vy < 0, rising, np.where(solid_at(r + 1, c), 0, vy))
    return Move(r=r, c=c, vy=vy_next, sweep_rows=np.stack(rows))


def enemy_cols(lo: np.ndarray, offset: np.ndarray, t: np.ndarray | int, physics: Physics) -> np.ndarray:
    """Column of each enemy at step ``t``: a triangle wave over ``lo .. lo + span - 1``."""
    p = physics.period
    phase = (np.asarray(t) + offset) % p
    return lo + np.where(phase < physics.enemy_span, phase, p - phase)


def touches(move: Move, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Whether the agent swept through cell ``(row, col)`` this step (same batch shape)."""
    return ((move.sweep_rows == row[None]) & (move.c == col)[None]).any(axis=0)


def enemy_kills(
    move: Move,
    r0: np.ndarray,
    c0: np.ndarray,
    enemy_row: np.ndarray,
    col_before: np.ndarray,
    col_after: np.ndarray,
    active: np.ndarray,
) -> np.ndarray:
    """Whether an active enemy killed the agent this step.

    Agent arrays have the batch shape ``B``; enemy arrays have shape ``(*B, E)``. An enemy kills
    when its new cell is one the agent swept through, or when agent and enemy swapped cells.
    """
    sweep = move.sweep_rows[..., None]  # (K, *B, 1)
    same_col = (move.c[..., None] == col_after)[None]
    hit = ((sweep == enemy_row[None]) & same_col).any(axis=0)
    swap = (r0[..., None] == enemy_row) & (c0[..., None] == col_after) & (move.c[..., None] == col_before)
    return (active & (hit | swap)).any(axis=-1)


def plan_distances(
    solid: np.ndarray,
    target: np.ndarray,
    enemy_row: np.ndarray,
    enemy_lo: np.ndarray,
    enemy_offset: np.ndarray,
    enemy_active: np.ndarray,
    physics: Physics,
    avoid: np.ndarray | None = None,
    max_iters: int = 1000,
) -> np.ndarray:
    """Exact shortest-path step counts to touch ``target`` from every physics state.

    The state space is ``(row, col, vy, t mod period)``; enemies make the game periodic in ``t``.
    Transitions are computed with :func:`advance` for every state and action at once; distances by
    value iteration (unit cost per step, death absorbing at :data:`UNREACHABLE`).

    Args:
        solid: (n, H, W) bool levels.
        target: (n, 2) [row, col] cell to touch.
        enemy_row, enemy_lo, enemy_offset, enemy_active: (n, E) enemy patrols.
        physics: the movement constants.
        avoid: (n, 2) cell that the plan must never touch (row -1: none), treated like death.
        max_iters: value-iteration cap (distances longer than this stay unreachable).

    Returns:
        (n, S) int16 distances indexed by :func:`state_index`.
    """
    n = solid.shape[0]
    na = len(DX)
    nxt = transition_table(solid, target, enemy_row, enemy_lo, enemy_offset, enemy_active, physics, avoid)
    s = nxt.shape[1] // na
    goal_idx = s
    nxt = np.moveaxis(nxt.reshape(n, s, na), 2, 1).reshape(n, -1)  # action-major: min over contiguous blocks
    big = np.int16(UNREACHABLE)
    dist = np.full((n, s + 2), big, dtype=np.int16)
    dist[:, goal_idx] = 0
    for _ in range(max_iters):
        best = np.take_along_axis(dist, nxt, axis=1).reshape(n, na, s).min(axis=1)
        new = np.minimum(dist[:, :s], np.minimum(best, big - 1) + 1)
        if np.array_equal(new, dist[:, :s]):
            break
        dist[:, :s] = new
    return dist[:, :s].copy()


def transition_table(
    solid: np.ndarray,
    target: np.ndarray,
    enemy_row: np.ndarray,
    enemy_lo: np.ndarray,
    enemy_offset: np.ndarray,
    enemy_active: np.ndarray,
    physics: Physics,
    avoid: np.ndarray | None = None,
) -> np.ndarray:
    """(n, S * A) next state of every physics state and action, state-major.

    States are indexed by :func:`state_index`; two extra indices are absorbing: ``S`` (``target``
    touched) and ``S + 1`` (death: a pit, an enemy, or touching ``avoid``).
    """
    n, h, w = solid.shape
    v, p, na = physics.speeds, physics.period, len(DX)
    base = h * w * v  # physics states without the enemy phase
    s = base * p
    rr, cc, vv = (a.ravel() for a in np.meshgrid(np.arange(h), np.arange(w), np.arange(v), indexing="ij"))
    shape = (n, base, na)
    e = np.broadcast_to(np.arange(n)[:, None, None], shape)
    r0 = np.broadcast_to(rr[None, :, None], shape)
    c0 = np.broadcast_to(cc[None, :, None], shape)
    vy0 = np.broadcast_to((vv - physics.jump_speed)[None, :, None], shape)
    actions = np.broadcast_to(np.arange(na)[None, None, :], shape)
    # Movement does not depend on the enemy phase: compute it once, then check enemies per phase.
    move = advance(solid, e, r0, c0, vy0, actions, physics)
    lost = move.r >= h - 1
    if avoid is not None:
        lost |= touches(move, avoid[:, None, None, 0], avoid[:, None, None, 1])
    goal = touches(move, target[:, None, None, 0], target[:, None, None, 1])
    moved = state_index(move.r, move.c, move.vy, np.zeros_like(move.r), (h, w), physics)
    goal_idx, dead_idx = s, s + 1
    ex = (slice(None), None, None, slice(None))
    nxt = np.empty((n, base, p, na), dtype=np.int64)
    for phase in range(p):
        before = enemy_cols(enemy_lo, enemy_offset, phase, physics)[ex]
        after = enemy_cols(enemy_lo, enemy_offset, phase + 1, physics)[ex]
        dead = lost | enemy_kills(move, r0, c0, enemy_row[ex], before, after, enemy_active[ex])
        nxt[:, :, phase] = np.where(dead, dead_idx, np.where(goal, goal_idx, moved + (phase + 1) % p))
    return nxt.reshape(n, -1)


def reachable_within(
    solid: np.ndarray,
    start: np.ndarray,
    target: np.ndarray,
    enemy_row: np.ndarray,
    enemy_lo: np.ndarray,
    enemy_offset: np.ndarray,
    enemy_active: np.ndarray,
    physics: Physics,
    max_steps: int,
    avoid: np.ndarray | None = None,
) -> np.ndarray:
    """(n,) whether ``target`` (n, 2) can be touched within ``max_steps`` steps from the standing
    state at cell ``start`` (n, 2) at t = 0, without dying or touching ``avoid`` (n, 2).

    A forward breadth-first search that applies :func:`advance` only to the states it reaches, so
    a yes/no answer from one state costs far less than :func:`plan_distances` over every state
    (level generation uses it to check a placement). States are ``(row, col, vy, t mod period)``.
    """
    levels = (solid, start, target, enemy_row, enemy_lo, enemy_offset, enemy_active)
    return forward_search(*levels, physics, max_steps, avoid=avoid)[0]


def forward_search(
    solid: np.ndarray,
    start: np.ndarray,
    target: np.ndarray,
    enemy_row: np.ndarray,
    enemy_lo: np.ndarray,
    enemy_offset: np.ndarray,
    enemy_active: np.ndarray,
    physics: Physics,
    max_steps: int,
    avoid: np.ndarray | None = None,
    exhaust: bool = False,
    plan: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The breadth-first search of :func:`reachable_within`, with more to tell.

    Args:
        exhaust: keep searching a level after ``target`` is found, and return every cell that a
            surviving step sweeps through before touching ``target`` (the agent's reach).
        plan: return, per level, the actions of a shortest path to ``target`` (-1 after its end,
            all -1 where none). Among equally short paths the search keeps, for each state, the
            first way it was found, trying actions in :data:`PLAN_ORDER` (move on, wait, jump).

    Returns:
        ``found`` (n,) bool, ``touched`` (n, H, W) bool or None, ``actions`` (n, max_steps) or None.
    """
    n, h, w = solid.shape
    na, p = len(DX), physics.period
    size = (
        state_index(
            np.array(h - 1), np.array(w - 1), np.array(physics.max_fall), np.array(p - 1), (h, w), physics
        )
        + 1
    )
    seen = np.zeros((n, int(size)), dtype=bool)
    touched = np.zeros(solid.shape, dtype=bool) if exhaust else None
    parent = np.full((n, int(size)), -1, dtype=np.int64) if plan else None  # state * na + action
    last = np.full(n, -1, dtype=np.int64)  # state * na + action of the step that touched target
    depth = np.zeros(n, dtype=np.int64)
    found = np.zeros(n, dtype=bool)
    rows = np.arange(n)
    r, c = start[:, 0].astype(np.int64), start[:, 1].astype(np.int64)
    vy, phase = np.zeros(n, np.int64), np.zeros(n, np.int64)
    state = state_index(r, c, vy, phase, (h, w), physics)
    seen[rows, state] = True
    actions = PLAN_ORDER[None, :]
    for step in range(max_steps):
        if len(rows) == 0:
            break
        shape = (len(rows), na)
        e = np.broadcast_to(rows[:, None], shape)
        r0, c0 = np.broadcast_to(r[:, None], shape), np.broadcast_to(c[:, None], shape)
        move = advance(
            solid, e, r0, c0, np.broadcast_to(vy[:, None], shape), np.broadcast_to(actions, shape), physics
        )
        before = enemy_cols(enemy_lo[rows], enemy_offset[rows], phase[:, None], physics)[:, None, :]
        after = enemy_cols(enemy_lo[rows], enemy_offset[rows], phase[:, None] + 1, physics)[:, None, :]
        dead = (move.r >= h - 1) | enemy_kills(
            move, r0, c0, enemy_row[rows][:, None, :], before, after, enemy_active[rows][:, None, :]
        )
        if avoid is not None:
            dead |= touches(move, avoid[rows, None, 0], avoid[rows, None, 1])
        hit = touches(move, target[rows, None, 0], target[rows, None, 1]) & ~dead
        if touched is not None:
            ok = ~dead & ~hit
            for k in range(move.sweep_rows.shape[0]):
                touched[e[ok], move.sweep_rows[k][ok], move.c[ok]] = True
        how = state[:, None] * na + PLAN_ORDER[None, :]  # (state, action) that made each move
        first = hit.any(axis=1) & ~found[rows]
        if first.any():
            last[rows[first]] = how[first, np.argmax(hit[first], axis=1)]
            depth[rows[first]] = step + 1
            found[rows[first]] = True
        nxt = state_index(
            move.r, move.c, move.vy, np.broadcast_to((phase[:, None] + 1) % p, shape), (h, w), physics
        )
        live = ~dead & ~hit & (~found[e] | exhaust)
        er, ns, hw = e[live], nxt[live], how[live]
        fresh = ~seen[er, ns]
        key, at = np.unique(er[fresh] * size + ns[fresh], return_index=True)
        rows, state = np.divmod(key, size)
        seen[rows, state] = True
        if parent is not None:
            parent[rows, state] = hw[fresh][at]
        idx, phase = np.divmod(state, p)
        rc, v = np.divmod(idx, physics.speeds)
        r, c = np.divmod(rc, w)
        vy = v - physics.jump_speed
    plans = None
    if parent is not None:
        plans = np.full((n, max_steps), -1, dtype=np.int64)
        link = last.copy()
        for k in range(int(depth.max(initial=0)) - 1, -1, -1):
            on = found & (depth > k)
            plans[on, k] = link[on] % na
            link = np.where(on, parent[np.arange(n), np.maximum(link // na, 0)], link)
    return found, touched, plans


def state_index(
    r: np.ndarray, c: np.ndarray, vy: np.ndarray, phase: np.ndarray, hw: tuple[int, int], physics: Physics
) -> np.ndarray:
    """Flat index of physics state ``(row, col, vy, phase)`` in :func:`plan_distances` tables."""
    h, w = hw
    rc = np.clip(r, 0, h - 1) * w + np.clip(c, 0, w - 1)
    return (rc * physics.speeds + (vy + physics.jump_speed)) * physics.period + phase
