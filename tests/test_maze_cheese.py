"""maze-cheese specifics: mazes, cheese placement per split, rewards, goal facts, oracles."""

from __future__ import annotations

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


@pytest.mark.parametrize("size,region", [(13, 5), (9, 3), (15, 7)])
def test_cheese_placement_per_split(size, region):
    seeds = np.arange(2000, dtype=np.int64)
    train = MazeCheeseCore(MazeCheeseConfig(size=size, region=region)).reset(seeds)
    rows, cols = train.cheese[:, 0], train.cheese[:, 1]
    assert (rows <= region).all() and (cols >= size - 1 - region).all()
    shift = MazeCheeseCore(MazeCheeseConfig(size=size, region=region, cheese_placement="anywhere")).reset(seeds)
    outside = (shift.cheese[:, 0] > region) | (shift.cheese[:, 1] < size - 1 - region)
    assert outside.mean() > 0.5
    assert not shift.walls[np.arange(len(seeds)), shift.cheese[:, 0], shift.cheese[:, 1]].any()
    assert not (shift.cheese == [size - 2, 1]).all(axis=1).any(), "cheese never on the start cell"


def test_random_fraction_knob_moves_that_share_of_train_cheese():
    seeds = np.arange(4000, dtype=np.int64)
    core = MazeCheeseCore(MazeCheeseConfig(cheese_random_fraction=0.3))
    cheese = core.reset(seeds).cheese
    outside = (cheese[:, 0] > 5) | (cheese[:, 1] < 7)
    # ~30% of levels are "anywhere"; of those, about 80% land outside the 5x5 region.
    assert 0.18 < outside.mean() < 0.3


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
        # The cheese ends the episode when it lies on the way; otherwise the corner is reached.
        cheese_first = rollouts.outcome == "cheese"
        assert (rollouts.reached(goal) | cheese_first).mean() >= 0.95
        assert (rollouts.outcome == goal).mean() > 0.3


def test_bad_config_is_a_clear_error():
    with pytest.raises(MisgenError, match="unknown env option"):
        SPEC.make("train", 1, 0, {"sise": 9})
    with pytest.raises(ValueError, match="odd"):
        MazeCheeseConfig(size=12)
