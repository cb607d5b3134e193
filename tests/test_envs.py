"""Registry-wide environment checks: every registered env x split.

Gymnasium's env checker, same-seed determinism of the batched env, disjoint level-seed ranges,
the goal-facts contract in ``info``, and Gymnasium registration with ``split=``.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from misgen.environments import ENVS, Split, get_env
from misgen.errors import MisgenError

ENV_SPLITS = [(name, split) for name, spec in ENVS.items() for split in spec.splits]


def _require(spec):
    if not spec.available():
        pytest.skip(f"{spec.id} needs {spec.requires}")


@pytest.mark.parametrize("name,split", ENV_SPLITS)
def test_gymnasium_env_checker(name, split):
    spec = get_env(name)
    _require(spec)
    env = gym.make(spec.gym_id, split=split)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def _rollout(spec, split, seed, steps=60, n=4):
    env = spec.make(split, n, seed)
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    trace = [obs.copy(), np.asarray(info["agent_pos"]).copy(), np.asarray(info["level_seed"]).copy()]
    for _ in range(steps):
        obs, reward, term, trunc, info = env.step(rng.integers(0, env.single_action_space.n, size=n))
        trace += [obs.copy(), reward.copy(), term.copy(), trunc.copy(), np.asarray(info["agent_pos"]).copy()]
    env.close()
    return trace


@pytest.mark.parametrize("name,split", ENV_SPLITS)
def test_same_seed_same_trajectory(name, split):
    spec = get_env(name)
    _require(spec)
    a, b = _rollout(spec, split, 7), _rollout(spec, split, 7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = _rollout(spec, split, 8)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True)), "seed has no effect"


def _disjoint(a, b) -> bool:
    """Plain arithmetic on half-open ranges [start, stop); deliberately not ``Split.overlaps``."""
    return a.seed_stop <= b.seed_start or b.seed_stop <= a.seed_start


@pytest.mark.parametrize("name", ENVS.names())
def test_split_seed_ranges_are_disjoint(name):
    spec = get_env(name)
    splits = list(spec.splits.values())
    assert {"train", "test-iid", "test-shift"} <= set(spec.splits)
    for i, a in enumerate(splits):
        assert a.seed_start < a.seed_stop, f"{a.name} has an empty seed range"
        for b in splits[i + 1 :]:
            assert _disjoint(a, b), (
                f"{a.name} [{a.seed_start}, {a.seed_stop}) and {b.name} [{b.seed_start}, {b.seed_stop}) share level seeds"
            )


def test_a_spec_with_overlapping_splits_is_refused():
    spec = get_env("maze-cheese")
    train = spec.splits["train"]
    for start, stop in [
        (train.seed_stop - 1, train.seed_stop + 10),
        (train.seed_start, train.seed_start + 1),
        (train.seed_start - 5, train.seed_stop + 5),
    ]:
        splits = {**spec.splits, "test-iid": Split("test-iid", start, stop)}
        with pytest.raises(ValueError, match="share level seeds"):
            dataclasses.replace(spec, splits=splits)
    # Touching ranges do not overlap (stop is exclusive), and Split.overlaps agrees with arithmetic.
    touching = {**spec.splits, "test-iid": Split("test-iid", train.seed_stop, train.seed_stop + 10)}
    assert dataclasses.replace(spec, splits=touching).splits["test-iid"].seed_start == train.seed_stop
    cases = [
        (0, 10, 10, 20),
        (0, 10, 9, 20),
        (5, 6, 0, 100),
        (0, 10, 0, 10),
        (20, 30, 0, 20),
        (20, 30, 0, 21),
    ]
    for a0, a1, b0, b1 in cases:
        a, b = Split("a", a0, a1), Split("b", b0, b1)
        assert a.overlaps(b) == b.overlaps(a) == (not _disjoint(a, b)), (a0, a1, b0, b1)


@pytest.mark.parametrize("name,split", ENV_SPLITS)
def test_levels_come_from_their_split_and_info_has_goal_facts(name, split):
    spec = get_env(name)
    _require(spec)
    env = spec.make(split, 8, 0)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    sp = spec.split(split)
    for _ in range(30):
        seeds = np.asarray(info["level_seed"])
        assert ((seeds >= sp.seed_start) & (seeds < sp.seed_stop)).all()
        assert np.asarray(info["agent_pos"]).shape == (8, 2)
        for goal in spec.goal_names:
            assert np.asarray(info["goal_pos"][goal]).shape == (8, 2)
            assert np.asarray(info["goal_reached"][goal]).shape == (8,)
        obs, reward, term, trunc, info = env.step(rng.integers(0, env.single_action_space.n, size=8))
        done = term | trunc
        if done.any():
            assert info["_final_info"][done].all()
            outcomes = set(np.asarray(info["final_info"]["outcome"])[done])
            assert outcomes <= {*spec.goal_names, "died", "timeout"}
    env.close()


@pytest.mark.parametrize("name", ENVS.names())
def test_gymnasium_registration(name):
    spec = get_env(name)
    _require(spec)
    env = gym.make(spec.gym_id, split="test-shift")
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    env.close()
    venv = gym.make_vec(spec.gym_id, num_envs=3, vectorization_mode="vector_entry_point", split="test-iid")
    obs, _ = venv.reset(seed=1)
    assert obs.shape[0] == 3
    venv.close()


def test_unknown_env_and_split_name_the_choices():
    with pytest.raises(MisgenError, match="valid choices: .*maze-cheese"):
        get_env("no-such-env")
    with pytest.raises(MisgenError, match="test-shift"):
        get_env("maze-cheese").make("validation", 1, 0)


@pytest.mark.parametrize("name", [n for n, s in ENVS.items() if s.agent_channel is not None])
def test_agent_channel_marks_exactly_the_agent(name):
    """Agents re-centre their view on ``agent_channel``: it must mark the agent's cell and nothing else."""
    spec = get_env(name)
    env = spec.make("train", 4, 0)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        plane = obs[:, spec.agent_channel]
        assert np.all(plane.reshape(len(plane), -1).sum(axis=1) == 1)
        rows, cols = np.nonzero(plane)[1:]
        assert np.array_equal(np.stack([rows, cols], 1), np.asarray(info["agent_pos"]))
        obs, _, _, _, info = env.step(rng.integers(0, env.single_action_space.n, size=4))


def _oracle_rollouts(spec, agent, episodes=48):
    from misgen.agents import get_agent
    from misgen.probes.rollout import collect

    cls = get_agent(agent)
    return collect(cls(cls.Config(), None, None, 0), spec, "test-shift", episodes, seed=11)


# procgen's CoinRun moves the coin by editing procgen's state; its continuous physics cannot be
# searched exactly here (native coinrun-shift rejects coins a run to the end cannot avoid), so a
# coin on the runner's way is not excluded: some of 48 proxy runs collect it (seen at seed 11).
# Strict, so a fix shows.
KNOWN_NOT_DISAMBIGUATING = {
    "procgen-coinrun-shift": "procgen coin placement is not checked against a run to the end"
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_NOT_DISAMBIGUATING[n]))
        if n in KNOWN_NOT_DISAMBIGUATING
        else n
        for n in ENVS.names()
    ],
)
def test_every_test_shift_episode_disambiguates(name):
    """On test-shift, pursuing the proxy never collects the intended goal, and pursuing the
    intended goal never passes the proxy first: each episode tells the two goals apart."""
    spec = get_env(name)
    _require(spec)
    proxy_runs = _oracle_rollouts(spec, "oracle-proxy")
    assert not proxy_runs.reached(proxy_runs.intended).any(), "a run to the proxy collects the intended goal"
    assert (proxy_runs.outcome == proxy_runs.proxies[0]).mean() > 0.8, "the proxy oracle reaches its goal"
    intended_runs = _oracle_rollouts(spec, "oracle-intended")
    assert not np.isin(intended_runs.outcome, intended_runs.proxies).any(), (
        "the intended run passes the proxy first"
    )
    assert (intended_runs.outcome == intended_runs.intended).mean() > 0.8
