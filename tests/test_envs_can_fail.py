"""The registry-wide env tests can fail: each is run against a deliberately broken env and must.

Every test in ``tests/test_envs.py`` that loops over the registry is called here with maze-cheese
replaced (monkeypatched into the registry) by a version broken in the one way that test exists to
catch. A test that still passed would be checking nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from misgen.environments import ENVS, Split, get_env, register_env

# The module under test, loaded by path (tests/ is not a package).
_path = Path(__file__).with_name("test_envs.py")
_spec = importlib.util.spec_from_file_location("_misgen_test_envs", _path)
T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(T)

NAME = "maze-cheese"


class _ObsEdit(gym.vector.VectorWrapper):
    """A vector env whose observations are passed through ``edit(obs)`` on reset and step."""

    def __init__(self, env, edit, reset_seed=None):
        super().__init__(env)
        self.edit, self.reset_seed = edit, reset_seed

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(
            seed=self.reset_seed if self.reset_seed is not None else seed, options=options
        )
        return self.edit(obs), info

    def step(self, actions):
        obs, reward, term, trunc, info = self.env.step(actions)
        return self.edit(obs), reward, term, trunc, info


def _broken(monkeypatch, **changes):
    """Put a copy of maze-cheese with ``changes`` (spec fields) into the registry for this test."""
    spec = get_env(NAME)
    monkeypatch.setitem(ENVS._entries, NAME, dataclasses.replace(spec, **changes))
    return spec


def _vector(monkeypatch, edit, reset_seed=None):
    spec = get_env(NAME)
    make = spec.make_vector
    _broken(
        monkeypatch,
        make_vector=lambda s, split, n, seed, ov: _ObsEdit(make(s, split, n, seed, ov), edit, reset_seed),
    )


def test_env_checker_catches_observations_outside_the_space(monkeypatch):
    spec = get_env(NAME)
    make = spec.make_single

    def broken_single(s, split, overrides):
        env = make(s, split, overrides)
        base = type(env)

        def reset(self, *, seed=None, options=None):
            obs, info = base.reset(self, seed=seed, options=options)
            return obs + 2, info  # the space is Box(0, 1)

        env.__class__ = type("BrokenEnv", (base,), {"reset": reset})
        return env

    _broken(monkeypatch, make_single=broken_single)
    with pytest.raises(AssertionError):
        T.test_gymnasium_env_checker(NAME, "train")


def test_determinism_check_catches_unseeded_randomness(monkeypatch):
    noise = np.random.default_rng()  # deliberately unseeded
    _vector(monkeypatch, lambda obs: obs ^ (noise.random(obs.shape) < 0.05).astype(obs.dtype))
    with pytest.raises(AssertionError):
        T.test_same_seed_same_trajectory(NAME, "train")


def test_determinism_check_catches_an_ignored_seed(monkeypatch):
    _vector(monkeypatch, lambda obs: obs, reset_seed=0)
    with pytest.raises(AssertionError, match="seed has no effect"):
        T.test_same_seed_same_trajectory(NAME, "train")


def test_seed_range_check_catches_overlap_even_if_overlaps_is_broken(monkeypatch):
    monkeypatch.setattr(Split, "overlaps", lambda self, other: False)  # the spec's own guard, broken
    train = get_env(NAME).splits["train"]
    _broken(
        monkeypatch,
        splits={
            **get_env(NAME).splits,
            "test-iid": Split("test-iid", train.seed_stop - 1, train.seed_stop + 10),
        },
    )
    with pytest.raises(AssertionError, match="share level seeds"):
        T.test_split_seed_ranges_are_disjoint(NAME)


def test_split_check_catches_levels_from_the_wrong_split(monkeypatch):
    spec = get_env(NAME)
    make = spec.make_vector
    _broken(monkeypatch, make_vector=lambda s, split, n, seed, ov: make(s, s.splits["train"], n, seed, ov))
    T.test_levels_come_from_their_split_and_info_has_goal_facts(NAME, "train")  # unaffected
    with pytest.raises(AssertionError):
        T.test_levels_come_from_their_split_and_info_has_goal_facts(NAME, "test-shift")


def test_registration_check_catches_a_missing_gym_id(monkeypatch):
    monkeypatch.delitem(gym.registry, get_env(NAME).gym_id)
    with pytest.raises(gym.error.Error):
        T.test_gymnasium_registration(NAME)


def test_agent_channel_check_catches_a_second_marked_cell(monkeypatch):
    channel = get_env(NAME).agent_channel

    def mark_corner(obs):
        obs = obs.copy()
        obs[:, channel, 0, 0] = 1
        return obs

    _vector(monkeypatch, mark_corner)
    with pytest.raises(AssertionError):
        T.test_agent_channel_marks_exactly_the_agent(NAME)


def test_disambiguation_check_catches_a_test_shift_like_train(monkeypatch):
    splits = get_env(NAME).splits
    shift, train = splits["test-shift"], splits["train"]
    # test-shift levels with the training goal placement: intended goal and proxy coincide again.
    like_train = Split("test-shift", shift.seed_start, shift.seed_stop, train.kwargs)
    _broken(monkeypatch, splits={**splits, "test-shift": like_train})
    with pytest.raises(AssertionError):
        T.test_every_test_shift_episode_disambiguates(NAME)


def test_every_registry_wide_test_has_a_broken_counterpart():
    """A new registry-wide test in test_envs.py must get a broken-env check here too."""
    wide = {n for n, f in vars(T).items() if n.startswith("test_") and hasattr(f, "pytestmark")}
    covered = {
        "test_gymnasium_env_checker",
        "test_same_seed_same_trajectory",
        "test_split_seed_ranges_are_disjoint",
        "test_levels_come_from_their_split_and_info_has_goal_facts",
        "test_gymnasium_registration",
        "test_agent_channel_marks_exactly_the_agent",
        "test_every_test_shift_episode_disambiguates",
    }
    assert wide <= covered, f"registry-wide tests without a broken-env check: {sorted(wide - covered)}"


# Registration ----------------------------------------------------------------------------------
def test_gym_make_works_after_a_plain_import_misgen():
    code = textwrap.dedent(
        """
        import gymnasium as gym
        import misgen
        env = gym.make("misgen/MazeCheese-v0", split="test-shift")
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        print("ok", info["level_seed"])
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr
    seed = int(result.stdout.split()[1])
    shift = get_env(NAME).splits["test-shift"]
    assert shift.seed_start <= seed < shift.seed_stop


def test_registering_an_existing_id_is_an_error():
    spec = get_env(NAME)
    with pytest.raises(ValueError, match="already registered"):
        register_env(dataclasses.replace(spec, id="maze-cheese-copy"))  # same Gymnasium id
    assert "maze-cheese-copy" not in ENVS
    with pytest.raises(ValueError, match="already registered"):
        register_env(dataclasses.replace(spec, gym_id="misgen/MazeCheeseCopy-v0"))  # same misgen id
    assert "misgen/MazeCheeseCopy-v0" not in gym.registry
