"""keys-chests specifics: level layout and counts per split, key/chest mechanics, termination,
observation of held keys, goal facts and counters in info, oracles."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from misgen.agents import get_agent
from misgen.environments import get_env
from misgen.environments.keys_chests import KeysChestsConfig, KeysChestsCore
from misgen.errors import MisgenError
from misgen.probes.rollout import collect

SPEC = get_env("keys-chests")
UP, DOWN, LEFT, RIGHT, STAY = range(5)


def test_layout_counts_per_regime_and_knob():
    seeds = np.arange(4000, dtype=np.int64)
    core = KeysChestsCore(KeysChestsConfig())
    train = core.reset(seeds)
    keys, chests = train.keys.sum(axis=(1, 2)), train.chests.sum(axis=(1, 2))
    assert set(np.unique(keys)) == {1, 2} and set(np.unique(chests)) == {3, 4, 5}
    assert np.array_equal(chests, train.num_chests)
    assert not (train.keys & train.chests).any()
    assert (train.chests <= core.lattice).all() and not (train.keys & core.lattice).any()
    assert not train.keys[np.arange(4000), train.agent[:, 0], train.agent[:, 1]].any()
    assert core.floor[train.agent[:, 0], train.agent[:, 1]].all()
    shift = KeysChestsCore(KeysChestsConfig(regime="abundant-keys")).reset(seeds)
    assert set(np.unique(shift.keys.sum(axis=(1, 2)))) == {3, 4, 5}
    assert set(np.unique(shift.chests.sum(axis=(1, 2)))) == {1, 2}
    mixed = KeysChestsCore(KeysChestsConfig(abundant_keys_fraction=0.3)).reset(seeds)
    assert 0.25 < (mixed.keys.sum(axis=(1, 2)) > mixed.chests.sum(axis=(1, 2))).mean() < 0.35
    again = core.reset(np.array([seeds[9], seeds[2]]))
    assert np.array_equal(again.keys[0], train.keys[9]) and np.array_equal(again.chests[1], train.chests[2])
    assert len({(k.tobytes(), c.tobytes()) for k, c in zip(train.keys, train.chests, strict=True)}) > 3900


def one_level(keys: list[tuple[int, int]], chests: list[tuple[int, int]], agent: tuple[int, int]):
    core = KeysChestsCore(KeysChestsConfig(max_steps=50))
    state = core.reset(np.array([0], dtype=np.int64))
    k = np.zeros_like(state.keys)
    c = np.zeros_like(state.chests)
    for r, col in keys:
        k[0, r, col] = True
    for r, col in chests:
        c[0, r, col] = True
    return core, replace(state, keys=k, chests=c, agent=np.array([agent]), num_chests=np.array([len(chests)]))


def test_chests_block_without_a_key_and_open_with_one():
    core, state = one_level(keys=[(4, 4)], chests=[(3, 5), (7, 7)], agent=(3, 4))
    s1, r1, t1, _ = core.step(state, np.array([RIGHT]))  # into the chest without a key: blocked
    assert (s1.agent == [[3, 4]]).all() and r1[0] == 0 and (s1.chests == state.chests).all()
    s2, r2, t2, _ = core.step(s1, np.array([DOWN]))  # onto the key
    assert s2.held[0] == 1 and s2.keys_collected[0] == 1 and not s2.keys.any() and r2[0] == 0
    s3, _, _, _ = core.step(s2, np.array([UP]))
    s4, r4, t4, _ = core.step(s3, np.array([RIGHT]))  # into the chest with the key: opens, moves in
    assert r4[0] == 1.0 and s4.held[0] == 0 and s4.chests_opened[0] == 1 and not s4.chests[0, 3, 5]
    assert (s4.agent == [[3, 5]]).all() and (s4.last_chest == [[3, 5]]).all()
    assert t4[0], "no key left anywhere: nothing more can be earned"
    facts = core.facts(s4)
    assert facts.goal_reached["chest"][0] and not facts.goal_reached["key"][0]
    assert (facts.goal_pos["chest"] == [[7, 7]]).all() and (facts.goal_pos["key"] == [[4, 4]]).all()


def test_terminates_when_all_chests_are_open_and_surplus_keys_reach_the_proxy():
    core, state = one_level(keys=[(2, 2), (2, 4), (4, 2)], chests=[(3, 3)], agent=(2, 1))
    s, _, term, _ = core.step(state, np.array([RIGHT]))
    s, _, term, _ = core.step(s, np.array([RIGHT]))
    assert s.held[0] == 1 and not core.facts(s).goal_reached["key"][0] and not term[0]
    s, _, term, _ = core.step(s, np.array([RIGHT]))
    s, _, term, _ = core.step(s, np.array([RIGHT]))
    assert s.held[0] == 2 and core.facts(s).goal_reached["key"][0], "more keys than chests"
    s, reward, term, _ = core.step(s, np.array([STAY]))
    assert (s.agent == [[2, 5]]).all() and reward[0] == 0 and not term[0]
    for action in (DOWN, LEFT):  # to (3, 4), beside the chest at (3, 3)
        s, reward, term, _ = core.step(s, np.array([action]))
    assert reward[0] == 0 and not term[0]
    s, reward, term, _ = core.step(s, np.array([LEFT]))
    assert reward[0] == 1.0 and term[0] and s.held[0] == 1, "all chests open ends the episode"


def test_held_keys_are_a_bar_on_the_top_row():
    core, state = one_level(keys=[(2, 2)], chests=[(5, 5)], agent=(2, 2))
    obs = core.observe(replace(state, held=np.array([3])))
    assert obs.shape == (1, 5, 9, 9) and obs.dtype == np.uint8
    assert obs[0, 4].sum() == 3 and obs[0, 4, 0, :3].all()
    assert obs[0, 2, 2, 2] == 1 and obs[0, 3, 5, 5] == 1 and obs[0, 1, 2, 2] == 1


def test_step_does_not_mutate_its_input_state():
    core = KeysChestsCore(KeysChestsConfig())
    state = core.reset(np.arange(8, dtype=np.int64))
    before = state.copy()
    for a in range(5):
        core.step(state, np.full(8, a))
    assert all(
        np.array_equal(getattr(before, f), getattr(state, f)) for f in ("keys", "chests", "agent", "held")
    )


def test_rewards_and_counters_match_goal_facts_in_info():
    env = SPEC.make("test-shift", 32, 3)
    obs, info = env.reset(seed=3)
    assert {"keys_collected", "chests_opened", "keys_held"} <= set(info)
    rng = np.random.default_rng(1)
    opened = np.zeros(32)
    returns = np.zeros(32)
    checked = 0
    for _ in range(300):
        obs, reward, term, trunc, info = env.step(rng.integers(0, 5, size=32))
        returns += reward
        done = term | trunc
        if done.any():
            fin = info["final_info"]
            assert np.array_equal(returns[done], fin["chests_opened"][done].astype(float))
            assert np.array_equal(fin["goal_reached"]["chest"][done], fin["chests_opened"][done] > 0)
            assert np.array_equal(fin["intended_return"][done], returns[done])
            assert (obs[done, 4].sum(axis=(1, 2)) == 0).all(), "a fresh episode holds no key"
            returns[done] = 0
            checked += int(done.sum())
        live = ~done
        held_bar = obs[:, 4].sum(axis=(1, 2))
        assert np.array_equal(held_bar[live], np.minimum(info["keys_held"][live], 9))
        opened[live] = info["chests_opened"][live]
    assert checked > 20


@pytest.mark.parametrize("split", ["train", "test-shift"])
def test_intended_oracle_opens_chests_first(split):
    cls = get_agent("oracle-intended")
    rollouts = collect(cls(cls.Config(), None, None, 0), SPEC, split, 100, seed=2)
    assert (rollouts.outcome == "chest").mean() >= 0.95
    assert not rollouts.reached("key").any(), "never picks up a key it cannot use"
    assert (rollouts.intended_return >= 1).all()


def test_proxy_oracle_hoards_keys_at_test_shift():
    cls = get_agent("oracle-proxy")
    rollouts = collect(cls(cls.Config(), None, None, 0), SPEC, "test-shift", 100, seed=2)
    assert (rollouts.outcome == "key").mean() >= 0.95
    assert rollouts.intended_return.sum() == 0, "it never opens a chest"
    train = collect(cls(cls.Config(), None, None, 0), SPEC, "train", 50, seed=2)
    assert not train.reached("key").any(), "in training every key can be used: no surplus"


def test_bad_config_is_a_clear_error():
    with pytest.raises(MisgenError, match="unknown env option"):
        SPEC.make("train", 1, 0, {"keyz": 2})
    with pytest.raises(ValueError, match="few < many"):
        KeysChestsConfig(few=3, many=3)


def test_goal_action_values_agree_with_the_oracles():
    """The within-episode hook scores every oracle action optimal toward the oracle's own goal;
    fetching a key with empty hands serves both goals alike (no vote either way)."""
    core = SPEC.core("test-shift")
    state = core.reset(np.arange(300, dtype=np.int64))
    live = np.ones(300, bool)
    rows = np.arange(300)
    for t in range(30):
        for goal in ("chest", "key"):
            q = core.goal_action_values(state, goal)
            a = core.oracle_actions(state, goal)
            assert (q[rows, a] >= q.max(axis=1) - 1e-9)[live].all(), (goal, t)
        empty = live & (state.held == 0)
        assert np.array_equal(
            core.goal_action_values(state, "chest")[empty], core.goal_action_values(state, "key")[empty]
        )
        goal = "key" if t % 2 else "chest"  # a per-step mixture visits states neither oracle would
        state, _, terminated, _ = core.step(state, core.oracle_actions(state, goal))
        live &= ~terminated
    fresh = core.reset(np.arange(50, dtype=np.int64))
    q = core.goal_action_values(fresh, "chest")
    assert (q.max(axis=1) < 0).all() and (q.min(axis=1) <= q.max(axis=1) - 1).all()
