"""Parse and edit procgen's serialized game state (procgen-mirror 0.10.7), validated.

procgen's C++ games cannot be changed without recompiling, but every env can be saved and restored
with ``get_state`` / ``set_state``. Moving a goal is therefore a byte edit of that state: parse it,
change a few grid cells, re-parse the result to validate it, and only then hand it back. A malformed
state kills the whole Python process inside the C library (``fassert`` or a segfault), so nothing
unvalidated may reach ``set_state``.

Layout (little-endian int32 / float32, bools as int32, strings as int32 length + raw bytes; read
from procgen/src game.cpp, basic-abstract-game.cpp, entity.cpp, grid.h, randgen.cpp, vecgame.cpp;
see /work/shared/notes/procgen-state.md):

    version (0) | game name | 17 option ints | level-seed RNG | game RNG | 15 step fields |
    grid_size | entity count + 124-byte records | 19 scalars | asset RNG | 9 view fields |
    grid w, h, n, n cells (index y * w + x, y = 0 at the bottom) | game tail | 0xCAFECAFE

Each RNG is an int plus the mt19937 state as a decimal string, so offsets differ between states and
every state is parsed from the start (a few ``struct`` reads; the strings are skipped, not decoded).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from misgen.errors import MisgenError

SERIALIZE_VERSION = 0
END_OF_BUFFER = 0xCAFECAFE

OPTION_NAMES = (
    "paint_vel_info",
    "use_generated_assets",
    "use_monochrome_assets",
    "restrict_themes",
    "use_backgrounds",
    "center_agent",
    "debug_mode",
    "distribution_mode",
    "use_sequential_levels",
    "use_easy_jump",
    "plain_assets",
    "physics_mode",
    "grid_step",
    "level_seed_low",
    "level_seed_high",
    "game_type",
    "game_n",
)
STEP_FORMAT = "<fiiiiiiiiifiiii"
STEP_NAMES = (
    "reward",
    "done",
    "level_complete",
    "action",
    "timeout",
    "current_level_seed",
    "prev_level_seed",
    "episodes_remaining",
    "episode_done",
    "last_reward_timer",
    "last_reward",
    "default_action",
    "fixed_asset_seed",
    "cur_time",
    "is_waiting_for_step",
)
_F, _I = "<f4", "<i4"
ENTITY_DTYPE = np.dtype(
    [
        ("x", _F), ("y", _F), ("vx", _F), ("vy", _F), ("rx", _F), ("ry", _F),
        ("type", _I), ("image_type", _I), ("image_theme", _I), ("render_z", _I),
        ("will_erase", _I), ("collides_with_entities", _I),
        ("collision_margin", _F), ("rotation", _F), ("vrot", _F),
        ("is_reflected", _I), ("fire_time", _I), ("spawn_time", _I), ("life_time", _I),
        ("expire_time", _I), ("use_abs_coords", _I),
        ("friction", _F), ("smart_step", _I), ("avoids_collisions", _I), ("auto_erase", _I),
        ("alpha", _F), ("health", _F), ("theta", _F), ("grow_rate", _F), ("alpha_decay", _F),
        ("climber_spawn_x", _F),
    ]
)  # fmt: skip
assert ENTITY_DTYPE.itemsize == 124
NUM_SCALARS_AFTER_ENTITIES = 19
NUM_VIEW_FIELDS = 9
PLAYER = 0
SPACE = 100

# Grid cell values each supported game may hold (validation of edits and of parsed states).
GAME_CELLS: dict[str, frozenset[int]] = {
    # goal 1, empty 100, ground 15/16, lava 17/18, enemy barrier 19 (coinrun.cpp)
    "coinrun": frozenset({1, 15, 16, 17, 18, 19, SPACE}),
    # cheese 2, wall 51, empty 100 (maze.cpp, object-ids.h)
    "maze": frozenset({2, 51, SPACE}),
    "heist": frozenset({51, SPACE}),
}
_CELL_LUT = {game: np.isin(np.arange(256), sorted(cells)) for game, cells in GAME_CELLS.items()}
FIXED_TAILS = {"coinrun": 28, "maze": 8}  # bytes after the grid, before the end marker
MAX_ENTITIES = 100_000


class StateError(MisgenError):
    """A procgen state that does not parse, or an edit that would corrupt it."""


class _Reader:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.offset = 0

    def need(self, n: int) -> None:
        if n < 0 or self.offset + n > len(self.raw):
            raise StateError(
                f"procgen state truncated at byte {self.offset} (needs {n} more of {len(self.raw)})"
            )

    def int(self) -> int:
        self.need(4)
        (v,) = struct.unpack_from("<i", self.raw, self.offset)
        self.offset += 4
        return v

    def skip(self, n: int) -> int:
        self.need(n)
        start = self.offset
        self.offset += n
        return start

    def string(self) -> bytes:
        n = self.int()
        start = self.skip(n)
        return self.raw[start : start + n]


@dataclass(frozen=True)
class ProcgenState:
    """A parsed procgen state: the raw bytes plus the offsets and values misgen needs.

    Arrays are read-only views of ``raw``; edits go through :meth:`with_cells`, which returns a
    new, re-validated state.

    Attributes:
        raw: the serialized state, exactly as ``get_state`` returned it.
        game: procgen game name (``coinrun``, ``maze``, ``heist``).
        options: the 17 option ints (center_agent, distribution_mode, level_seed_low, ...).
        step: the 15 step / episode fields (reward, level_complete, timeout, current_level_seed,
            cur_time, ...).
        entities: structured array of entity records (x, y in world units, y up; type; ...).
        width, height: grid size in cells.
        grid_offset: byte offset of the first grid cell.
        tail: the game's own fields after the grid (e.g. maze_dim, world_dim for maze).
    """

    raw: bytes
    game: str
    options: dict[str, int]
    step: dict[str, float | int]
    entities: np.ndarray
    width: int
    height: int
    grid_offset: int
    tail: dict[str, Any]
    options_offset: int

    @property
    def grid(self) -> np.ndarray:
        """(height, width) int32 cells indexed ``[y, x]``, y = 0 at the bottom (read-only)."""
        return np.frombuffer(
            self.raw, dtype="<i4", count=self.width * self.height, offset=self.grid_offset
        ).reshape(self.height, self.width)

    @property
    def agent(self) -> np.void:
        """The player entity record."""
        idx = np.flatnonzero(self.entities["type"] == PLAYER)
        return self.entities[idx[0]]

    @property
    def options_bytes(self) -> bytes:
        """The option block but ``game_n`` (the env's index in its batch, used only in a log
        message): two states may be exchanged only if these bytes are equal."""
        return self.raw[self.options_offset : self.options_offset + 4 * (len(OPTION_NAMES) - 1)]

    def with_cells(self, xs: np.ndarray, ys: np.ndarray, values: np.ndarray) -> ProcgenState:
        """A new state with grid cells ``(x, y)`` set to ``values``, validated before return.

        Raises:
            StateError: a cell is out of the grid or a value is not a cell type of this game.
        """
        xs, ys, values = (np.atleast_1d(np.asarray(a, dtype=np.int64)) for a in (xs, ys, values))
        if not (len(xs) == len(ys) == len(values)):
            raise StateError("with_cells: xs, ys and values must have the same length")
        if ((xs < 0) | (xs >= self.width) | (ys < 0) | (ys >= self.height)).any():
            raise StateError(f"with_cells: cell outside the {self.width}x{self.height} grid")
        allowed = GAME_CELLS[self.game]
        bad = sorted({int(v) for v in values} - allowed)
        if bad:
            raise StateError(f"with_cells: values {bad} are not {self.game} cell types {sorted(allowed)}")
        buf = bytearray(self.raw)
        cells = np.frombuffer(buf, dtype="<i4", count=self.width * self.height, offset=self.grid_offset)
        cells[ys * self.width + xs] = values
        edited = parse_state(bytes(buf))
        if edited.options_bytes != self.options_bytes or len(edited.raw) != len(self.raw):
            raise StateError("with_cells: the edit changed more than grid cells")
        return edited


def parse_state(raw: bytes, check_cells: bool = True) -> ProcgenState:
    """Parse and validate a state from ``get_state``.

    Validation: known version, a supported game, sane entity and grid sizes, every grid cell a
    known cell type of that game (unless ``check_cells`` is off, for read-only use of states the
    env itself produced), a player entity, the exact tail length, and the end marker. A state that
    passes can be handed to ``set_state`` of an env with the same options.

    Raises:
        StateError: on any mismatch (never a crash).
    """
    r = _Reader(raw)
    version = r.int()
    if version != SERIALIZE_VERSION:
        raise StateError(f"procgen state version {version}, expected {SERIALIZE_VERSION}")
    game = r.string().decode("ascii", errors="replace")
    if game not in GAME_CELLS:
        raise StateError(
            f"procgen game {game!r} is not supported; supported: {', '.join(sorted(GAME_CELLS))}"
        )
    options_offset = r.skip(4 * len(OPTION_NAMES))
    options = dict(
        zip(OPTION_NAMES, struct.unpack_from(f"<{len(OPTION_NAMES)}i", raw, options_offset), strict=True)
    )
    for _ in range(2):  # level-seed RNG, game RNG: is_seeded + mt19937 state string
        r.int()
        r.string()
    step_offset = r.skip(struct.calcsize(STEP_FORMAT))
    step = dict(zip(STEP_NAMES, struct.unpack_from(STEP_FORMAT, raw, step_offset), strict=True))
    grid_size = r.int()
    count = r.int()
    if not 1 <= count <= MAX_ENTITIES:
        raise StateError(f"procgen state has {count} entities")
    ent_offset = r.skip(count * ENTITY_DTYPE.itemsize)
    entities = np.frombuffer(raw, dtype=ENTITY_DTYPE, count=count, offset=ent_offset)
    if PLAYER not in entities["type"]:
        raise StateError("procgen state has no player entity")
    r.skip(4 * NUM_SCALARS_AFTER_ENTITIES)
    r.int()  # asset RNG
    r.string()
    r.skip(4 * NUM_VIEW_FIELDS)
    width, height, n = r.int(), r.int(), r.int()
    if not (0 < width <= 1024 and 0 < height <= 1024 and n == width * height == grid_size):
        raise StateError(f"procgen grid {width}x{height} with {n} cells (grid_size {grid_size})")
    grid_offset = r.skip(4 * n)
    tail = _parse_tail(game, r)
    if r.offset + 4 != len(raw):
        raise StateError(
            f"procgen state has {len(raw) - r.offset - 4} unexpected bytes before the end marker"
        )
    if struct.unpack_from("<I", raw, r.offset)[0] != END_OF_BUFFER:
        raise StateError("procgen state lacks the end marker")
    state = ProcgenState(raw, game, options, step, entities, width, height, grid_offset, tail, options_offset)
    if check_cells:
        grid = state.grid
        known = (grid >= 0) & (grid < 256)
        known[known] = _CELL_LUT[game][grid[known]]
        if not known.all():
            raise StateError(
                f"procgen {game} grid holds unknown cell types {sorted(set(grid[~known].tolist()))}"
            )
    return state


def _parse_tail(game: str, r: _Reader) -> dict[str, Any]:
    if game == "coinrun":
        start = r.skip(FIXED_TAILS[game])
        names = (
            "last_agent_y",
            "wall_theme",
            "has_support",
            "facing_right",
            "is_on_crate",
            "gravity",
            "air_control",
        )
        return dict(zip(names, struct.unpack_from("<fiiiiff", r.raw, start), strict=True))
    if game == "maze":
        return {"maze_dim": r.int(), "world_dim": r.int()}
    # heist: num_keys, world_dim, has_keys (vector<bool>: count + one int each)
    num_keys, world_dim, count = r.int(), r.int(), r.int()
    if not 0 <= count <= 3:
        raise StateError(f"procgen heist state has {count} key colours")
    return {"num_keys": num_keys, "world_dim": world_dim, "has_keys": [r.int() != 0 for _ in range(count)]}


def check_compatible(state: ProcgenState, reference: ProcgenState) -> None:
    """Refuse to exchange states between envs configured differently (same game and options).

    Every option is compared but ``game_n``, which differs between the envs of one batch and which
    procgen only prints in a warning.
    """
    if state.game != reference.game or state.options_bytes != reference.options_bytes:
        raise StateError(
            f"procgen state of {state.game} {state.options} does not match the env's {reference.game} {reference.options}"
        )
