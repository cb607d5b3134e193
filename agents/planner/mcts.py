"""Batched Monte-Carlo tree search over a native env's functional core.

One call of :func:`search` grows one tree per env of a batch. Every simulation descends all ``B``
trees at once (a Python loop over depth, NumPy over envs), expands at most one new leaf per env
with a single batched ``core.step`` on the branched states, scores all new leaves with a single
batched network call, and backs the values up (a Python loop over depth again). So a search costs
``num_simulations`` network calls on ``B`` observations, whatever ``B`` is.

Node ``m`` of every tree is the node created by simulation ``m`` (node 0 is the root), so the
env states of all nodes live in one preallocated pool with row ``m * B + b``; branching a leaf is
a gather of ``B`` rows, and no per-node Python object exists.

Two selection rules (``SearchConfig.rule``):

* ``puct``: AlphaZero / MuZero pUCT everywhere, ``Q + c(N) * P * sqrt(N) / (1 + n)`` with
  ``c(N) = c_init + log((N + c_base + 1) / c_base)`` and Q min-max normalised per node over the
  node value and its visited children (unvisited children count as the minimum), as in DeepMind's
  ``mctx.muzero_policy``. Optional Dirichlet noise on the root prior (training). Policy target:
  the root visit distribution; action: sampled from it (temperature 1) or its argmax.
* ``gumbel``: Gumbel MuZero (Danihelka et al. 2022, "Policy improvement by planning with Gumbel"),
  as in ``mctx.gumbel_muzero_policy``: Gumbel-top-k + sequential halving at the root, the
  deterministic ``argmax(pi' - n / (1 + N))`` rule inside the tree, completed Q-values by the
  mixed value, ``sigma(q) = (maxvisit_init + max n) * value_scale * q``. Policy target:
  ``softmax(logits + sigma(completed q))``, which improves the prior even at 4-16 simulations.

Values: ``Q(s, a) = r(s, a) + discount * W(s') / N(s')``. A new leaf is valued by the network
(0 if the core says the transition terminated: terminal nodes are never expanded, and a
simulation that reaches one backs up 0 from there). The edge reward ``r(s, a)`` is the learned
reward model's prediction on the child's observation (``reward_source="learned"``) or the core's
true reward (``"true"``, a control). The core's time-limit truncation is ignored inside the tree
(observations carry no clock, so the value cannot know it either).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Evaluator = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""``obs (n, *obs_shape) -> (prior logits (n, A), value (n,), reward (n,))``; reward is the model's
prediction of the reward received on arriving at ``obs``."""

SearchRule = Literal["gumbel", "puct"]
RewardSource = Literal["learned", "true"]


@dataclass(frozen=True)
class SearchConfig:
    """Options of one search.

    Attributes:
        num_simulations: simulations per tree (each expands at most one node).
        rule: ``gumbel`` (Gumbel MuZero) or ``puct`` (AlphaZero pUCT).
        discount: per-step discount inside the tree.
        reward_source: edge rewards from the learned model (``learned``) or the core (``true``).
        max_considered: Gumbel: actions sampled without replacement at the root (sequential
            halving over them).
        value_scale: Gumbel: ``c_scale`` of sigma(q).
        maxvisit_init: Gumbel: ``c_visit`` of sigma(q).
        pb_c_init: pUCT exploration constant.
        pb_c_base: pUCT exploration growth base.
        dirichlet_alpha: pUCT: Dirichlet concentration of the root noise.
        dirichlet_fraction: pUCT: share of root prior replaced by noise (when ``noise``).
        q_range_floor: floor of the denominator when Q-values are min-max rescaled (both rules), in
            reward units. mctx uses 1e-8, which stretches any spread of Q, however tiny, to the
            full [0, 1]; with sparse rewards and near-zero early values that turns network noise
            into confident policy targets and collapses exploration. A floor near the reward scale
            leaves differences much smaller than it small.
    """

    num_simulations: int = 16
    rule: SearchRule = "gumbel"
    discount: float = 0.97
    reward_source: RewardSource = "learned"
    max_considered: int = 16
    value_scale: float = 0.1
    maxvisit_init: float = 50.0
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25
    q_range_floor: float = 1e-8

    def __post_init__(self) -> None:
        if self.num_simulations < 1:
            raise ValueError(f"num_simulations must be >= 1, got {self.num_simulations}")
        if self.rule not in ("gumbel", "puct"):
            raise ValueError(f"rule must be gumbel or puct, got {self.rule!r}")
        if self.reward_source not in ("learned", "true"):
            raise ValueError(f"reward_source must be learned or true, got {self.reward_source!r}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {self.discount}")
        if self.max_considered < 1:
            raise ValueError(f"max_considered must be >= 1, got {self.max_considered}")
        if self.q_range_floor <= 0:
            raise ValueError(f"q_range_floor must be > 0, got {self.q_range_floor}")


@dataclass(frozen=True)
class SearchResult:
    """What a search returns for a batch of ``B`` roots with ``A`` actions.

    Attributes:
        action: (B,) chosen action.
        policy_target: (B, A) improved policy to train the prior on.
        visit_counts: (B, A) root children visits.
        q_values: (B, A) root Q-values, completed with the mixed value where unvisited.
        root_value: (B,) search value of the root (``W / N``).
        raw_value: (B,) network value of the root observation.
        root_logits: (B, A) prior logits at the root (before noise).
        root_reward: (B,) reward model's prediction on the root observation.
        max_depth: (B,) deepest node expanded.
        tree: the raw node arrays (for tests and debugging).
    """

    action: np.ndarray
    policy_target: np.ndarray
    visit_counts: np.ndarray
    q_values: np.ndarray
    root_value: np.ndarray
    raw_value: np.ndarray
    root_logits: np.ndarray
    root_reward: np.ndarray
    max_depth: np.ndarray
    tree: dict[str, np.ndarray]


class StateRows:
    """Rows of env states in one preallocated BatchState-shaped set of arrays (the tree's node
    pool and the replay's stored states)."""

    def __init__(self, template: Any, num_rows: int) -> None:
        self.fields = [f.name for f in dataclasses.fields(template)]
        self.arrays = {}
        for name in self.fields:
            value = np.asarray(getattr(template, name))
            self.arrays[name] = np.empty((num_rows, *value.shape[1:]), dtype=value.dtype)
        self.template = template

    def put_rows(self, rows: np.ndarray, states: Any) -> None:
        for name in self.fields:
            self.arrays[name][rows] = getattr(states, name)

    def get_rows(self, rows: np.ndarray) -> Any:
        return dataclasses.replace(self.template, **{k: v[rows] for k, v in self.arrays.items()})


class StatePool(StateRows):
    """Env states of all tree nodes, row ``node * B + env``."""

    def __init__(self, root: Any, num_nodes: int) -> None:
        self.batch = len(root)
        super().__init__(root, num_nodes * self.batch)
        self.put(0, np.arange(self.batch), root)

    def put(self, node: int, envs: np.ndarray, states: Any) -> None:
        self.put_rows(node * self.batch + envs, states)

    def get(self, nodes: np.ndarray, envs: np.ndarray) -> Any:
        return self.get_rows(nodes * self.batch + envs)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def considered_visit_sequence(max_considered: int, num_simulations: int) -> np.ndarray:
    """Sequential halving schedule: the visit count an action must have to be picked at sim ``k``.

    Same as ``mctx._src.seq_halving.get_sequence_of_considered_visits``.
    """
    if max_considered <= 1:
        return np.arange(num_simulations)
    log2max = math.ceil(math.log2(max_considered))
    sequence: list[int] = []
    visits = [0] * max_considered
    considered = max_considered
    while len(sequence) < num_simulations:
        extra = max(1, int(num_simulations / (log2max * considered)))
        for _ in range(extra):
            sequence.extend(visits[:considered])
            for i in range(considered):
                visits[i] += 1
        considered = max(2, considered // 2)
    return np.array(sequence[:num_simulations], dtype=np.int64)


class Tree:
    """Node arrays of ``B`` trees with room for ``M`` nodes each, and the selection rules."""

    def __init__(self, batch: int, num_nodes: int, num_actions: int, cfg: SearchConfig) -> None:
        b, m, a = batch, num_nodes, num_actions
        self.cfg = cfg
        self.envs = np.arange(b)
        self.children = np.full((b, m, a), -1, np.int64)
        self.parent = np.full((b, m), -1, np.int64)
        self.visits = np.zeros((b, m), np.float64)
        self.value_sum = np.zeros((b, m), np.float64)
        self.reward = np.zeros((b, m), np.float64)
        self.raw_value = np.zeros((b, m), np.float64)
        self.terminal = np.zeros((b, m), bool)
        self.logits = np.zeros((b, m, a), np.float64)
        self.depth = np.zeros((b, m), np.int64)
        # Returns without the exploration bonus (the learned objective alone); the same arrays
        # when the search has no bonus.
        self.plain_sum = self.value_sum
        self.plain_reward = self.reward

    def separate_objective(self) -> None:
        """Keep bonus-free sums apart from the (bonus-including) ones that steer the search."""
        self.plain_sum = np.zeros_like(self.value_sum)
        self.plain_reward = np.zeros_like(self.reward)

    def objective_view(self) -> Tree:
        """This tree with Q-values of the learned objective alone (bonus excluded)."""
        view = copy.copy(self)
        view.value_sum, view.reward = self.plain_sum, self.plain_reward
        return view

    def node_value(self, envs: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        return self.value_sum[envs, nodes] / np.maximum(self.visits[envs, nodes], 1.0)

    def child_stats(self, envs: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Children visits (k, A) and Q-values (k, A; 0 where unvisited) of nodes ``(envs, nodes)``."""
        kids = self.children[envs, nodes]
        seen = kids >= 0
        safe = np.maximum(kids, 0)
        e = envs[:, None]
        n = np.where(seen, self.visits[e, safe], 0.0)
        v = self.value_sum[e, safe] / np.maximum(self.visits[e, safe], 1.0)
        q = np.where(seen, self.reward[e, safe] + self.cfg.discount * v, 0.0)
        return n, q

    # Q transforms (mctx.qtransforms) ----------------------------------------------------------
    def q_by_parent_and_siblings(self, envs: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        n, q = self.child_stats(envs, nodes)
        node_v = self.node_value(envs, nodes)
        safe = np.where(n > 0, q, node_v[:, None])
        lo = np.minimum(node_v, safe.min(axis=1))
        hi = np.maximum(node_v, safe.max(axis=1))
        completed = np.where(n > 0, q, lo[:, None])
        return (completed - lo[:, None]) / np.maximum(hi - lo, self.cfg.q_range_floor)[:, None]

    def completed_q(
        self, envs: np.ndarray, nodes: np.ndarray, logits: np.ndarray | None = None
    ) -> np.ndarray:
        """Unscaled Q completed by the mixed value (unvisited actions get the mixed value)."""
        n, q = self.child_stats(envs, nodes)
        logits = self.logits[envs, nodes] if logits is None else logits
        prior = np.maximum(softmax(logits), np.finfo(np.float64).tiny)
        total = n.sum(axis=1)
        seen = n > 0
        mass = np.where(seen, prior, 0.0).sum(axis=1)
        weighted = np.where(seen, prior * q / np.where(mass > 0, mass, 1.0)[:, None], 0.0).sum(axis=1)
        mixed = (self.raw_value[envs, nodes] + total * weighted) / (total + 1.0)
        return np.where(seen, q, mixed[:, None])

    def sigma_q(self, envs: np.ndarray, nodes: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        """Gumbel MuZero's sigma(completed q): min-max rescaled, times (c_visit + max n) * c_scale."""
        q = self.completed_q(envs, nodes, logits)
        lo, hi = q.min(axis=1, keepdims=True), q.max(axis=1, keepdims=True)
        q = (q - lo) / np.maximum(hi - lo, self.cfg.q_range_floor)
        n, _ = self.child_stats(envs, nodes)
        return (self.cfg.maxvisit_init + n.max(axis=1, keepdims=True)) * self.cfg.value_scale * q

    # Selection rules ----------------------------------------------------------------------------
    def puct_select(self, envs: np.ndarray, nodes: np.ndarray, logits: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        n, _ = self.child_stats(envs, nodes)
        parent_n = self.visits[envs, nodes][:, None]
        pb_c = cfg.pb_c_init + np.log((parent_n + cfg.pb_c_base + 1.0) / cfg.pb_c_base)
        score = self.q_by_parent_and_siblings(envs, nodes) + np.sqrt(parent_n) * pb_c * softmax(logits) / (
            n + 1.0
        )
        return score.argmax(axis=1)

    def gumbel_interior_select(self, envs: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        n, _ = self.child_stats(envs, nodes)
        probs = softmax(self.logits[envs, nodes] + self.sigma_q(envs, nodes))
        return (probs - n / (1.0 + n.sum(axis=1, keepdims=True))).argmax(axis=1)

    def gumbel_root_score(self, gumbel: np.ndarray, considered_visit: np.ndarray) -> np.ndarray:
        """mctx ``score_considered``: only actions with exactly ``considered_visit`` visits compete."""
        root = np.zeros_like(self.envs)
        n, _ = self.child_stats(self.envs, root)
        logits = self.logits[self.envs, root]
        logits = logits - logits.max(axis=1, keepdims=True)
        score = np.maximum(-1e9, gumbel + logits + self.sigma_q(self.envs, root))
        return np.where(n == considered_visit[:, None], score, -np.inf)


def search(
    core: Any,
    root_state: Any,
    evaluate: Evaluator,
    cfg: SearchConfig,
    rng: np.random.Generator | None = None,
    *,
    noise: bool = False,
    sample: bool = False,
    edge_bonus: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> SearchResult:
    """Grow one tree per env from ``root_state`` and pick an action for each.

    Args:
        core: the functional core (``step``, ``observe``) used as the model of the dynamics.
        root_state: BatchState of the ``B`` roots (not modified).
        evaluate: the network, see :data:`Evaluator`.
        cfg: search options.
        rng: generator for Gumbel / Dirichlet noise and action sampling (needed when ``noise`` or
            ``sample``).
        noise: Gumbel: sample the root Gumbel variables (else 0, a deterministic search); pUCT:
            mix Dirichlet noise into the root prior.
        sample: pUCT: sample the action from the visit distribution instead of its argmax
            (Gumbel's action is already a sample when ``noise``).
        edge_bonus: ``(env rows, child obs) -> (k,)`` added to the reward of new edges (the
            planner's training-only exploration bonus); ``None`` adds nothing. The bonus steers
            selection and the chosen action only: the returned Q-values, root value and (Gumbel)
            policy target are those of the learned objective alone, backed up separately.
    """
    b = len(root_state)
    obs = core.observe(root_state)
    logits, value, reward = (np.asarray(x, np.float64) for x in evaluate(obs))
    a = logits.shape[1]
    sims = cfg.num_simulations
    tree = Tree(b, sims + 1, a, cfg)
    pool = StatePool(root_state, sims + 1)
    envs = tree.envs
    root_logits = logits.copy()
    if cfg.rule == "puct" and noise:
        assert rng is not None, "noise needs a generator"
        dirichlet = rng.dirichlet(np.full(a, cfg.dirichlet_alpha), size=b)
        probs = (1 - cfg.dirichlet_fraction) * softmax(logits) + cfg.dirichlet_fraction * dirichlet
        logits = np.log(np.maximum(probs, 1e-30))
    tree.logits[:, 0] = logits
    tree.raw_value[:, 0] = value
    tree.visits[:, 0] = 1.0
    tree.value_sum[:, 0] = value
    if edge_bonus is not None:
        tree.separate_objective()
        tree.plain_sum[:, 0] = value
    if cfg.rule == "gumbel":
        if noise:
            assert rng is not None, "noise needs a generator"
        gumbel = rng.gumbel(size=(b, a)) if noise else np.zeros((b, a))
        table = [considered_visit_sequence(k, sims) for k in range(a + 1)]
        considered = min(cfg.max_considered, a)

    for sim in range(1, sims + 1):
        # Selection: descend every tree until an unexpanded edge or a terminal node.
        node = np.zeros(b, np.int64)
        action = np.zeros(b, np.int64)
        descending = np.ones(b, bool)
        expand = np.zeros(b, bool)
        first = True
        while descending.any():
            e = envs[descending]
            at_terminal = tree.terminal[e, node[e]]
            descending[e[at_terminal]] = False
            e = e[~at_terminal]
            if len(e) == 0:
                break
            if cfg.rule == "puct":
                act = tree.puct_select(e, node[e], tree.logits[e, node[e]])
            elif first:
                score = tree.gumbel_root_score(gumbel, table[considered][sim - 1] * np.ones(b, np.int64))
                act = score.argmax(axis=1)[e]
            else:
                act = tree.gumbel_interior_select(e, node[e])
            first = False
            child = tree.children[e, node[e], act]
            new = child < 0
            action[e[new]] = act[new]
            expand[e[new]] = True
            descending[e[new]] = False
            node[e[~new]] = child[~new]
        # Expansion: one batched model step + one batched network call for all new leaves.
        leaf = node.copy()
        leaf_value = np.zeros(b)
        ex = envs[expand]
        if len(ex):
            parents = node[ex]
            states, true_reward, terminated, _ = core.step(pool.get(parents, ex), action[ex])
            child_obs = core.observe(states)
            c_logits, c_value, c_reward = (np.asarray(x, np.float64) for x in evaluate(child_obs))
            pool.put(sim, ex, states)
            terminated = np.asarray(terminated, bool)
            tree.children[ex, parents, action[ex]] = sim
            tree.parent[ex, sim] = parents
            tree.depth[ex, sim] = tree.depth[ex, parents] + 1
            tree.logits[ex, sim] = c_logits
            tree.raw_value[ex, sim] = np.where(terminated, 0.0, c_value)
            tree.terminal[ex, sim] = terminated
            edge_reward = true_reward if cfg.reward_source == "true" else c_reward
            if edge_bonus is not None:
                edge_reward = edge_reward + edge_bonus(ex, child_obs)
            tree.reward[ex, sim] = edge_reward
            if edge_bonus is not None:
                tree.plain_reward[ex, sim] = true_reward if cfg.reward_source == "true" else c_reward
            leaf[ex] = sim
            leaf_value[ex] = tree.raw_value[ex, sim]
        # Backup along parent pointers (terminal leaves back up 0).
        g = leaf_value
        g_plain = leaf_value.copy()
        cur = leaf
        going = np.ones(b, bool)
        while going.any():
            e = envs[going]
            c = cur[e]
            tree.visits[e, c] += 1.0
            tree.value_sum[e, c] += g[e]
            g[e] = tree.reward[e, c] + cfg.discount * g[e]
            if edge_bonus is not None:
                tree.plain_sum[e, c] += g_plain[e]
                g_plain[e] = tree.plain_reward[e, c] + cfg.discount * g_plain[e]
            cur[e] = tree.parent[e, c]
            going[e] = cur[e] >= 0

    root = np.zeros(b, np.int64)
    plain = tree.objective_view()
    visits, _ = tree.child_stats(envs, root)
    q = plain.completed_q(envs, root)
    if cfg.rule == "gumbel":
        score = tree.gumbel_root_score(gumbel, visits.max(axis=1))
        chosen = score.argmax(axis=1)
        target = softmax(root_logits + plain.sigma_q(envs, root, root_logits))
    else:
        target = visits / visits.sum(axis=1, keepdims=True)
        if sample:
            assert rng is not None, "sample needs a generator"
            u = rng.random(b)[:, None]
            chosen = np.minimum((target.cumsum(axis=1) < u).sum(axis=1), a - 1)
        else:
            chosen = visits.argmax(axis=1)
    return SearchResult(
        action=chosen.astype(np.int64),
        policy_target=target,
        visit_counts=visits,
        q_values=q,
        root_value=plain.node_value(envs, root),
        raw_value=value,
        root_logits=root_logits,
        root_reward=reward,
        max_depth=tree.depth.max(axis=1),
        tree={
            "children": tree.children, "parent": tree.parent, "visits": tree.visits,
            "value_sum": tree.value_sum, "reward": tree.reward, "terminal": tree.terminal,
        },
    )  # fmt: skip
