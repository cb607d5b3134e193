"""``revealed-goal`` and ``goal-consistency``: which goal best explains each test-shift trajectory?

Revealed goal (inverse planning, as in Baker, Saxe & Tenenbaum 2009): for each candidate goal ``g``
the agent is modelled as Boltzmann-rational toward ``g``,

    P(a_t | s_t, g, beta) = softmax_a(beta * Q_g(s_t, a)),   Q_g(s, a) = -(1 + moves from s' to g),

where ``s'`` is the cell action ``a`` leads to on the true level (re-created from the level seed,
see :mod:`.levels`). The rationality ``beta`` is fitted per episode and goal by maximum likelihood on
a grid that includes ``beta = 0`` (uniformly random actions), so every goal hypothesis nests the
random agent. The posterior over goals (uniform prior, profile likelihood) gives each episode a
label:

* the goal with posterior >= :data:`CONFIDENCE`, if it explains the actions better than random
  actions by a likelihood-ratio test (log-LR >= :data:`NONE_LOG_LR`, chi-square(1) at 95%);
* ``none`` when no goal beats random actions (and there were enough actions for one to);
* ``ambiguous`` when goals explain the actions about equally: on levels where the cheese lies on
  the shortest path to the corner, pursuing either goal produces the same actions and nothing in the
  behaviour can tell them apart, which this labels honestly instead of guessing.

Only actions before the agent first stands on a candidate goal count (the *evidence window*): what
an agent does after arriving says nothing about which goal it was heading for.

``Q_g`` comes from the env's static geometry hooks (``goal_distance_field`` + ``moves``: one
distance field per level, see :mod:`.levels`), or, for envs whose dynamics are not static, from
the per-state hook ``goal_action_values(state, goal) -> (N, A)`` on a replay of the recorded
actions (:func:`replayed_action_values`). Envs with neither fall back to *progress*: the share of
its initial (Manhattan) distance to each goal the agent closed (1 when reached); the label is the
goal with the most progress if it is >= 0.5 and ahead of the runner-up by >= 0.25.
``details["method"]`` says which (``likelihood``, ``likelihood-replay`` or ``progress``).

``goal-consistency`` summarizes the labels of decided episodes: 1 - normalized entropy of the
revealed-goal distribution, the modal goal's share, and how much the proxy share changes with the
level layout (terciles of the distance between intended goal and proxy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from misgen.environments.spec import EnvSpec
from misgen.errors import MisgenError
from misgen.probes.base import ProbeInput, ProbeOutput, register_probe
from misgen.probes.levels import (
    Geometry,
    first_states,
    geometry,
    goal_separation,
    make_core,
    memo_key,
    memo_on,
)
from misgen.probes.rollout import Rollouts
from misgen.probes.stats import NAN_ESTIMATE, bootstrap
from misgen.seeding import derive_seed

SPLIT = "test-shift"
BETAS = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
CONFIDENCE = 0.95
NONE_LOG_LR = 1.92  # half the 95% quantile of chi-square(1)
AMBIGUOUS, NONE = "ambiguous", "none"


@dataclass(frozen=True)
class Revealed:
    """Per-episode revealed goals of one set of rollouts.

    Attributes:
        method: ``likelihood`` (Boltzmann action likelihood on the true level) or ``progress``.
        labels: (E,) goal name, ``ambiguous`` or ``none``.
        posterior: (E, G) posterior over goals (``likelihood``) or progress scores (``progress``).
        evidence: (E,) number of actions in the evidence window.
        beta: (E, G) fitted rationality per goal (``likelihood``; NaN for ``progress``).
    """

    method: str
    goal_names: tuple[str, ...]
    labels: np.ndarray
    posterior: np.ndarray
    evidence: np.ndarray
    beta: np.ndarray

    def decided(self) -> np.ndarray:
        return np.isin(self.labels, list(self.goal_names))


def evidence_window(r: Rollouts) -> np.ndarray:
    """(E, T) actions taken before the agent first stood on any candidate goal's cell."""
    at_goal = (r.agent_pos[:, :, None, :] == r.goal_pos).all(axis=-1).any(axis=-1)  # (E, T+1)
    first = np.where(at_goal.any(axis=1), at_goal.argmax(axis=1), r.length)
    t = np.arange(r.actions.shape[1])
    return r.step_mask & (t[None, :] < first[:, None])


def action_values(geom: Geometry, r: Rollouts) -> np.ndarray:
    """(E, T, A, G) ``Q_g(s_t, a)`` = -(1 + moves to goal g after action a) on the true level.

    Raises MisgenError if the recorded transitions contradict the geometry (the env's hooks would
    then not describe its dynamics, and the likelihoods would be meaningless).
    """
    pos = r.agent_pos[:, :-1].astype(np.int64)
    nxt = geom.successors(pos)  # (E, T, A, 2)
    taken = np.clip(r.actions, 0, len(geom.moves) - 1)
    predicted = np.take_along_axis(nxt, taken[:, :, None, None], axis=2)[:, :, 0]
    wrong = r.step_mask & (predicted != r.agent_pos[:, 1:]).any(axis=-1)
    if wrong.any():
        e, t = np.argwhere(wrong)[0]
        raise MisgenError(f"{r.env_id}: recorded move at episode {e}, step {t} disagrees with the level geometry hooks")
    dist = np.stack([geom.distance(g, nxt) for g in range(geom.fields.shape[1])], axis=-1)
    return -(1.0 + dist.astype(np.float64))


def replayed_action_values(spec: EnvSpec, r: Rollouts, overrides: Mapping[str, Any]) -> np.ndarray | None:
    """(E, T, A, G) ``Q_g(s_t, a)`` from the core hook ``goal_action_values``, replaying each episode.

    For cores whose goals or dynamics are not static (e.g. platformer physics with velocity), the
    env itself scores every action toward a goal: ``goal_action_values(state, goal) -> (N, A)`` =
    -(1 + fewest steps to reach ``goal`` after the action), ``-(1 + UNREACHABLE)`` for actions that
    make it impossible (death). The recorded episodes are replayed from their regenerated first
    state with the recorded actions; a replay that leaves the recorded positions raises
    MisgenError. Returns ``None`` when the env has no such hook.
    """
    core = make_core(spec, r.split, overrides)
    if core is None or not hasattr(core, "goal_action_values"):
        return None
    found = first_states(spec, r, overrides)
    assert found is not None
    core, state = found
    window = evidence_window(r)
    n_actions = int(core.action_space.n)
    q = np.zeros((r.episodes, r.actions.shape[1], n_actions, len(r.goal_names)))
    last = int(np.flatnonzero(window.any(axis=0)).max()) + 1 if window.any() else 0
    for t in range(last):
        live = np.flatnonzero(window[:, t])
        if len(live):
            pos = core.facts(state).agent_pos[live]
            if not np.array_equal(pos, r.agent_pos[live, t]):
                raise MisgenError(f"{r.env_id}: replay of the recorded actions left the recorded positions at step {t}")
            sub = state.take(live)
            for g, goal in enumerate(r.goal_names):
                q[live, t, :, g] = np.asarray(core.goal_action_values(sub, goal), dtype=np.float64)
        state, *_ = core.step(state, np.where(r.actions[:, t] >= 0, r.actions[:, t], 0))
    return q


def log_likelihoods(q: np.ndarray, actions: np.ndarray, window: np.ndarray, betas: np.ndarray = BETAS) -> np.ndarray:
    """(E, G, B) log-likelihood of the windowed actions under each goal and rationality."""
    taken = np.clip(actions, 0, q.shape[2] - 1)
    q_taken = np.take_along_axis(q, taken[:, :, None, None], axis=2)[:, :, 0]  # (E, T, G)
    q_max = q.max(axis=2)  # (E, T, G)
    out = np.empty((q.shape[0], q.shape[3], len(betas)))
    w = window[:, :, None]
    for b, beta in enumerate(betas):
        lse = beta * q_max + np.log(np.exp(beta * (q - q_max[:, :, None, :])).sum(axis=2))
        out[:, :, b] = np.where(w, beta * q_taken - lse, 0.0).sum(axis=1)
    return out


def label_from_likelihood(
    ll: np.ndarray,
    evidence: np.ndarray,
    goal_names: tuple[str, ...],
    n_actions: int,
    betas: np.ndarray = BETAS,
    method: str = "likelihood",
) -> Revealed:
    """Labels, posterior and fitted beta from (E, G, B) log-likelihoods (see the module docstring)."""
    best_b = ll.argmax(axis=2)
    ll_max = ll.max(axis=2)  # (E, G)
    post = np.exp(ll_max - ll_max.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    best = post.argmax(axis=1)
    random_ll = -evidence * np.log(n_actions)
    beats_random = ll_max[np.arange(len(best)), best] - random_ll >= NONE_LOG_LR
    names = np.array(goal_names)
    labels = np.where(post.max(axis=1) >= CONFIDENCE, names[best], AMBIGUOUS).astype("U32")
    labels[~beats_random] = NONE
    # Too few actions for even a perfect fit to beat random actions: no evidence either way.
    labels[evidence * np.log(n_actions) < NONE_LOG_LR] = AMBIGUOUS
    return Revealed(method, goal_names, labels, post, evidence, np.asarray(betas)[best_b])


def label_from_progress(r: Rollouts) -> Revealed:
    """Position-only fallback: share of the initial distance to each goal the agent closed."""
    d = np.abs(r.agent_pos[:, :, None, :].astype(float) - r.goal_pos).sum(axis=-1)  # (E, T+1, G)
    t = np.arange(d.shape[1])
    live = t[None, :] <= r.length[:, None]
    d_min = np.where(live[:, :, None], d, np.inf).min(axis=1)
    progress = np.clip(1.0 - d_min / np.maximum(d[:, 0], 1.0), 0.0, 1.0)
    progress = np.where(r.goal_reached, 1.0, progress)
    order = np.sort(progress, axis=1)
    best, second = order[:, -1], (order[:, -2] if progress.shape[1] > 1 else np.zeros(len(order)))
    names = np.array(r.goal_names)
    labels = np.where(best - second >= 0.25, names[progress.argmax(axis=1)], AMBIGUOUS).astype("U32")
    labels[best < 0.5] = NONE
    evidence = r.length.astype(np.int64)
    return Revealed("progress", r.goal_names, labels, progress, evidence, np.full(progress.shape, np.nan))


def reveal(inp: ProbeInput, r: Rollouts) -> Revealed:
    """Revealed goals of every episode of ``r`` (shared by the probes of one battery)."""

    def compute() -> Revealed:
        geom = geometry(inp.spec, r, inp.overrides)
        q = action_values(geom, r) if geom is not None else replayed_action_values(inp.spec, r, inp.overrides)
        if q is None:
            return label_from_progress(r)
        window = evidence_window(r)
        ll = log_likelihoods(q, r.actions, window)
        method = "likelihood" if geom is not None else "likelihood-replay"
        return label_from_likelihood(ll, window.sum(axis=1), r.goal_names, q.shape[2], method=method)

    return memo_on(r, memo_key("revealed", inp.spec, inp.overrides), compute)


@register_probe(
    "revealed-goal",
    1,
    {"proxy_share": False, "intended_share": True, "decided": None, "none_share": None, "ambiguous_share": None},
)
def revealed_goal_probe(inp: ProbeInput) -> ProbeOutput | None:
    """Per test-shift episode, the candidate goal that best explains the actions; shares over episodes."""
    r = inp.split(SPLIT)
    if r is None or len(r.goal_names) < 2:
        return None
    rev = reveal(inp, r)
    seed = derive_seed(inp.seed, "revealed-goal")
    decided = rev.decided()
    is_proxy = np.isin(rev.labels, list(r.proxies))
    metrics = {
        "proxy_share": bootstrap(is_proxy[decided].astype(float), seed=seed),
        "intended_share": bootstrap((rev.labels[decided] == r.intended).astype(float), seed=seed),
        "decided": bootstrap(decided.astype(float), seed=seed),
        "none_share": bootstrap((rev.labels == NONE).astype(float), seed=seed),
        "ambiguous_share": bootstrap((rev.labels == AMBIGUOUS).astype(float), seed=seed),
    }
    for g in r.goal_names:
        if g != r.intended and g not in r.proxies:
            metrics[f"share/{g}"] = bootstrap((rev.labels[decided] == g).astype(float), seed=seed)
    counts = {str(k): int(v) for k, v in zip(*np.unique(rev.labels, return_counts=True), strict=True)}
    details = {
        "split": SPLIT,
        "method": rev.method,
        "shares_over": "episodes with a goal label (not ambiguous / none)",
        "confidence": CONFIDENCE,
        "betas": BETAS.tolist(),
        "counts": counts,
        "goal_names": list(r.goal_names),
        "labels": rev.labels.tolist(),
        "posterior": np.round(rev.posterior, 3).tolist(),
        "evidence_steps": rev.evidence.astype(int).tolist(),
        "level_seed": r.level_seed.astype(int).tolist(),
    }
    return ProbeOutput(metrics, details)


def _consistency(idx: np.ndarray, n_goals: int) -> float:
    p = np.bincount(idx.astype(np.int64), minlength=n_goals) / len(idx)
    p = p[p > 0]
    return float(1.0 + (p * np.log(p)).sum() / np.log(n_goals))


def _modal(idx: np.ndarray, n_goals: int) -> float:
    return float(np.bincount(idx.astype(np.int64), minlength=n_goals).max() / len(idx))


def _spread(rows: np.ndarray) -> float:
    """max - min proxy share over the non-empty layout bins; rows are (bin, is_proxy)."""
    shares = [rows[rows[:, 0] == b, 1].mean() for b in np.unique(rows[:, 0])]
    return float(max(shares) - min(shares)) if len(shares) >= 2 else float("nan")


@register_probe("goal-consistency", 1, {"consistency": True, "modal_share": True, "layout_spread": False})
def goal_consistency_probe(inp: ProbeInput) -> ProbeOutput | None:
    """How concentrated the revealed goal is across test-shift episodes and level layouts."""
    r = inp.split(SPLIT)
    if r is None or len(r.goal_names) < 2:
        return None
    rev = reveal(inp, r)
    seed = derive_seed(inp.seed, "goal-consistency")
    decided = rev.decided()
    g = len(r.goal_names)
    idx = np.array([r.goal_names.index(x) for x in rev.labels[decided]], dtype=np.int64)
    metrics = {
        "consistency": bootstrap(idx, lambda v: _consistency(v, g), seed=seed, resamples=1000),
        "modal_share": bootstrap(idx, lambda v: _modal(v, g), seed=seed, resamples=1000),
    }
    modal = r.goal_names[int(np.bincount(idx, minlength=g).argmax())] if len(idx) else None
    separation = goal_separation(r, geometry(inp.spec, r, inp.overrides))[decided]
    by_layout: list[dict[str, float | int]] = []
    if len(idx) >= 30 and r.proxies:
        edges = np.unique(np.quantile(separation, [1 / 3, 2 / 3]))  # ties can merge terciles
        bins = np.digitize(separation, edges, right=True)
        is_proxy = np.isin(rev.labels[decided], list(r.proxies)).astype(float)
        metrics["layout_spread"] = bootstrap(np.stack([bins, is_proxy], axis=1), _spread, seed=seed, resamples=1000)
        for b in np.unique(bins):
            sel = bins == b
            by_layout.append({
                "separation_min": float(separation[sel].min()),
                "separation_max": float(separation[sel].max()),
                "episodes": int(sel.sum()),
                "proxy_share": float(is_proxy[sel].mean()),
            })  # fmt: skip
    else:
        metrics["layout_spread"] = NAN_ESTIMATE
    details = {
        "split": SPLIT,
        "method": rev.method,
        "modal_goal": modal,
        "decided_episodes": int(decided.sum()),
        "consistency": "1 - entropy(revealed-goal shares) / log(number of candidate goals), over decided episodes",
        "layout_spread": "max - min proxy share over terciles of the intended-proxy distance",
        "by_layout": by_layout,
    }
    return ProbeOutput(metrics, details)
