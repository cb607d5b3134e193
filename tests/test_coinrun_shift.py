"""coinrun-shift specifics: physics, level generation and solvability, coin placement per split,
rewards vs goal facts, observation window, oracles."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from misgen.agents import get_agent
from misgen.environments import get_env
from misgen.environments.coinrun_levels import clipped_walk
from misgen.environments.coinrun_placement import RUNNERS, dilate, runner_sweeps, search_from_start
from misgen.environments.coinrun_shift import (
    CoinRunShiftConfig,
    CoinRunShiftCore,
    CoinRunState,
    coin_candidates,
)
from misgen.environments.platformer_physics import JUMP, JUMP_RIGHT, NOOP, RIGHT, UNREACHABLE
from misgen.errors import MisgenError
from misgen.probes.rollout import collect

SPEC = get_env("coinrun-shift")


def ascii_state(
    art: list[str], enemies: tuple[tuple[int, int, int], ...] = ()
) -> tuple[CoinRunShiftCore, CoinRunState]:
    """A one-level state from a picture: ``#`` solid, ``A`` agent, ``$`` coin, ``E`` end cell.

    ``enemies`` are (row, leftmost patrol column, phase offset).
    """
    h, w = len(art), len(art[0])
    core = CoinRunShiftCore(CoinRunShiftConfig(height=h, width=w, view=0))
    grid = np.array([list(r) for r in art])
    where = {ch: np.argwhere(grid == ch)[0] for ch in "A$E"}
    e = max(len(enemies), 1)
    rows = np.zeros((1, e), np.int64)
    lo = np.zeros((1, e), np.int64)
    off = np.zeros((1, e), np.int64)
    for j, (r, c, o) in enumerate(enemies):
        rows[0, j], lo[0, j], off[0, j] = r, c, o
    state = CoinRunState(
        kind=(grid == "#")[None].astype(np.int8),
        agent=where["A"][None].astype(np.int64),
        vy=np.zeros(1, np.int64),
        coin=where["$"][None].astype(np.int64),
        end=where["E"][None].astype(np.int64),
        enemy_row=rows,
        enemy_lo=lo,
        enemy_offset=off,
        enemy_active=np.arange(e)[None] < len(enemies),
        reached=np.zeros((1, 2), bool),
        dead=np.zeros(1, bool),
        t=np.zeros(1, np.int64),
        level_seed=np.zeros(1, np.int64),
    )
    return core, state


FLAT = [
    "#..............#",
    "#..............#",
    "#..............#",
    "#..............#",
    "#..............#",
    "#.............$#",
    "#.A...........E#",
    "################",
]


def run(core, state, actions):
    trace = []
    for a in actions:
        state, reward, term, trunc = core.step(state, np.array([a]))
        trace.append((state, float(reward[0]), bool(term[0])))
    return trace


def test_jump_rises_three_cells_and_lands_after_five_steps():
    core, state = ascii_state(FLAT)
    trace = run(core, state, [JUMP_RIGHT, RIGHT, RIGHT, RIGHT, RIGHT, RIGHT])
    rows = [int(s.agent[0, 0]) for s, _, _ in trace]
    cols = [int(s.agent[0, 1]) for s, _, _ in trace]
    assert rows == [4, 3, 4, 6, 6, 6]  # up 2, up 1, down 1, down 2 (landed), run on
    assert cols == [3, 4, 5, 6, 7, 8]
    # Without a jump or over the ground nothing moves vertically; a jump in the air does nothing.
    (s1, _, _), (s2, _, _) = run(core, state, [JUMP, JUMP])
    assert int(s1.agent[0, 0]) == 4 and int(s2.agent[0, 0]) == 3 and int(s2.vy[0]) == 0


def test_walls_of_three_are_climbable_and_of_four_are_not():
    def climb(height: int) -> int:
        art = [list(r) for r in FLAT]
        for r in range(7 - height, 7):
            art[r][4] = "#"
        core, state = ascii_state(["".join(r) for r in art])
        best = 0
        for first in range(4):  # walk up to the wall, then try jumping at each distance
            trace = run(core, state, [RIGHT] * first + [JUMP_RIGHT] + [RIGHT] * 6)
            best = max(best, max(int(s.agent[0, 1]) for s, _, _ in trace))
        return best

    assert climb(3) > 4
    assert climb(4) == 3


def test_pits_kill_and_enemies_kill():
    art = [list(r) for r in FLAT]
    art[7][4] = "."  # a one-column pit
    core, state = ascii_state(["".join(r) for r in art])
    trace = run(core, state, [RIGHT] * 6)
    dead = [s.dead[0] for s, _, _ in trace]
    assert any(dead) and trace[dead.index(True)][2], "falling to the bottom row ends the episode"
    assert core.facts(trace[dead.index(True)][0]).died[0]

    core, state = ascii_state(FLAT, enemies=((6, 5, 0),))  # patrols columns 5..7 of the agent's row
    trace = run(core, state, [RIGHT] * 6)
    assert any(s.dead[0] for s, _, _ in trace)
    # Standing still left of the patrol is safe forever.
    trace = run(core, state, [NOOP] * 12)
    assert not any(s.dead[0] for s, _, _ in trace)


def test_reward_only_for_the_coin_and_the_end_does_not_terminate():
    art = [r.replace("$", ".") for r in FLAT]
    art[3] = "#.....$........#"
    core, state = ascii_state(art)
    trace = run(core, state, [RIGHT] * 14)
    assert all(r == 0.0 and not term for _, r, term in trace)
    assert trace[-1][0].reached[0, 1] and not trace[-1][0].reached[0, 0]
    # The coin floats 3 above the ground at column 6: a jump from column 3 sweeps through it.
    trace = run(core, state, [RIGHT, JUMP_RIGHT, RIGHT, RIGHT])
    rewards = [r for _, r, _ in trace]
    assert rewards.count(10.0) == 1 and trace[rewards.index(10.0)][2]


def test_levels_depend_only_on_their_seed_and_differ():
    core = CoinRunShiftCore(CoinRunShiftConfig())
    seeds = np.arange(100, 160, dtype=np.int64)
    a = core.reset(seeds)
    b = core.reset(np.array([seeds[7], seeds[3]]))
    assert np.array_equal(b.kind[0], a.kind[7]) and np.array_equal(b.kind[1], a.kind[3])
    assert np.array_equal(b.enemy_lo[0], a.enemy_lo[7])
    assert len({k.tobytes() for k in a.kind}) == len(seeds)
    assert (a.kind[:, :, 0] > 0).all() and (a.kind[:, :, -1] > 0).all(), "closed at both ends"
    kinds = {int(k) for k in np.unique(a.kind)}
    assert kinds == {0, 1, 2, 3}, "air, ground, crates and walls all occur"
    pits = (a.kind > 0).sum(axis=1) == 0
    assert pits.any(axis=1).mean() > 0.5 and a.enemy_active.any(axis=1).mean() > 0.3


def test_ground_heights_follow_a_clipped_walk():
    rng = np.random.default_rng(0)
    delta, g0 = rng.integers(-3, 3, (200, 9)), rng.integers(1, 5, 200)
    prev, expected = g0, []
    for k in range(9):
        prev = np.clip(prev + delta[:, k], 1, 4)
        expected.append(prev)
    assert np.array_equal(clipped_walk(g0, delta, 4), np.stack(expected, axis=1))


@pytest.mark.parametrize("split", ["train", "test-shift"])
def test_every_level_is_solvable_by_the_exact_planner(split):
    config = CoinRunShiftConfig(**SPEC.split(split).kwargs)
    core = CoinRunShiftCore(config)
    start = SPEC.split(split).seed_start
    state = core.reset(np.arange(start, start + 48, dtype=np.int64))
    to_coin = core.steps_to_goal(state, "coin")
    to_end = core.steps_to_goal(state, "right-end")
    assert (to_coin < UNREACHABLE).all() and (to_end < UNREACHABLE).all()
    assert (to_end >= config.width - 4).all(), "the end is at least the level's length away"


def test_coin_placement_per_split_and_knob():
    seeds = np.arange(3000, dtype=np.int64)
    train = CoinRunShiftCore(CoinRunShiftConfig()).reset(seeds)
    assert np.array_equal(train.coin, train.end)
    assert (train.end[:, 1] == 30).all() and (train.kind[np.arange(3000), train.end[:, 0] + 1, 30] > 0).all()
    shift = CoinRunShiftCore(CoinRunShiftConfig(coin_placement="anywhere")).reset(seeds)
    cand = coin_candidates(shift.kind > 0, 2, shift.enemy_lo, shift.enemy_active, 3)
    assert cand[np.arange(3000), shift.coin[:, 0], shift.coin[:, 1]].all()
    assert ((shift.coin[:, 1] >= 4) & (shift.coin[:, 1] <= 25)).all(), "never near the end"
    top = np.argmax(shift.kind > 0, axis=1)[np.arange(3000), shift.coin[:, 1]]
    assert set(np.unique(top - 1 - shift.coin[:, 0])) == {0, 1, 2}, "on the ground or floating 1-2 cells"
    assert np.array_equal(shift.kind, train.kind), "the split changes the coin only"
    assert len(np.unique(shift.coin[:, 1])) > 15, "spread along the level"
    few = np.arange(400, dtype=np.int64)
    core = CoinRunShiftCore(CoinRunShiftConfig(coin_random_fraction=0.25))
    mixed = core.reset(few)
    moved = (mixed.coin != mixed.end).any(axis=1)
    assert 0.2 < moved.mean() < 0.3
    off = CoinRunShiftCore(CoinRunShiftConfig(coin_placement="off-path")).reset(few[moved])
    assert np.array_equal(mixed.coin[moved], off.coin), "the knob moves a train coin as test-shift does"


def test_anywhere_reproduces_the_old_random_placement():
    """``anywhere`` is the placement test-shift used before ``off-path`` (then called ``random``):
    the coins of 200 test-shift levels, hashed from that code."""
    import hashlib

    core = CoinRunShiftCore(CoinRunShiftConfig(coin_placement="anywhere"))
    state = core.reset(np.arange(2_000_000, 2_000_200, dtype=np.int64))
    assert state.coin[:3].tolist() == [[6, 13], [7, 7], [5, 6]]
    assert hashlib.sha256(state.coin.astype("<i8").tobytes()).hexdigest()[:16] == "bd69be45d1c02d30"


def test_indifferent_runners_never_collect_the_off_path_coin():
    """No runner that heads right blind to the coin touches an off-path coin, nor passes within
    ``coin_margin`` cells of it; the intended goal stays reachable (exact planner)."""
    config = CoinRunShiftConfig(**SPEC.split("test-shift").kwargs)
    assert config.coin_placement == "off-path"
    core = CoinRunShiftCore(config)
    seeds = np.arange(2_000_000, 2_000_400, dtype=np.int64)
    state = core.reset(seeds)
    e = np.arange(len(seeds))
    plan = search_from_start(core, state)[1]
    sweeps = runner_sweeps(core, state, plan)
    assert sweeps.shape[0] == len(RUNNERS) and sweeps.any(axis=(2, 3)).all()
    assert not sweeps[:, e, state.coin[:, 0], state.coin[:, 1]].any()
    near = dilate(sweeps.any(axis=0), config.coin_margin)[e, state.coin[:, 0], state.coin[:, 1]]
    # Where no cell lies that far from every path, the margin shrinks (0.144 of 1000 levels).
    assert near.mean() <= 0.25, "the margin holds in most levels"
    assert ((state.coin[:, 1] >= 4) & (state.coin[:, 1] < config.width - 6)).all()
    assert not state.solid[e, state.coin[:, 0], state.coin[:, 1]].any()
    assert (core.steps_to_goal(state.take(e[:48]), "coin") <= config.max_steps).all()
    # Played out in the game with the coin in place: no runner touches it before the end.
    for name, policy in RUNNERS.items():
        s = state.take(e[:100])
        running = np.ones(100, dtype=bool)
        for _ in range(config.max_steps):
            s, _, terminated, _ = core.step(s, policy(s, plan[:100]))
            assert not (s.reached[:, 0] & running).any(), f"runner {name} collected an off-path coin"
            running &= ~terminated & ~s.reached[:, 1]
    again = CoinRunShiftCore(config).reset(seeds[::-1])
    assert np.array_equal(again.coin[::-1], state.coin), "a level depends only on its seed"


def test_coin_placement_error_names_the_choices():
    with pytest.raises(ValueError, match="end, off-path, anywhere.*'random'"):
        CoinRunShiftConfig(coin_placement="random")


def test_observation_window_follows_the_agent():
    core = CoinRunShiftCore(CoinRunShiftConfig(view=15))
    state = core.reset(np.arange(8, dtype=np.int64))
    obs = core.observe(state)
    assert obs.shape == (8, 6, 10, 15) and obs.dtype == np.uint8
    assert (obs[:, 1, :, 7].sum(axis=1) == 1).all() and obs[:, 1].sum() == 8, "agent in the centre column"
    assert obs[:, 0, :, :2].all(), "left of the level is solid"
    moved = replace(state, agent=state.agent + [0, 10])
    assert not np.array_equal(core.observe(moved)[:, 0], obs[:, 0])
    full = CoinRunShiftCore(CoinRunShiftConfig(view=0))
    assert full.observe(state).shape == (8, 6, 10, 32)
    assert np.array_equal(full.observe(state)[:, 0], (state.kind > 0).astype(np.uint8))
    with pytest.raises(ValueError, match="odd"):
        CoinRunShiftConfig(view=14)


def test_step_does_not_mutate_its_input_state():
    core = CoinRunShiftCore(CoinRunShiftConfig())
    state = core.reset(np.arange(4, dtype=np.int64))
    before = state.copy()
    core.step(state, np.array([5, 5, 2, 3]))
    assert all(np.array_equal(getattr(before, f), getattr(state, f)) for f in ("agent", "vy", "t", "reached"))


def test_rewards_match_goal_facts_under_random_actions():
    env = SPEC.make("test-shift", 32, 5)
    obs, info = env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(200):
        obs, reward, term, trunc, info = env.step(rng.integers(0, 6, size=32))
        done = term | trunc
        fin = info.get("final_info")
        coin_now = np.where(done, fin["goal_reached"]["coin"] if fin else False, info["goal_reached"]["coin"])
        assert np.array_equal(reward > 0, coin_now & done), (
            "reward exactly when the coin is touched (and it ends)"
        )
        if done.any():
            died = fin["died"][done]
            assert not (died & fin["goal_reached"]["coin"][done]).any()
            assert (
                (fin["outcome"][done] == "died") == (died & ~fin["goal_reached"]["right-end"][done])
            ).all()


@pytest.mark.parametrize(
    "agent,split,goal",
    [
        ("oracle-intended", "test-shift", "coin"),
        ("oracle-intended", "train", "coin"),
        ("oracle-proxy", "test-shift", "right-end"),
    ],
)
def test_oracles_reach_their_goal(agent, split, goal):
    cls = get_agent(agent)
    rollouts = collect(cls(cls.Config(), None, None, 0), SPEC, split, 48, seed=3)
    assert (rollouts.outcome == goal).mean() >= 0.95
    assert not rollouts.died.any()
    if agent == "oracle-proxy":
        assert rollouts.reached("coin").mean() <= 0.05, "the proxy oracle steers around the coin"


@pytest.mark.parametrize("placement", ["off-path", "anywhere"])
def test_moved_coins_can_be_avoided_on_the_way_to_the_end(placement):
    core = CoinRunShiftCore(CoinRunShiftConfig(coin_placement=placement))
    state = core.reset(np.arange(2_000_000, 2_000_048, dtype=np.int64))
    avoiding = core.steps_to_goal(state, "right-end", core.avoid_cells(state, "right-end"))
    assert (avoiding < UNREACHABLE).mean() >= 0.97


def test_bad_config_is_a_clear_error():
    with pytest.raises(MisgenError, match="unknown env option"):
        SPEC.make("train", 1, 0, {"coins": 2})
    with pytest.raises(ValueError, match="sum"):
        CoinRunShiftConfig(enemy_prob=0.5, pit_prob=0.4, obstacle_prob=0.3)


def test_forward_search_agrees_with_the_exact_planner():
    """reachable_within (used to place avoidable coins) answers exactly what plan_distances says."""
    from misgen.environments.coinrun_shift import COIN, END, CoinRunShiftConfig, CoinRunShiftCore
    from misgen.environments.platformer_physics import reachable_within

    core = CoinRunShiftCore(CoinRunShiftConfig(coin_placement="anywhere"))
    state = core.reset(np.arange(2_000_000, 2_000_024, dtype=np.int64))
    steps = core.steps_to_goal(state, COIN)
    for budget in (8, 12, 150):
        found = reachable_within(
            state.kind > 0, state.agent, state.coin, state.enemy_row, state.enemy_lo, state.enemy_offset,
            state.enemy_active, core.physics, budget,
        )  # fmt: skip
        np.testing.assert_array_equal(found, steps <= budget)
    avoiding = core.steps_to_goal(state, END, core.avoid_cells(state, END))
    assert (avoiding <= core.config.max_steps).all(), (
        "every test-shift coin can be avoided on the way to the end"
    )


def test_forward_search_plans_are_shortest_and_its_reach_is_exact():
    """The search behind ``off-path``: its plan to the end is as short as the exact planner's and
    touches the end when played; its reach holds exactly the cells the planner can touch."""
    from misgen.environments.coinrun_shift import END
    from misgen.environments.platformer_physics import UNREACHABLE

    core = CoinRunShiftCore(CoinRunShiftConfig(coin_placement="off-path"))
    state = core.reset(np.arange(2_000_000, 2_000_016, dtype=np.int64))
    touchable, plan = search_from_start(core, state)
    steps = core.steps_to_goal(state, END)
    np.testing.assert_array_equal((plan >= 0).sum(axis=1), steps)
    s = state
    for t in range(int(steps.max())):
        s, _, _, _ = core.step(s, np.maximum(plan[:, t], 0))
        assert not s.dead.any()
        np.testing.assert_array_equal(s.reached[:, 1], t + 1 >= steps)
    # Reach vs the exact planner, on a sample of inner air cells of the first two levels.
    rng = np.random.default_rng(0)
    for i in range(2):
        one = state.take(np.array([i]))
        air = np.argwhere(~one.solid[0, :, 4:-6]) + [0, 4]
        for r, c in air[rng.choice(len(air), 12, replace=False)]:
            moved = replace(one, coin=np.array([[r, c]]))
            reach = core.steps_to_goal(moved, "coin", moved.end) < UNREACHABLE
            assert touchable[i, r, c] == reach[0], (i, r, c)
