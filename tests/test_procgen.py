"""procgen backend: state parsing and edits, moved goals, splits, oracles.

Skipped as a whole where the ``misgen[procgen]`` extra is not installed. Registry-wide checks
(env checker, determinism, level seeds in their split, Gymnasium ids) run in tests/test_envs.py.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("procgen")

from misgen.environments import get_env  # noqa: E402
from misgen.environments.gridpath import distance_field, greedy_actions  # noqa: E402
from misgen.environments.procgen_backend.coinrun import (  # noqa: E402
    COIN,
    END,
    CoinRunRules,
    ProcgenCoinRunConfig,
    coin_candidates,
)
from misgen.environments.procgen_backend.maze import (  # noqa: E402
    CHEESE,
    CORNER,
    MOVE_ACTIONS,
    MOVES,
    WALL,
    maze_bounds,
)
from misgen.environments.procgen_backend.state import (  # noqa: E402
    SPACE,
    StateError,
    check_compatible,
    parse_state,
)
from misgen.environments.procgen_backend.vector import (  # noqa: E402
    ProcgenVectorEnv,
    StateIO,
    make_gym3,
    procgen_kwargs,
)
from misgen.environments.spec import Split  # noqa: E402
from misgen.errors import MisgenError  # noqa: E402

COINRUN, MAZE = "procgen-coinrun-shift", "procgen-maze-cheese"


def _raw(game: str, seed: int = 0, start: int = 0, levels: int = 1000, mode: str = "hard"):
    kwargs = {"num_levels": levels, "start_level": start, "distribution_mode": mode, "num_threads": 0}
    env = make_gym3(game, 1, seed, kwargs)
    return env, StateIO(env)


def _finished(info) -> np.ndarray:
    if "_final_info" not in info:
        return np.zeros(len(info["level_seed"]), bool)
    return np.asarray(info["_final_info"], bool)


def _run(env, policy, episodes: int, max_steps: int = 20_000) -> list[dict]:
    """Step ``env`` with ``policy(env)`` until ``episodes`` episodes finished; their final infos."""
    out: list[dict] = []
    for _ in range(max_steps):
        _, reward, term, trunc, info = env.step(policy(env))
        for i in np.flatnonzero(_finished(info)):
            fin = info["final_info"]
            out.append(
                {
                    "outcome": str(fin["outcome"][i]),
                    "reward": float(reward[i]),
                    "return": float(fin["intended_return"][i]),
                    "terminated": bool(term[i]),
                    "reached": {g: bool(v[i]) for g, v in fin["goal_reached"].items()},
                    "goal_pos": {g: v[i].copy() for g, v in fin["goal_pos"].items()},
                    "agent_pos": fin["agent_pos"][i].copy(),
                }
            )
        if len(out) >= episodes:
            return out[:episodes]
    raise AssertionError(f"only {len(out)} episodes finished in {max_steps} steps")


def _cell_mask(like: np.ndarray, y: int, x: int) -> np.ndarray:
    mask = np.zeros_like(like)
    mask[0, y, x] = True
    return mask


# State format ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("game", ["coinrun", "maze", "heist"])
def test_state_parses_and_round_trips_byte_identical(game):
    env, io = _raw(game, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.act(rng.integers(0, 15, 1).astype(np.int32))
    raw = io.get(0)
    state = parse_state(raw)
    assert state.game == game and state.grid.shape == (state.height, state.width)
    assert 0 <= state.step["current_level_seed"] < 1000
    assert state.options["level_seed_high"] == 1000 and state.step["cur_time"] == 5
    io.set(0, state, state)
    assert io.get(0) == raw


def test_malformed_states_are_refused_before_reaching_procgen():
    env, io = _raw("coinrun")
    state = parse_state(io.get(0))
    with pytest.raises(StateError, match="truncated|end marker|unexpected"):
        parse_state(state.raw[:-8])
    with pytest.raises(StateError, match="end marker"):
        parse_state(state.raw[:-4] + b"\0\0\0\0")
    with pytest.raises(StateError, match="not coinrun cell types"):
        state.with_cells([5], [5], [51])
    with pytest.raises(StateError, match="outside"):
        state.with_cells([state.width], [0], [SPACE])
    corrupt = bytearray(state.raw)
    corrupt[state.grid_offset : state.grid_offset + 4] = (999).to_bytes(4, "little")
    with pytest.raises(StateError, match="unknown cell types"):
        parse_state(bytes(corrupt))


def test_states_of_differently_configured_envs_are_not_exchanged():
    _, io_a = _raw("coinrun", levels=1000)
    _, io_b = _raw("coinrun", levels=500)
    _, io_c = _raw("coinrun", levels=1000, mode="easy")
    a = parse_state(io_a.get(0))
    check_compatible(parse_state(_raw("coinrun", seed=9, levels=1000)[1].get(0)), a)  # other rand_seed: fine
    for other in (io_b, io_c):
        with pytest.raises(StateError, match="does not match"):
            check_compatible(parse_state(other.get(0)), a)


def test_with_cells_changes_exactly_the_edited_cells():
    _, io = _raw("coinrun")
    state = parse_state(io.get(0))
    ((ey, ex),) = np.argwhere(state.grid == 1)
    cy, cx = np.argwhere(coin_candidates(state, int(ex)))[0]
    edited = state.with_cells([ex, cx], [ey, cy], [SPACE, 1])
    changed = np.argwhere(edited.grid != state.grid)
    assert sorted(map(tuple, changed)) == sorted([(ey, ex), (cy, cx)])
    diff = np.flatnonzero(np.frombuffer(edited.raw, np.uint8) != np.frombuffer(state.raw, np.uint8))
    assert diff.min() >= state.grid_offset and diff.max() < state.grid_offset + 4 * state.width * state.height


# Moved goals ----------------------------------------------------------------------------------------
def test_maze_cheese_edit_moves_the_reward():
    """Walking onto procgen's own cheese cell gives nothing once the cheese is moved; the new cell pays 10."""
    env, io = _raw("maze", seed=1, start=50, levels=1)
    state = parse_state(io.get(0))
    ((oy, ox),) = np.argwhere(state.grid == 2)
    margin, _ = maze_bounds(state)
    free = (state.grid != WALL)[None]
    d_start = distance_field(_cell_mask(free, margin, margin), free)[0]
    d_old = distance_field(_cell_mask(free, int(oy), int(ox)), free)[0]
    off_path = free[0] & (d_start + d_old > d_start[oy, ox])  # not between the start and the old cheese
    off_path[margin, margin] = False
    ny, nx = (int(v) for v in np.argwhere(off_path)[np.argmax(d_old[off_path])])
    edited = state.with_cells([ox, nx], [oy, ny], [SPACE, 2])
    io.set(0, edited, state)

    def walk_to(cy: int, cx: int) -> list[tuple[float, bool]]:
        trace = []
        for _ in range(200):
            s = parse_state(io.get(0), check_cells=False)
            ay, ax = int(s.agent["y"]), int(s.agent["x"])
            if (ay, ax) == (cy, cx):
                return trace
            walls = (s.grid != WALL)[::-1][None]
            target = np.zeros_like(walls)
            target[0, s.height - 1 - cy, cx] = True
            move = greedy_actions(distance_field(target, walls), np.array([[s.height - 1 - ay, ax]]), MOVES)
            env.act(MOVE_ACTIONS[move].astype(np.int32))
            rew, _, first = env.observe()
            trace.append((float(rew[0]), bool(first[0])))
            if first[0]:
                return trace
        raise AssertionError("did not arrive")

    to_old = walk_to(int(oy), int(ox))
    assert to_old and all(r == 0 and not f for r, f in to_old)  # standing on the old cheese cell: nothing
    to_new = walk_to(ny, nx)
    assert to_new[-1] == (10.0, True) and all(r == 0 for r, _ in to_new[:-1])


def test_coinrun_moved_coin_is_drawn_where_it_was_moved():
    """The frame with the coin moved in front of the agent differs only there, in coin gold."""
    for level in range(40):
        env, io = _raw("coinrun", seed=0, start=level, levels=1)
        state = parse_state(io.get(0))
        ((ey, ex),) = np.argwhere(state.grid == 1)
        near = np.argwhere(coin_candidates(state, int(ex))[:, :8])
        if len(near):
            break
    else:
        pytest.fail("no level with a coin cell in view of the start")
    cy, cx = near[0]
    edited = state.with_cells([ex, cx], [ey, cy], [SPACE, 1])
    frames = {}
    for name, s in (("moved", edited), ("original", state)):
        io.set(0, s, state)
        frames[name] = env.observe()[1]["rgb"][0].astype(int)
    diff = (frames["moved"] != frames["original"]).any(axis=2)
    rows, cols = np.nonzero(diff)
    assert diff.sum() >= 4  # the coin is small: a tile is about 5 px in the 13-tile view
    assert cols.min() > 32 and np.ptp(cols) <= 8 and np.ptp(rows) <= 8  # one spot right of the agent
    r, g, b = (frames["moved"][rows, cols, k] for k in range(3))
    gold = (r > 200) & (g > 150) & (b < 140)
    assert gold.mean() > 0.6  # coin gold, where the original frame shows none
    r0, g0, b0 = (frames["original"][rows, cols, k] for k in range(3))
    assert not ((r0 > 200) & (g0 > 150) & (b0 < 140)).any()


def test_coinrun_test_shift_coin_pays_at_its_new_cell_and_the_old_end_pays_nothing():
    spec = get_env(COINRUN)
    env = spec.make("test-shift", 4, 0)
    _, info = env.reset(seed=0)
    for i, s in enumerate(env.states):  # the state really holds the moved coin, every episode
        (cx, cy), (ex, ey) = env.goal_cells[i]
        assert s.grid[cy, cx] == 1 and s.grid[ey, ex] == SPACE and cx < ex
    coin = _run(env, lambda e: e.oracle_actions(COIN), 6)
    for ep in coin:
        assert ep["outcome"] == COIN and ep["reward"] == 10.0 and ep["terminated"]
        assert not ep["reached"][END]
        assert np.abs(ep["agent_pos"] - ep["goal_pos"][COIN]).max() <= 2
    env.reset(seed=1)
    at_end = np.zeros(4, bool)
    for _ in range(600):
        _, reward, term, trunc, info = env.step(env.oracle_actions(END))
        assert not (reward[at_end] > 0).any() and not (term | trunc)[at_end].any()
        at_end |= np.asarray(info["goal_reached"][END]) & ~_finished(info)
        if at_end.sum() >= 2:
            break
    assert at_end.sum() >= 2, "the end oracle reached the end in fewer than 2 of 4 levels"
    for _ in range(30):  # standing at the old coin cell: no reward, no termination
        _, reward, term, trunc, _ = env.step(np.where(at_end, 4, env.oracle_actions(END)))
        assert not (reward[at_end] > 0).any() and not (term | trunc)[at_end].any()


def test_coinrun_train_keeps_the_coin_at_the_end_and_the_knob_moves_a_share():
    spec = get_env(COINRUN)
    env = spec.make("train", 16, 0)
    env.reset(seed=0)
    assert (env.goal_cells[:, 0] == env.goal_cells[:, 1]).all()
    env = spec.make("train", 64, 0, {"coin_random_fraction": 0.5})
    env.reset(seed=0)
    moved = (env.goal_cells[:, 0] != env.goal_cells[:, 1]).any(axis=1)
    assert 16 <= moved.sum() <= 48


def test_edits_depend_only_on_the_level_seed():
    spec = get_env(COINRUN)
    a, b = spec.make("test-shift", 8, 0), spec.make("test-shift", 8, 5)
    a.reset(seed=0)
    b.reset(seed=5)
    cells = {}
    for env in (a, b):
        for seed, cell in zip(env.level_seeds, env.goal_cells[:, 0], strict=True):
            assert tuple(cells.setdefault(int(seed), tuple(cell))) == tuple(cell)


def test_maze_train_cheese_in_top_right_region_and_test_shift_apart_from_it():
    spec = get_env(MAZE)
    outside = {}
    for split in ("train", "test-shift"):
        env = spec.make(split, 32, 0)
        env.reset(seed=0)
        out = 0
        for i, s in enumerate(env.states):
            margin, dim = maze_bounds(s)
            (x, y), (cx, cy) = env.goal_cells[i]
            assert s.grid[y, x] == 2 and (cx, cy) == (margin + dim - 1,) * 2
            out += min(x, y) < margin + dim - 5
        outside[split] = out
    assert outside["train"] == 0 and outside["test-shift"] >= 8


# Splits ---------------------------------------------------------------------------------------------
def test_split_seed_ranges_become_procgen_level_ranges():
    spec = get_env(MAZE)
    for split in spec.splits.values():
        kw = procgen_kwargs(spec.config_type(**split.kwargs), split)
        assert (kw["start_level"], kw["start_level"] + kw["num_levels"]) == (
            split.seed_start,
            split.seed_stop,
        )
    env = spec.make("test-iid", 8, 0, {"num_levels": 3})
    env.reset(seed=0)
    seen = set()
    for _ in range(40):
        seen |= set(env.level_seeds.tolist())
        env.step(env.oracle_actions(CHEESE))
    assert seen <= {1_000_000, 1_000_001, 1_000_002} and len(seen) >= 2
    with pytest.raises(MisgenError, match="num_levels"):
        spec.make("train", 1, 0, {"num_levels": 2_000_000})


# Oracles --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["train", "test-shift"])
def test_maze_oracles(split):
    env = get_env(MAZE).make(split, 8, 0)
    env.reset(seed=0)
    eps = _run(env, lambda e: e.oracle_actions(CHEESE), 24)
    assert all(ep["outcome"] in (CHEESE, CORNER) and ep["return"] == 10.0 for ep in eps)
    env.reset(seed=1)
    eps = _run(env, lambda e: e.oracle_actions(CORNER), 8)
    # The corner oracle reaches the corner unless the cheese lies on its way there.
    assert all(ep["reached"][CORNER] or ep["outcome"] == CHEESE for ep in eps)
    if split == "test-shift":  # in training the cheese sits near the corner, mostly on the way
        assert sum(ep["outcome"] == CORNER for ep in eps) >= 2


def test_coinrun_oracle_fast():
    env = get_env(COINRUN).make("test-shift", 8, 0)
    env.reset(seed=0)
    eps = _run(env, lambda e: e.oracle_actions(COIN), 8)
    assert sum(ep["outcome"] == COIN for ep in eps) >= 7


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "test-shift"])
def test_coinrun_intended_oracle_succeeds_95_percent(split):
    env = get_env(COINRUN).make(split, 16, 0)
    env.reset(seed=0)
    eps = _run(env, lambda e: e.oracle_actions(COIN), 96)
    assert np.mean([ep["outcome"] == COIN for ep in eps]) >= 0.95


def test_single_env_and_vector_env_share_the_contract():
    spec = get_env(COINRUN)
    env = spec.make_single(spec, spec.split("test-shift"), {})
    obs, info = env.reset(seed=3)
    assert obs.shape == (3, 64, 64) and set(info["goal_pos"]) == {COIN, END}
    for _ in range(1000):
        obs, reward, term, trunc, info = env.step(7)
        if term or trunc:
            assert info["outcome"] in (COIN, END, "died", "timeout")
            break
    env.close()
    rules = CoinRunRules(ProcgenCoinRunConfig(coin_placement="random"))
    venv = ProcgenVectorEnv(spec, Split("one", 2_000_123, 2_000_124), 2, 0, rules)
    venv.reset(seed=0)
    assert (venv.level_seeds == 2_000_123).all()
    assert (venv.goal_cells[0] == venv.goal_cells[1]).all()
