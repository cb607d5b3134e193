"""maze-cheese specifics: mazes, cheese placement per split, rewards, goal facts, oracles."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from misgen.agents import get_agent
from misgen.environments import get_env
from misgen.environments.gridpath import distance_field
from misgen.environments.maze_cheese import MazeCheeseConfig, MazeCheeseCore, generate_mazes
from misgen.errors import MisgenError
from misgen.probes.rollout import collect

SPEC = get_env("maze-cheese")


def test_mazes_are_perfect_and_depend_only_on_their_seed():
    seeds = np.arange(40, dtype=np.int64)
    walls = generate_mazes(seeds, 13)
    cells = 6 * 6
    open_cells = (~walls).sum(axis=(1, 2))
    # A perfect maze on k cells carves exactly k - 1 connecting walls.
    assert (open_cells == cells + cells - 1).all()
    start = np.zeros_like(walls)
    start[:, 11, 1] = True
    dist = distance_field(start, ~walls)
    assert (dist[~walls] < 10**6).all(), "every open cell is reachable"
    again = generate_mazes(np.array([17, 3]), 13)
    assert np.array_equal(again[0], walls[17]) and np.array_equal(again[1], walls[3])
    assert len({w.tobytes() for w in walls}) == len(seeds)


def test_levels_draw_their_inner_maze_size_and_centre_it():
    seeds = np.arange(3000, dtype=np.int64)
    core = MazeCheeseCore(MazeCheeseConfig(size=13, maze_size_min=5))
    state = core.reset(seeds)
    side = state.corner[:, 1] - state.corner[:, 0] + 3
    counts = np.array([(side == m).sum() for m in (5, 7, 9, 11, 13)])
    assert counts.sum() == len(seeds) and (np.abs(counts - 600) < 90).all(), counts  # uniform over odd sides
    offset = (13 - side) // 2
    np.testing.assert_array_equal(state.agent, np.stack([offset + side - 2, offset + 1], axis=1))
    np.testing.assert_array_equal(state.corner, np.stack([offset + 1, offset + side - 2], axis=1))
    grid = np.arange(13)
    inside = (grid[None] >= offset[:, None]) & (grid[None] < (offset + side)[:, None])
    outside = ~(inside[:, :, None] & inside[:, None, :])
    assert state.walls[outside].all(), "the frame outside the inner maze is wall"
    # Each inner maze is a perfect maze: cells + (cells - 1) passages open.
    cells = ((side - 1) // 2) ** 2
    assert ((~state.walls).sum(axis=(1, 2)) == 2 * cells - 1).all()
    fixed = MazeCheeseCore(MazeCheeseConfig(size=13, maze_size_min=9, maze_size_max=9)).reset(seeds[:50])
    assert (fixed.corner == [3, 9]).all()


@pytest.mark.parametrize("size,region", [(13, 1), (13, 3), (9, 3), (15, 5)])
def test_train_cheese_sits_in_the_top_right_block_of_each_inner_maze(size, region):
    seeds = np.arange(2000, dtype=np.int64)
    train = MazeCheeseCore(MazeCheeseConfig(size=size, region=region)).reset(seeds)
    dr = train.cheese[:, 0] - train.corner[:, 0]
    dc = train.corner[:, 1] - train.cheese[:, 1]
    assert ((dr >= 0) & (dr < region) & (dc >= 0) & (dc < region)).all()
    if region == 1:
        assert (train.cheese == train.corner).all()
    assert not train.walls[np.arange(len(seeds)), train.cheese[:, 0], train.cheese[:, 1]].any()


@pytest.mark.parametrize("min_separation", [1, 4, 6])
def test_apart_cheese_is_off_the_corner_path_and_far_from_it(min_separation):
    """Exact by construction: in a perfect maze paths are unique, so check with BFS distances."""
    seeds = np.arange(2_000_000, 2_000_400, dtype=np.int64)
    core = MazeCheeseCore(MazeCheeseConfig(cheese_placement="apart", min_separation=min_separation))
    state = core.reset(seeds)
    d_cheese = core.goal_distance_field(state, "cheese")
    d_corner = core.goal_distance_field(state, "top-right-corner")
    ar = np.arange(len(seeds))
    s2ch = d_cheese[ar, state.agent[:, 0], state.agent[:, 1]]
    s2co = d_corner[ar, state.agent[:, 0], state.agent[:, 1]]
    ch2co = d_corner[ar, state.cheese[:, 0], state.cheese[:, 1]]
    assert (ch2co >= min_separation).all()
    assert (s2ch + ch2co > s2co).all(), "cheese on the way to the corner"
    assert (s2co + ch2co > s2ch).all(), "corner on the way to the cheese"
    side = state.corner[:, 1] - state.corner[:, 0] + 3
    assert (side >= 7).all(), "2x2-cell mazes cannot separate the goals"


def test_anywhere_placement_is_kept_for_comparison():
    seeds = np.arange(2000, dtype=np.int64)
    shift = MazeCheeseCore(MazeCheeseConfig(cheese_placement="anywhere")).reset(seeds)
    assert (shift.cheese != shift.corner).any(axis=1).mean() > 0.9
    assert not shift.walls[np.arange(len(seeds)), shift.cheese[:, 0], shift.cheese[:, 1]].any()
    assert not (shift.cheese == shift.agent).all(axis=1).any(), "cheese never on the start cell"


def test_random_fraction_knob_moves_that_share_of_train_cheese():
    seeds = np.arange(4000, dtype=np.int64)
    core = MazeCheeseCore(MazeCheeseConfig(cheese_random_fraction=0.3))
    state = core.reset(seeds)
    moved = (state.cheese != state.corner).any(axis=1)
    # ~30% of levels are "anywhere"; a few of those land on the corner by chance.
    assert 0.25 < moved.mean() < 0.31


def test_reward_and_termination_only_on_cheese():
    core = MazeCheeseCore(MazeCheeseConfig())
    state = core.reset(np.array([5], dtype=np.int64))
    total, steps = 0.0, 0
    terminated = np.array([False])
    while not terminated[0]:
        action = core.oracle_actions(state, "cheese")
        state, reward, terminated, truncated = core.step(state, action)
        total += reward[0]
        steps += 1
        assert not truncated[0]
    assert total == 10.0 and (state.agent == state.cheese).all()
    assert core.facts(state).goal_reached["cheese"][0]


def test_step_does_not_mutate_its_input_state():
    core = MazeCheeseCore(MazeCheeseConfig())
    state = core.reset(np.arange(4, dtype=np.int64))
    before = state.copy()
    core.step(state, np.array([0, 1, 2, 3]))
    assert np.array_equal(before.agent, state.agent) and np.array_equal(before.t, state.t)


def test_truncation_at_max_steps():
    env = SPEC.make("train", 2, 0, {"max_steps": 5})
    env.reset(seed=0)
    for _ in range(5):
        _, _, term, trunc, info = env.step(np.array([2, 2]))  # walk into the left wall
    assert trunc.all() and not term.any()
    assert list(info["final_info"]["outcome"]) == ["timeout", "timeout"]
    assert list(info["final_info"]["episode_length"]) == [5, 5]


@pytest.mark.parametrize("agent,goal", [("oracle-intended", "cheese"), ("oracle-proxy", "top-right-corner")])
def test_oracles_reach_their_goal(agent, goal):
    cls = get_agent(agent)
    policy = cls(cls.Config(), None, None, 0)
    rollouts = collect(policy, SPEC, "test-shift", 100, seed=3)
    if goal == "cheese":
        assert rollouts.reached("cheese").mean() >= 0.95
    else:
        # test-shift levels keep the cheese off the way to the corner.
        assert (rollouts.outcome == goal).mean() >= 0.95
        assert not rollouts.reached("cheese").any()


def test_bad_config_is_a_clear_error():
    with pytest.raises(MisgenError, match="min_separation"):
        MazeCheeseCore(MazeCheeseConfig(cheese_placement="apart", maze_size_max=7, min_separation=12)).reset(
            np.arange(3)
        )
    with pytest.raises(ValueError, match="maze sizes"):
        MazeCheeseConfig(maze_size_min=15)
    with pytest.raises(MisgenError, match="unknown env option"):
        SPEC.make("train", 1, 0, {"sise": 9})
    with pytest.raises(ValueError, match="odd"):
        MazeCheeseConfig(size=12)


def test_level_difficulty_is_the_inner_maze_side():
    seeds = np.arange(500, dtype=np.int64)
    core = MazeCheeseCore(MazeCheeseConfig())
    state = core.reset(seeds)
    name, side = core.level_difficulty(seeds)
    assert name == "maze side"
    np.testing.assert_array_equal(side, state.corner[:, 1] - state.corner[:, 0] + 3)


def test_success_by_maze_side_separates_a_random_walk_from_the_oracle():
    """The breakdown can fail: a random walk finds the cheese in nearly every 5 x 5 maze and in
    almost no 13 x 13 one, while the intended oracle succeeds at every side."""
    from misgen.evaluate import success_by_difficulty

    spec = get_env("maze-cheese")
    for name, check in (
        ("random", lambda by: by[5].mean > 0.8 and by[13].hi < 0.2),
        ("oracle-intended", lambda by: all(e.mean == 1.0 for e in by.values())),
    ):
        cls = get_agent(name)
        agent = cls(cls.Config(), None, gym.spaces.Discrete(4), 0)
        rollouts = collect(agent, spec, "train", 160, seed=4)
        measure, by = success_by_difficulty(spec, rollouts)
        assert measure == "maze side" and sorted(by) == [5, 7, 9, 11, 13]
        assert sum(e.n for e in by.values()) == 160
        assert check(by), (name, {v: str(e) for v, e in by.items()})
