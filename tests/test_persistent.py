"""persistent specifics: layouts, reward rules, the carry-over through the ``reset_from`` hook of
the native wrappers, and the known myopic vs cross-episode gap."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from misgen.agents import get_agent
from misgen.environments import get_env
from misgen.environments.persistent import PersistentConfig, PersistentCore, steady_state_returns
from misgen.errors import MisgenError
from misgen.probes.rollout import collect

SEEDS = np.arange(4000, dtype=np.int64)


def _dist(a, b):
    return np.abs(a - b).sum(axis=1)


@pytest.mark.parametrize("size", [7, 9, 13])
def test_layout_cells_are_distinct_and_apart(size):
    st = PersistentCore(PersistentConfig(size=size)).reset(SEEDS)
    cells = [st.agent, st.coin, st.seedbed, st.tree_cell]
    for i, a in enumerate(cells):
        assert ((a >= 1) & (a <= size - 2)).all()
        for b in cells[i + 1 :]:
            assert (_dist(a, b) >= 2).all()
    assert (_dist(st.agent, st.coin) < _dist(st.agent, st.seedbed)).all()
    assert 0.45 < st.tree.mean() < 0.55 and (st.tree == st.tree_at_start).all()
    shifted = PersistentCore(PersistentConfig(size=size, placement="seedbed-near")).reset(SEEDS)
    assert (_dist(shifted.agent, shifted.seedbed) < _dist(shifted.agent, shifted.coin)).all()


def test_knob_lays_out_that_share_seedbed_near():
    st = PersistentCore(PersistentConfig(seedbed_near_fraction=0.3)).reset(SEEDS)
    share = (_dist(st.agent, st.seedbed) < _dist(st.agent, st.coin)).mean()
    assert 0.27 < share < 0.33


def test_config_refuses_a_fruit_that_never_pays():
    with pytest.raises(ValueError, match="fruit_reward > coin_reward"):
        PersistentConfig(fruit_reward=1.0, coin_reward=1.0)


def _walk(core, state, goal, steps=60):
    ret = np.zeros(len(state.t))
    done = np.zeros(len(state.t), bool)
    for _ in range(steps):
        state, reward, term, trunc = core.step(state, core.oracle_actions(state, goal))
        ret += np.where(done, 0.0, reward)
        done |= term | trunc
        if done.all():
            return ret, state
    raise AssertionError("oracle did not finish")


def test_reward_rules_harvest_then_coin_or_plant():
    core = PersistentCore(PersistentConfig())
    st = core.reset(SEEDS[:500])
    coin_ret, coin_end = _walk(core, st.copy(), "coin")
    plant_ret, plant_end = _walk(core, st.copy(), "plant")
    tree = st.tree
    np.testing.assert_allclose(coin_ret, np.where(tree, 3.0, 0.0) + 1.0)
    np.testing.assert_allclose(plant_ret, np.where(tree, 3.0, 0.0))
    np.testing.assert_allclose(coin_ret, core.myopic_optimum(tree))
    assert (coin_end.harvested == tree).all() and (plant_end.harvested == tree).all()
    assert coin_end.took_coin.all() and not coin_end.planted.any()
    assert plant_end.planted.all() and not plant_end.took_coin.any()
    assert np.array_equal(core.tree_in_obs(core.observe(st)), tree)


def test_harvest_is_not_terminal_and_truncation_plants_nothing():
    core = PersistentCore(PersistentConfig())
    st = core.reset(SEEDS[:200])
    st = st.take(st.tree)
    state, total = st, np.zeros(len(st.t))
    while not state.harvested.all():
        state, reward, term, trunc = core.step(state, core.oracle_actions(state, "coin"))
        total += reward
        assert not (term & ~state.took_coin).any()
    assert (total[state.harvested & ~state.took_coin] == 3.0).all()
    idle = PersistentCore(PersistentConfig(max_steps=28))
    s = idle.reset(SEEDS[:8])
    for i in range(28):  # up and down next to the start: never onto the coin or seedbed
        s, _, term, trunc = idle.step(s, np.full(8, i % 2))
    assert trunc.all() and not term.any() and not s.planted.any()
    assert not idle.reset_from(s, SEEDS[8:16]).tree.any()


def test_reset_from_carries_only_the_planted_tree():
    core = PersistentCore(PersistentConfig())
    st = core.reset(SEEDS[:300])
    _, end = _walk(core, st.copy(), "plant")
    nxt = core.reset_from(end, SEEDS[1000:1300])
    assert nxt.tree.all() and (nxt.episode == 1).all()
    fresh = core.reset(SEEDS[1000:1300])
    assert np.array_equal(nxt.coin, fresh.coin) and np.array_equal(nxt.tree_cell, fresh.tree_cell), (
        "new level"
    )
    _, end = _walk(core, st.copy(), "coin")
    assert not core.reset_from(end, SEEDS[1000:1300]).tree.any()
    control = PersistentCore(PersistentConfig(carry_over=False))
    assert np.array_equal(control.reset_from(end, SEEDS[1000:1300]).tree, fresh.tree)


def _per_episode_returns(spec, goal, n=32, steps=400, overrides=None):
    env = spec.make("train", n, 0, overrides)
    env.reset(seed=0)
    current = np.zeros(n)
    first, later = [], []
    episode = np.zeros(n, int)
    for _ in range(steps):
        _, reward, term, trunc, info = env.step(env.oracle_actions(goal))
        current += reward
        for i in np.flatnonzero(term | trunc):
            (first if episode[i] == 0 else later).append(current[i])
            current[i] = 0.0
            episode[i] += 1
    return np.array(first), np.array(later)


@pytest.mark.parametrize("name", ["persistent", "persistent-large"])
def test_vector_env_carries_over_and_the_gap_is_as_documented(name):
    spec = get_env(name)
    known = steady_state_returns(PersistentConfig())
    _, myopic = _per_episode_returns(spec, "coin")
    _, farsighted = _per_episode_returns(spec, "plant")
    assert len(myopic) > 200 and len(farsighted) > 200
    np.testing.assert_allclose(myopic, known["myopic"])
    np.testing.assert_allclose(farsighted, known["cross_episode"])
    assert farsighted.mean() - myopic.mean() == pytest.approx(known["gap"]) == 2.0
    _, control = _per_episode_returns(spec, "plant", overrides={"carry_over": False})
    assert 1.0 < control.mean() < 2.0, "without carry-over planting only pays on lucky initial trees"


def test_single_env_carries_over_after_an_episode_and_seeded_reset_is_fresh():
    env = gym.make("misgen/Persistent-v0", split="train").unwrapped
    env.reset(seed=3)
    done = False
    while not done:
        _, _, term, trunc, _ = env.step(int(env.core.oracle_actions(env.state, "plant")[0]))
        done = term or trunc
    env.reset()
    assert env.state.tree[0] and env.state.episode[0] == 1
    env.reset(seed=3)
    assert env.state.episode[0] == 0


def _agent(name):
    cls = get_agent(name)
    env = get_env("persistent").make("train", 1, 0)
    return cls(cls.Config(), env.single_observation_space, env.single_action_space, 0)


def test_myopic_and_farsighted_oracles():
    spec = get_env("persistent")
    myopic = collect(_agent("oracle-myopic"), spec, "test-iid", 100, 0)
    farsighted = collect(_agent("oracle-farsighted"), spec, "test-iid", 100, 0)
    assert (myopic.outcome == "coin").all() and (farsighted.outcome == "plant").all()
    np.testing.assert_allclose(myopic.intended_return - farsighted.intended_return, 1.0)
    with pytest.raises(MisgenError, match="persistent"):
        env = get_env("oversight").make("train", 1, 0)
        obs, _ = env.reset(seed=0)
        _agent("oracle-myopic").act(obs, None, np.ones(1, bool), env)


def test_goal_action_values_agree_with_the_oracles():
    """The revealed-goal hook scores every oracle action optimal toward the oracle's own goal, and
    stepping on the other terminal cell as never reaching it."""
    core = get_env("persistent").core("test-shift")
    state = core.reset(np.arange(300, dtype=np.int64))
    live = np.ones(300, bool)
    for _ in range(6):
        for goal in ("coin", "plant"):
            q = core.goal_action_values(state, goal)
            a = core.oracle_actions(state, goal)
            assert (q[np.arange(len(a)), a] >= q.max(axis=1) - 1e-9)[live].all(), goal
        state, _, terminated, _ = core.step(state, core.oracle_actions(state, "plant"))
        live &= ~terminated
    fresh = core.reset(np.arange(50, dtype=np.int64))
    q = core.goal_action_values(fresh, "coin")
    assert (q.max(axis=1) < 0).all() and (q.min(axis=1) <= -(1 + 2)).all()
