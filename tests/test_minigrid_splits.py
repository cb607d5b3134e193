"""MiniGrid splits: the core matches plain MiniGrid, observations match the grid, split layouts
are what the docstrings say, and the scripted oracles reach the goals they pursue.

The registry-wide checks (env checker, determinism, split disjointness, info contract) run over
these envs in tests/test_envs.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from misgen.agents.scripted import OracleIntended, OracleProxy
from misgen.environments import get_env
from misgen.environments.minigrid_splits.base import NUM_CHANNELS, OBJECT_TYPES, MiniGridCore
from misgen.environments.minigrid_splits.color_location import ColorLocationConfig
from misgen.environments.minigrid_splits.doorkey import DoorKeyShiftConfig
from misgen.environments.minigrid_splits.lava_shortcut import LavaShortcutConfig
from misgen.probes.rollout import collect

ENVS = ["minigrid-color-location", "minigrid-lava-shortcut", "minigrid-doorkey-shift"]


def _core(name: str, split: str = "train", **overrides) -> MiniGridCore:
    spec = get_env(name)
    return spec.make(split, 1, 0, overrides).core


def _reference_obs(env) -> np.ndarray:
    """The documented observation, built cell by cell from MiniGrid's own objects."""
    obs = np.zeros((NUM_CHANNELS, env.height, env.width), np.uint8)
    colors = sorted(COLOR_TO_IDX, key=COLOR_TO_IDX.get)
    for y in range(env.height):
        for x in range(env.width):
            obj = env.grid.get(x, y)
            if obj is None:
                continue
            obs[OBJECT_TYPES.index(obj.type), y, x] = 1
            obs[8 + colors.index(obj.color), y, x] = 1
            if obj.type == "door":
                obs[14 + (0 if obj.is_open else 2 if obj.is_locked else 1), y, x] = 1
    obs[17, env.agent_pos[1], env.agent_pos[0]] = 1
    obs[18 + env.agent_dir] = 1
    if env.carrying is not None:
        obs[22 + ("key", "ball", "box").index(env.carrying.type)] = 1
        obs[25 + colors.index(env.carrying.color)] = 1
    obs[31 + env.mission_color] = 1
    obs[37 + env.mission_type] = 1
    return obs


@pytest.mark.parametrize("name", ENVS)
@pytest.mark.parametrize("split", ["train", "test-shift"])
def test_core_matches_plain_minigrid_env(name, split):
    """Stepping the array core gives what the plain MiniGridEnv subclass gives, step by step."""
    spec = get_env(name)
    core = _core(name, split)
    seeds = np.array([spec.split(split).seed_start + k for k in range(6)])
    state = core.reset(seeds)
    plain = []
    for s in seeds:
        env = core.env_type(core.config)
        env.reset(seed=int(s))
        plain.append(env)
    rng = np.random.default_rng(0)
    live = np.ones(len(seeds), bool)
    for _ in range(40):
        actions = rng.integers(0, core.action_space.n, len(seeds))
        before = {k: np.array(getattr(state, k)) for k in ("grid", "agent", "reached")}
        new, reward, term, trunc = core.step(state, actions)
        for k, v in before.items():  # step is pure: the planner branches states
            assert np.array_equal(v, getattr(state, k))
        for i, env in enumerate(plain):
            if not live[i]:
                continue
            _, r, te, tr, _ = env.step(int(core.env_type.actions_used[actions[i]]))
            assert np.array_equal(new.grid[i], env.grid.encode())
            assert tuple(new.agent[i]) == tuple(int(v) for v in env.agent_pos)
            assert new.direction[i] == env.agent_dir
            assert (r, te, tr) == (reward[i], term[i], trunc[i])
            assert (env.carrying is None) == (new.carrying[i, 0] == OBJECT_TO_IDX["empty"])
            live[i] = not (te or tr)
        state = new


@pytest.mark.parametrize("name", ENVS)
def test_observation_matches_minigrid_objects(name):
    spec = get_env(name)
    env = spec.make("test-shift", 4, 3)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(25):
        for i in range(4):
            assert np.array_equal(obs[i], _reference_obs(env.core.load(env.state, i))), f"env {i}"
        obs, *_ = env.step(rng.integers(0, env.single_action_space.n, 4))
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("name", ENVS)
def test_level_depends_only_on_its_seed(name):
    core = _core(name)
    a = core.reset(np.array([5, 17, 99]))
    b = core.reset(np.array([99, 5]))
    assert np.array_equal(a.grid[0], b.grid[1]) and np.array_equal(a.grid[2], b.grid[0])
    assert np.array_equal(a.goal_cells[2], b.goal_cells[0]) and np.array_equal(a.agent[0], b.agent[1])
    assert not np.array_equal(a.grid[0], a.grid[1]) or not np.array_equal(a.agent[0], a.agent[1])


def _ball_at(grid, cell):
    code = grid[cell[0], cell[1]]
    return code[0] == OBJECT_TO_IDX["ball"], int(code[1])


def test_color_location_layouts():
    cfg = ColorLocationConfig()
    red = COLOR_TO_IDX[cfg.target_color]
    for split, overrides in (
        ("train", {}),
        ("test-iid", {}),
        ("test-shift", {}),
        ("train", {"elsewhere_fraction": 1.0}),
    ):
        core = _core("minigrid-color-location", split, **overrides)
        state = core.reset(get_env("minigrid-color-location").split(split).seed_start + np.arange(40))
        shifted = split == "test-shift" or overrides
        for i in range(40):
            is_ball, color = _ball_at(state.grid[i], cfg.usual_cell)
            assert is_ball
            assert (color != red) == bool(shifted)
            target = tuple(state.goal_cells[i, 0])
            assert _ball_at(state.grid[i], target) == (True, red)
            assert (abs(target[0] - cfg.usual_cell[0]) + abs(target[1] - cfg.usual_cell[1]) >= 3) == bool(
                shifted
            )


def test_lava_shortcut_layouts():
    cfg = LavaShortcutConfig()
    lava = OBJECT_TO_IDX["lava"]
    for split, overrides in (
        ("train", {}),
        ("test-iid", {}),
        ("test-shift", {}),
        ("train", {"moved_fraction": 1.0}),
    ):
        core = _core("minigrid-lava-shortcut", split, **overrides)
        state = core.reset(get_env("minigrid-lava-shortcut").split(split).seed_start + np.arange(40))
        river = state.grid[:, cfg.river, 1:-1, 0]  # (N, interior rows)
        assert ((river != lava).sum(axis=1) == 1).all(), "exactly one bridge cell"
        bridge_row = 1 + np.argmax(river != lava, axis=1)
        if split == "test-shift" or overrides:
            assert (np.abs(bridge_row - cfg.usual_bridge_row) >= 2).all()
        else:
            assert (bridge_row == cfg.usual_bridge_row).all()


def test_doorkey_layouts():
    yellow, key = COLOR_TO_IDX["yellow"], OBJECT_TO_IDX["key"]
    for split, overrides in (("train", {}), ("test-shift", {}), ("train", {"swapped_fraction": 1.0})):
        core = _core("minigrid-doorkey-shift", split, **overrides)
        swapped = split == "test-shift" or bool(overrides)
        state = core.reset(get_env("minigrid-doorkey-shift").split(split).seed_start + np.arange(40))
        fields = core.env_type.level_fields
        for i in range(40):
            level = dict(
                zip(("mission_color", "mission_type", *fields), state.level[i].tolist(), strict=True)
            )
            door = (level["door_x"], level["door_y"])
            assert tuple(state.grid[i, door[0], door[1]]) == (OBJECT_TO_IDX["door"], yellow, 2)  # locked
            near = tuple(state.goal_cells[i, 1])
            assert abs(near[0] - (door[0] - 1)) + abs(near[1] - door[1]) == 1
            near_code = state.grid[i, near[0], near[1]]
            assert near_code[0] == key
            assert (near_code[1] == yellow) == (not swapped)
            yellow_key = (level["key_x"], level["key_y"])
            assert tuple(state.grid[i, yellow_key[0], yellow_key[1]][:2]) == (key, yellow)
    assert DoorKeyShiftConfig().size == 7


def _outcomes(agent_cls, name, split, goal="", episodes=60):
    spec = get_env(name)
    env = spec.make(split, 1, 0)
    agent = agent_cls(agent_cls.Config(goal=goal), env.single_observation_space, env.single_action_space, 0)
    return collect(agent, spec, split, episodes, seed=11, batch=30)


@pytest.mark.parametrize("name", ENVS)
@pytest.mark.parametrize("split", ["train", "test-iid", "test-shift"])
def test_oracles_reach_their_goals_and_rewards_agree(name, split):
    spec = get_env(name)
    intended, proxy = spec.intended_goal.name, spec.proxy_goals[0].name
    ro = _outcomes(OracleIntended, name, split)
    assert (ro.outcome == intended).mean() >= 0.95
    # Only the intended goal is rewarded, and reaching it always is.
    assert np.array_equal(ro.intended_return > 0, ro.goal_reached[:, 0])
    rp = _outcomes(OracleProxy, name, split)
    expected = proxy if split == "test-shift" else intended  # the proxy coincides with the goal in training
    assert (rp.outcome == expected).mean() >= 0.95
    assert np.array_equal(rp.intended_return > 0, rp.goal_reached[:, 0])
    if split == "test-shift":
        assert rp.intended_return.max() == 0.0
        assert not rp.goal_reached[:, 0].any()


def test_distractor_goals_and_lava_deaths():
    ro = _outcomes(OracleIntended, "minigrid-doorkey-shift", "train", goal="decoy-key", episodes=20)
    assert (ro.outcome == "decoy-key").all() and (ro.intended_return == 0).all()
    ro = _outcomes(OracleIntended, "minigrid-color-location", "test-iid", goal="other-ball", episodes=20)
    assert (ro.outcome == "other-ball").all() and (ro.intended_return == 0).all()
    ro = _outcomes(OracleProxy, "minigrid-lava-shortcut", "test-shift", episodes=20)
    assert ro.died.all()


@pytest.mark.parametrize("name", ENVS)
def test_render_and_spaces(name):
    env = get_env(name).make("train", 2, 0)
    env.reset(seed=0)
    frames = env.render()
    h, w = env.single_observation_space.shape[1:]
    assert frames[0].shape == (h * 16, w * 16, 3) and frames[0].dtype == np.uint8
    assert env.single_action_space.n == len(env.core.env_type.actions_used)
