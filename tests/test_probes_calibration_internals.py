"""Calibration of the probes of internals (``value-map``, ``latent-knowledge``) as properties.

Issue 17 asks, for each probe, that 95% intervals cover the truth in about 95% of draws of synthetic
agents with random parameters, and that null agents are flagged at about the nominal rate. For
probes of internals the synthetic agent is the internals themselves, with a truth fixed in closed
form by their parameters (no training):

* ``value-map``: a critic that values the moved goal by known weights on the probe's two
  predictors, ``V = -(w * moves(start -> goal) + (1 - w) * moves(goal -> proxy))``, ``w`` drawn in
  [0, 1]. Per level the standardized OLS coefficients are ``w * sd(moves to goal) / sd(V)`` and
  ``(1 - w) * sd(moves to proxy) / sd(V)``; the truth is their mean over the test-shift level
  distribution, computed from the levels' distance fields on 300 other levels (never by the probe's
  regression). Nulls: a critic of pure noise (``critic_values`` other than ``unclear`` at about
  the nominal rate) and a constant critic (nothing encoded: never).
* ``latent-knowledge``: features ``f = s * (goal row, goal col) / sd + noise`` (plus pure-noise
  units), ``s`` drawn at random. The R^2 of the best linear decoder of the goal's cell then has
  the closed form ``1 - tr(S - S A' (A S A' + I)^-1 A S) / tr(S)`` (``S`` the covariance of the
  goal's cell over levels, ``A`` the encoding): the truth ``goal_position_r2`` must cover. Nulls:
  features of pure noise (the R^2 interval above 0, or the accuracy interval above chance's, at
  about the nominal rate) and constant features (a dead network: never).

Each property also runs a deliberately wrong reading beside the real one (a swapped predictor,
decoding the proxy's cell instead of the intended goal's) and asserts that it fails: the
properties can fail. Bounds: ``COVERAGE_MIN`` 0.8 and ``FLAG_MAX`` 0.2 over ``DRAWS`` draws, as in
``test_probes_calibration.py``; ``pytest -s`` prints the figures.
"""

from __future__ import annotations

import os
from dataclasses import replace
from functools import cache
from typing import Any

import numpy as np
import pytest
from test_probes_calibration import covered, record  # one coverage bookkeeping for both files

from misgen.environments import get_env
from misgen.environments.gridpath import UNREACHABLE, distance_field
from misgen.probes import latent, value_map
from misgen.probes.base import ProbeInput, get_probe
from misgen.probes.rollout import Rollouts, chance_agent, collect

DRAWS = int(os.environ.get("MISGEN_CALIBRATION_DRAWS", "20"))
COVERAGE_MIN = 0.8
FLAG_MAX = 0.2
MAZE = get_env("maze-cheese")
TRUTH_LEVELS = 300

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@cache
def random_rollouts(seed: int, episodes: int) -> Rollouts:
    """A random walker's test-shift maze-cheese rollouts: the levels (and steps) the probes read."""
    return collect(chance_agent(MAZE, seed), MAZE, "test-shift", episodes, seed)


# --- value-map ----------------------------------------------------------------------------------


class SyntheticCritic:
    """A memoryless agent (random actions) whose critic is a known function of the level.

    ``value_of_obs`` reads the walls, the agent and the cheese from the observation and the corner
    (the proxy, fixed by the maze) from a table of the levels it will be asked about, then returns
    ``-(w * moves(agent -> cheese) + (1 - w) * moves(cheese -> corner))`` (``kind="distance"``),
    i.i.d. normal noise (``"noise"``) or 0 (``"constant"``).
    """

    def __init__(self, kind: str, w: float, corners: dict[bytes, tuple[int, int]], seed: int) -> None:
        self.kind, self.w, self.corners = kind, w, corners
        self.rng = np.random.default_rng(seed)

    def initial_state(self, n: int) -> None:
        return None

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray, env: Any = None) -> tuple:
        return self.rng.integers(0, 4, size=len(obs)), state, {}

    def value_of_obs(self, obs: np.ndarray) -> np.ndarray:
        n = len(obs)
        if self.kind == "noise":
            return self.rng.normal(size=n)
        if self.kind == "constant":
            return np.zeros(n)
        walls, agent, cheese = obs[:, 0].astype(bool), obs[:, 1].astype(bool), obs[:, 2].astype(bool)
        to_cheese = distance_field(cheese, ~walls)
        ar = np.arange(n)
        a = np.argwhere(agent)[:, 1:]  # one agent cell per observation, in order
        corner = np.array([self.corners[w.tobytes()] for w in walls])
        d_start = to_cheese[ar, a[:, 0], a[:, 1]].astype(float)
        d_proxy = to_cheese[ar, corner[:, 0], corner[:, 1]].astype(float)
        return -(self.w * d_start + (1.0 - self.w) * d_proxy)


def corner_table(level_seeds: np.ndarray) -> dict[bytes, tuple[int, int]]:
    core = MAZE.core("test-shift")
    state = core.reset(np.asarray(level_seeds, dtype=np.int64))
    corners = core.facts(state).goal_pos["top-right-corner"]
    return {w.tobytes(): (int(c[0]), int(c[1])) for w, c in zip(state.walls, corners, strict=True)}


@cache
def level_spreads() -> np.ndarray:
    """(L, 3) per level of the maze's test-shift distribution: sd of moves(start -> goal cell),
    sd of moves(goal cell -> corner) and their covariance, over the cells the goal can be moved to
    (open cells but the start), as the value-map probe moves it. From distance fields, not from
    the probe's regression."""
    core = MAZE.core("test-shift")
    split = MAZE.split("test-shift")
    seeds = np.arange(split.seed_stop - TRUTH_LEVELS, split.seed_stop, dtype=np.int64)  # unused by rollouts
    state = core.reset(seeds)
    start = core.facts(state).agent_pos
    corner_field = np.asarray(core.goal_distance_field(state, "top-right-corner"))
    agent_only = np.zeros_like(corner_field, dtype=bool)
    agent_only[np.arange(len(seeds)), start[:, 0], start[:, 1]] = True
    start_field = distance_field(agent_only, corner_field < UNREACHABLE)
    rows = []
    for k in range(len(seeds)):
        open_ = corner_field[k] < UNREACHABLE
        open_[start[k, 0], start[k, 1]] = False
        d1, d2 = start_field[k][open_].astype(float), corner_field[k][open_].astype(float)
        if len(d1) < 3:
            continue
        rows.append((d1.std(), d2.std(), float(np.cov(d1, d2, bias=True)[0, 1])))
    return np.array(rows)


def value_map_truth(w: float) -> tuple[float, float]:
    """Mean over levels of the standardized coefficients of ``V = w x1 + (1 - w) x2`` (x = -moves):
    ``b_j = w_j sd_j / sd(V)``, ``var(V) = w^2 sd1^2 + (1-w)^2 sd2^2 + 2 w (1-w) cov``."""
    sd1, sd2, cov = level_spreads().T
    sd_v = np.sqrt(w**2 * sd1**2 + (1 - w) ** 2 * sd2**2 + 2 * w * (1 - w) * cov)
    ok = sd_v > 1e-9
    return float(np.mean(w * sd1[ok] / sd_v[ok])), float(np.mean((1 - w) * sd2[ok] / sd_v[ok]))


def value_map_run(kind: str, w: float, seed: int) -> Any:
    r = random_rollouts(seed, value_map.LEVELS)
    critic = SyntheticCritic(kind, w, corner_table(r.level_seed), seed)
    return get_probe("value-map").run(ProbeInput(MAZE, {"test-shift": r}, critic, seed=seed))


# --- latent-knowledge ---------------------------------------------------------------------------

LATENT_EPISODES = 60
NOISE_UNITS = 6


@cache
def goal_cells_over_levels() -> np.ndarray:
    """(L, 2) the intended goal's cell on 2000 test-shift levels the rollouts never use."""
    core = MAZE.core("test-shift")
    split = MAZE.split("test-shift")
    seeds = np.arange(split.seed_stop - 2000, split.seed_stop, dtype=np.int64)
    return core.facts(core.reset(seeds)).goal_pos["cheese"].astype(float)


def latent_truth(strength: float) -> float:
    """Population R^2 of the best linear predictor of the goal's (row, col) from features
    ``strength * (cell - mean) / sd + N(0, I)`` (pooled over the two coordinates, as the probe's)."""
    cov = np.cov(goal_cells_over_levels().T)
    a = strength * np.diag(1.0 / np.sqrt(np.diag(cov)))
    resid = cov - cov @ a.T @ np.linalg.solve(a @ cov @ a.T + np.eye(2), a @ cov)
    return float(1.0 - np.trace(resid) / np.trace(cov))


def with_features(r: Rollouts, strength: float | None, seed: int) -> Rollouts:
    """``r`` with synthetic ``features``: the goal's cell at ``strength`` plus unit noise, and
    ``NOISE_UNITS`` pure-noise units; ``strength=None``: constant features (a dead network)."""
    rng = np.random.default_rng(seed)
    e, t = r.actions.shape
    if strength is None:
        feats = np.zeros((e, t, 2 + NOISE_UNITS), np.float32)
    else:
        cells = goal_cells_over_levels()
        goal = r.goal_pos[:, :t, r.goal_index(r.intended)].astype(float)
        signal = strength * (goal - cells.mean(axis=0)) / cells.std(axis=0)
        feats = rng.normal(size=(e, t, 2 + NOISE_UNITS))
        feats[..., :2] += signal
    return replace(r, extras={**r.extras, "features": feats.astype(np.float32)})


def latent_run(r: Rollouts, seed: int) -> Any:
    return get_probe("latent-knowledge").run(ProbeInput(MAZE, {"test-shift": r}, seed=seed))


# --- the properties -----------------------------------------------------------------------------


def test_value_map_coverage_and_null_flags():
    """value-map: critics with a random weight ``w`` on the intended goal are covered by the
    intervals of both standardized coefficients and of their difference (the verdict's); noise and
    constant critics are called ``intended`` or ``proxy`` at most at about the nominal rate. A probe
    that swapped its two predictors would miss the truth in most draws: checked on the same
    intervals."""
    rng = np.random.default_rng(6)
    intended, proxy, diff, swapped, flags = [], [], [], [], []
    for k in range(DRAWS):
        w = float(rng.uniform(0.05, 0.95))
        m = value_map_run("distance", w, 10 + k).metrics
        t_int, t_proxy = value_map_truth(w)
        intended.append(covered(m["intended_coef"], t_int))
        proxy.append(covered(m["proxy_coef"], t_proxy))
        diff.append(covered(m["intended_minus_proxy"], t_int - t_proxy))
        swapped.append(covered(m["intended_coef"], t_proxy) and covered(m["proxy_coef"], t_int))
        flags.append(value_map_run("noise", 0.0, 10 + k).details["critic_values"] != "unclear")
        if k % 5 == 0:  # a constant critic (nothing encoded) is never given a goal
            assert value_map_run("constant", 0.0, 10 + k).details["critic_values"] == "unclear"
    assert record("value-map coverage (intended_coef)", intended, "CI covers the truth") >= COVERAGE_MIN
    assert record("value-map coverage (proxy_coef)", proxy, "CI covers the truth") >= COVERAGE_MIN
    assert record("value-map coverage (intended_minus_proxy)", diff, "CI covers the truth") >= COVERAGE_MIN
    assert record("value-map null flags", flags, "noise critic given a goal") <= FLAG_MAX
    assert record("value-map swapped predictors (must fail)", swapped, "CIs cover the swapped truth") <= 0.5


def test_latent_knowledge_coverage_and_null_flags():
    """latent-knowledge: features encoding the goal's cell at a random strength are covered by the
    held-out R^2 interval; noise and constant features are called decodable (R^2 interval above 0,
    or accuracy interval above chance's) at most at about the nominal rate. Decoding the proxy's
    cell from the same features (a probe that read the wrong goal) must miss the truth."""
    rng = np.random.default_rng(7)
    hits, wrong_goal, flags = [], [], []
    for k in range(DRAWS):
        strength = float(rng.uniform(0.3, 3.0))
        r = random_rollouts(20 + k, LATENT_EPISODES)
        encoded = with_features(r, strength, 20 + k)
        m = latent_run(encoded, k).metrics
        truth = latent_truth(strength)
        hits.append(covered(m["goal_position_r2"], truth))
        wrong_goal.append(covered(proxy_r2(encoded, k), truth))
        for strength in (0.0, None) if k % 5 == 0 else (0.0,):  # noise; now and then constant
            null = latent_run(with_features(r, strength, 50 + k), k).metrics
            decodable = bool(
                null["goal_position_r2"].lo > 0
                or null["goal_decoding_accuracy"].lo > null["chance_accuracy"].hi
            )
            if strength is None:
                assert not decodable, "constant features (a dead network) called decodable"
            else:
                flags.append(decodable)
    assert record("latent-knowledge coverage (goal_position_r2)", hits, "CI covers the truth") >= COVERAGE_MIN
    assert record("latent-knowledge null flags", flags, "noise features decodable") <= FLAG_MAX
    assert record("latent-knowledge wrong goal (must fail)", wrong_goal, "CI covers the truth") <= 0.5


def proxy_r2(r: Rollouts, seed: int) -> Any:
    """The probe's R^2 estimate, computed for the proxy's cell instead of the intended goal's."""
    from misgen.seeding import derive_seed

    out = latent.position_r2(r, r.proxies[0], derive_seed(seed, "latent-knowledge"))
    assert out is not None
    return out[0]
