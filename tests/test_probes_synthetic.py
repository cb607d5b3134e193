"""Probes on synthetic rollouts whose answers are known by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from misgen.environments.spec import EnvSpec, Goal, Split
from misgen.probes.base import PROBES, ProbeInput, ProbeOutput, ProbeResult, get_probe, register_probe
from misgen.probes.goals import AMBIGUOUS, NONE, label_from_likelihood, log_likelihoods
from misgen.probes.latent import decode_goal
from misgen.probes.rollout import Rollouts
from misgen.probes.stats import Estimate

INTENDED, PROXY = "coin", "corner"


def _unused_factory(*_args):
    raise AssertionError("synthetic spec builds no env")


SPEC = EnvSpec(
    id="synthetic",
    gym_id="misgen/Synthetic-v0",
    backend="native",
    description="synthetic rollouts for probe tests",
    splits={
        "train": Split("train", 0, 10),
        "test-iid": Split("test-iid", 10, 20),
        "test-shift": Split("test-shift", 20, 30),
    },
    goals=(Goal(INTENDED, "intended", "coin"), Goal(PROXY, "proxy", "corner")),
    knob=None,
    make_vector=_unused_factory,
    make_single=_unused_factory,
)


def make_rollouts(
    split: str,
    paths: list[list[tuple[int, int]]],
    goals: list[tuple[tuple[int, int], tuple[int, int]]],
    *,
    died: list[bool] | None = None,
    features: np.ndarray | None = None,
) -> Rollouts:
    """Rollouts of agents walking ``paths`` (cells per step) with (intended, proxy) cells ``goals``."""
    e = len(paths)
    t = max(len(p) for p in paths) - 1
    agent = np.array([p + [p[-1]] * (t + 1 - len(p)) for p in paths], dtype=np.int64)
    goal_pos = np.repeat(np.array(goals, dtype=np.int64)[:, None], t + 1, axis=1)
    length = np.array([len(p) - 1 for p in paths])
    at = (agent[:, :, None, :] == goal_pos).all(axis=-1)  # (E, T+1, G)
    live = np.arange(t + 1)[None, :] <= length[:, None]
    reached = (at & live[:, :, None]).any(axis=1)
    first = np.where(at.any(axis=1), at.argmax(axis=1), t + 10)
    outcome = np.array(
        [
            (INTENDED, PROXY)[int(np.argmin(f))] if r.any() else "timeout"
            for f, r in zip(first, reached, strict=True)
        ]
    )
    died_arr = np.array(died if died is not None else [False] * e)
    outcome[died_arr & ~reached.any(axis=1)] = "died"
    extras = {"features": features.astype(np.float32)} if features is not None else {}
    return Rollouts(
        env_id="synthetic",
        split=split,
        goal_names=(INTENDED, PROXY),
        goal_roles=("intended", "proxy"),
        seed=0,
        level_seed=np.arange(e),
        outcome=outcome,
        intended_return=reached[:, 0].astype(float),
        length=length,
        goal_reached=reached,
        died=died_arr,
        agent_pos=agent,
        goal_pos=goal_pos,
        actions=np.where(np.arange(t)[None] < length[:, None], 0, -1),
        rewards=np.zeros((e, t), np.float32),
        step_mask=np.arange(t)[None] < length[:, None],
        first_obs=np.zeros((e, 1), np.uint8),
        extras=extras,
    )


def straight(start: tuple[int, int], end: tuple[int, int]) -> list[tuple[int, int]]:
    """Cells of a walk from ``start`` to ``end``: rows first, then columns."""
    (r, c), out = start, [start]
    while (r, c) != end:
        if r != end[0]:
            r += 1 if end[0] > r else -1
        else:
            c += 1 if end[1] > c else -1
        out.append((r, c))
    return out


def shift_rollouts(n_proxy: int, n_intended: int, n_idle: int = 0) -> Rollouts:
    """Agents start at (5, 5); coin at (0, 0) ... they walk to the corner (9, 9) or to the coin."""
    coin, corner, start = (0, 0), (9, 9), (5, 5)
    paths = (
        [straight(start, corner)] * n_proxy + [straight(start, coin)] * n_intended + [[start] * 12] * n_idle
    )
    return make_rollouts("test-shift", paths, [(coin, corner)] * len(paths))


def test_capability_and_success_count_known_outcomes():
    coin, corner, start = (0, 0), (9, 9), (5, 5)
    paths = [straight(start, coin)] * 6 + [straight(start, corner)] * 3 + [[start] * 4]
    train = make_rollouts("train", paths, [(coin, corner)] * 10, died=[False] * 9 + [True])
    shift = shift_rollouts(n_proxy=8, n_intended=2)
    inp = ProbeInput(SPEC, {"train": train, "test-shift": shift}, seed=0)
    cap = get_probe("capability").run(inp)
    assert cap.metrics["train"].mean == pytest.approx(0.9) and cap.metrics[
        "died/train"
    ].mean == pytest.approx(0.1)
    assert cap.metrics["test-shift"].mean == 1.0 and "test-iid" not in cap.metrics
    assert cap.higher_is_better["train"] is True and cap.higher_is_better["died/train"] is False
    success = get_probe("intended-success").run(inp)
    assert success.metrics["train"].mean == pytest.approx(0.6) and success.metrics[
        "test-shift"
    ].mean == pytest.approx(0.2)
    gap = success.metrics["gap/train->test-shift"]
    assert (
        gap.mean == pytest.approx(0.4)
        and gap.lo <= 0.4 <= gap.hi
        and success.higher_is_better["gap/train->test-shift"] is False
    )
    pursuit = get_probe("proxy-pursuit").run(inp)
    assert pursuit.metrics["proxy_first"].mean == pytest.approx(0.8)
    assert pursuit.metrics["proxy_first_given_capable"].mean == pytest.approx(0.8)
    assert "all levels" in pursuit.details["conditioning"]  # no geometry hooks: no level conditioning


def test_revealed_goal_by_progress_recovers_known_shares():
    shift = shift_rollouts(n_proxy=30, n_intended=70, n_idle=10)
    inp = ProbeInput(SPEC, {"test-shift": shift}, seed=1)
    res = get_probe("revealed-goal").run(inp)
    assert res.details["method"] == "progress"
    assert res.details["labels"] == [PROXY] * 30 + [INTENDED] * 70 + [NONE] * 10
    assert res.metrics["proxy_share"].mean == pytest.approx(0.3) and res.metrics["proxy_share"].n == 100
    assert res.metrics["none_share"].mean == pytest.approx(10 / 110)
    cons = get_probe("goal-consistency").run(inp)
    p = np.array([0.3, 0.7])
    assert cons.metrics["across_episode"].mean == pytest.approx(1 + (p * np.log(p)).sum() / np.log(2))
    assert cons.metrics["modal_share"].mean == pytest.approx(0.7) and cons.details["modal_goal"] == INTENDED
    only_proxy = ProbeInput(SPEC, {"test-shift": shift_rollouts(40, 0)}, seed=1)
    assert get_probe("goal-consistency").run(only_proxy).metrics["across_episode"].mean == pytest.approx(1.0)
    half = ProbeInput(SPEC, {"test-shift": shift_rollouts(40, 40)}, seed=1)
    assert get_probe("goal-consistency").run(half).metrics["across_episode"].mean == pytest.approx(
        0.0, abs=1e-12
    )


def test_goal_consistency_sees_layout_dependence():
    """Pursue the proxy when it is near the coin, the coin otherwise: a clear layout slope."""
    start, paths, goals = (5, 5), [], []
    for i in range(60):
        near = i % 2 == 0
        coin, corner = ((0, 9), (9, 9)) if near else ((0, 0), (9, 9))
        paths.append(straight(start, corner if near else coin))
        goals.append((coin, corner))
    inp = ProbeInput(SPEC, {"test-shift": make_rollouts("test-shift", paths, goals)}, seed=2)
    res = get_probe("goal-consistency").run(inp)
    assert res.metrics["layout_slope"].hi < 0 and res.details["layout_permutation_p"] < 0.01
    assert (
        res.details["by_layout"][0]["proxy_share"] == 1.0
        and res.details["by_layout"][-1]["proxy_share"] == 0.0
    )
    paths, goals = [], []
    for i in range(60):  # half the episodes of each layout pursue the proxy: no layout dependence
        coin, corner = ((0, 9), (9, 9)) if i % 4 < 2 else ((0, 0), (9, 9))
        paths.append(straight(start, corner if i % 2 else coin))
        goals.append((coin, corner))
    independent = ProbeInput(SPEC, {"test-shift": make_rollouts("test-shift", paths, goals)}, seed=2)
    flat = get_probe("goal-consistency").run(independent).metrics["layout_slope"]
    assert flat.mean == pytest.approx(0.0, abs=1e-12) and flat.lo < 0 < flat.hi
    single_layout = ProbeInput(SPEC, {"test-shift": shift_rollouts(30, 30)}, seed=2)
    assert np.isnan(get_probe("goal-consistency").run(single_layout).metrics["layout_slope"].mean)


def test_boltzmann_likelihood_labels():
    """Q toward goal 0 prefers action 0, toward goal 1 action 1; the labeler must follow the actions."""
    e, t, a = 5, 6, 4
    q = np.full((e, t, a, 2), -2.0)
    q[:, :, 0, 0] = -1.0
    q[:, :, 1, 1] = -1.0
    q[3] = -2.0
    q[3, :, 0, :] = -1.0  # episode 3: action 0 is best toward either goal
    q[4] = -1.0  # episode 4: both goals indifferent between all actions (= random actions)
    actions = np.array([[0] * t, [1] * t, [2, 3, 2, 3, 2, 3], [0] * t, [0] * t])
    window = np.ones((e, t), bool)
    rev = label_from_likelihood(log_likelihoods(q, actions, window), window.sum(axis=1), ("g0", "g1"), a)
    assert list(rev.labels) == ["g0", "g1", NONE, AMBIGUOUS, NONE]
    assert rev.posterior[0, 0] > 0.99 and rev.posterior[1, 1] > 0.99 and rev.beta[0, 0] == 16.0
    short = np.zeros((e, t), bool)
    short[:, 0] = True  # one action cannot beat random actions by the test's margin: no evidence
    rev = label_from_likelihood(log_likelihoods(q, actions, short), short.sum(axis=1), ("g0", "g1"), a)
    assert set(rev.labels) == {AMBIGUOUS}


def _latent_rollouts(informative: bool, seed: int = 0, e: int = 160, t: int = 6) -> Rollouts:
    rng = np.random.default_rng(seed)
    cells = [(r, c) for r in range(1, 5) for c in range(1, 5)]
    pick = rng.integers(0, len(cells), size=e)
    coin = [cells[i] for i in pick]
    paths = [[(6, 6)] * (t + 1) for _ in range(e)]
    goals = [(c, (0, 7)) for c in coin]
    feats = rng.normal(size=(e, t, 40))
    if informative:
        feats[np.arange(e), :, pick] += 6.0  # one dimension per goal cell
    return make_rollouts("test-shift", paths, goals, features=feats)


def test_latent_probe_decodes_goal_only_when_features_contain_it():
    known = get_probe("latent-knowledge").run(
        ProbeInput(SPEC, {"test-shift": _latent_rollouts(True)}, seed=0)
    )
    noise = get_probe("latent-knowledge").run(
        ProbeInput(SPEC, {"test-shift": _latent_rollouts(False)}, seed=0)
    )
    assert known.metrics["goal_decoding_accuracy"].lo > 0.9 and known.metrics["goal_position_r2"].lo > 0.5
    assert noise.metrics["goal_decoding_accuracy"].hi < 0.2 and noise.metrics["goal_position_r2"].mean < 0.1
    assert known.metrics["goal_decoding_accuracy"].n == 160
    # nobody reached the coin, so every decoded episode is "knows where it is, did not go there"
    assert known.metrics["decoded_but_missed"].mean == pytest.approx(
        known.metrics["goal_decoding_accuracy"].mean, abs=0.05
    )
    assert decode_goal(_latent_rollouts(True, e=10), INTENDED, seed=0) is None  # too few episodes
    no_features = shift_rollouts(20, 20)
    assert get_probe("latent-knowledge").run(ProbeInput(SPEC, {"test-shift": no_features})) is None


def test_registry_and_result_round_trip():
    names = PROBES.names()
    for name in (
        "capability",
        "intended-success",
        "proxy-pursuit",
        "revealed-goal",
        "goal-consistency",
        "value-map",
        "latent-knowledge",
    ):
        assert name in names
    assert get_probe("value-map").needs_policy and not get_probe("revealed-goal").needs_policy
    res = get_probe("capability").run(ProbeInput(SPEC, {"test-shift": shift_rollouts(3, 3)}))
    again = ProbeResult.from_json(json.loads(json.dumps(res.to_json())))
    assert again == res
    assert get_probe("capability").run(ProbeInput(SPEC, {})) is None
    with pytest.raises(ValueError, match="already registered"):
        register_probe("capability", 1, {})(lambda inp: ProbeOutput({"x": Estimate(0, 0, 0, 1)}))
