"""``planner``: explicit search at decision time toward a learned objective (AlphaZero / Gumbel
MuZero-style MCTS over the native env's functional core).

The planning class of the comparison. At every decision the agent grows a search tree from the
env's true current state (``env.state``), using the env's functional core (``env.core.step``) as
its model of the dynamics. What the tree *pursues* is learned: edges are scored with a learned
**reward model** ``r(s')`` (a head of the network, or the value-iteration ``R`` map; regressed on
the rewards seen on the training split), leaves with a learned value, and the search is guided by
a learned policy prior. So when
the probes ask which goal the planner pursues at test-shift, they ask what its reward model (and
value) learned from training levels where the cheese and the corner coincide.

* :mod:`.mcts` — the batched search: one tree per env, one expansion per env per simulation with a
  single batched ``core.step`` and a single batched network call; ``gumbel`` (Gumbel MuZero:
  Gumbel-top-k + sequential halving at the root, deterministic interior selection, improved-policy
  targets; the default, because it improves the policy even at 4-16 simulations) or ``puct``
  (AlphaZero pUCT with root Dirichlet noise, visit-count targets). Formulas follow DeepMind's
  ``mctx`` so they can be checked against it.
* :mod:`.networks` — same-size CNN torso with policy, value and reward heads.
* :mod:`.value_iteration` — on grid envs, the value network: learned reward and passability maps
  iterated to a value map (a structured Value Iteration Network), read out at the agent.
* :mod:`.replay` — FIFO replay (reward-skewed sampling for the reward model; the env states the
  searches ran from) and TD(lambda) value targets.
* :mod:`.explore` — the training-only episodic novelty bonus.
* :mod:`.agent` — config, presets, acting, the training loop, checkpoints, probe hooks.

Choices (and why)
-----------------
* **The model is the true core, the objective is learned.** ``reward_source="learned"`` (default)
  scores edges with the reward head's prediction on the child observation; the core's reward is
  never read in the tree. ``reward_source="true"`` (preset ``true-reward``) uses the core's reward:
  a control that separates "what the planner wants" from "how well it searches".
* **Termination comes from the model.** The core's ``terminated`` flag is part of the dynamics:
  terminal nodes are never expanded and back up value 0. In learned mode this is the only
  information from the true game beyond state transitions, and it is documented because in
  maze-cheese termination happens exactly at the cheese: a planner whose reward model wanted the
  corner would still see episodes end at the cheese. Time-limit truncation is ignored in the tree.
* **Reward of arrival, from observations.** ``r(s')`` is predicted from the observation arrived at
  (not ``r(s, a)``), so ``reward_of_obs`` maps any (edited) observation to the learned objective.
* **The value network plans** (``value_net="vin"``, the default on maze-cheese):
  the search sees a few steps, and beyond them the value must rank moves by maze distance in
  mazes it has never seen. The PPO torso (convs + a linear layer) could not: regressed on *exact*
  maze values it kept an error larger than the value differences between neighbouring cells, and
  the search looped. A value-iteration network computes distance by iterating, so it generalises
  by construction (regressed the same way it ranks the right move first on 97% of held-out
  states). Its reward map is also regressed on the rewards received.
* **With the value-iteration network, it is also the reward model**: the tree's edge reward for
  arriving on a cell is the network's ``R`` map at that cell, and the maps are blind to the
  agent's channel. One learned map is then both the value's objective and the edges': with a
  separate reward head on the torso the two disagreed by a few percent about the cheese (and
  the torso head predicted 0.05-0.5 for some held-out cheese cells), which is enough to make
  waiting beside the goal (``discount * V``) worth more than taking it, and the learned-reward
  planner hovered next to the cheese until the time limit. ``R`` is a softplus (rewards >= 0,
  as on maze-cheese) of a 3x3 conv over the board: it can mark what is *on* a cell (the cheese)
  but not a place defined by the whole maze (its top-right corner), an inductive bias that
  matters when the probes ask which goal the planner learned.
* **The value-iteration maps learn at their own rate** (``vin_lr``, 10x ``lr``): the map layer
  starts at zero and must reach logits of several units to mark walls impassable; at ``lr`` that
  took thousands of updates (tens of thousands of env steps) before the value ranked moves
  right, and until then the search had nothing to follow. Grounded on model transitions alone,
  the maps rank the shortest-path move first on 97% of held-out default mazes after 300 updates at
  ``vin_lr`` against 71% at ``lr`` (MEASUREMENTS.md).
* **The prior reads the value in moves**: the value-iteration patch around the agent enters the
  prior as ``log(U / max U) / -log(discount)`` (0 on the way on, -2 a step back, at any distance)
  instead of raw values, which far from the goal differ between neighbours by a few hundredths.
  With raw values the prior kept putting most mass on moves into walls although the value was
  exact, and Gumbel's sequential halving then dropped the right move after its first visits
  (deterministic acting looped on one cell until the time limit).
* **Value targets are recomputed from the model** (``value_target="bellman"``): at every update,
  ``max_a r(s, a) + discount * V(s_a)`` for the batch's stored env states, the core stepping every
  action, the current network valuing the results (fresh targets, as MuZero Reanalyse). They are
  the value of acting well, not of the exploring behaviour, so the value is right without the
  bonus. With ``value_net="vin"`` the successors are valued by the value-iteration network alone
  (``PlannerNet.value_only``): running the whole network on the ``A`` successors of every batch
  state was 45% of training time. True rewards (those of the training levels, as observed) define the targets; the tree
  reads the learned reward model: both generalise from the same training levels. ``lambda`` keeps
  the earlier TD(lambda) returns of the behaviour.
* **Exploration** (training only, :mod:`.explore`): an episodic novelty bonus on tree edges into
  observations not yet seen in the episode, decaying linearly to 0 over ``explore_steps``. A
  uniformly random walk finds maze-cheese's cheese in 0.5% of episodes; an untrained planner with
  the bonus and 8-16 simulations finds it in ~80%. The bonus never reaches the reward model, the
  value targets, or acting outside training.
* **Reward-model sampling** is skewed towards rewarded transitions (``reward_balance``, UNREAL's
  reward-prediction trick): rewards are sparse.
* **Policy targets** are the search's improved policy (Gumbel) or visit distribution (pUCT).
* **Acting**: with ``act_noise`` (default) actions are samples (Gumbel noise / visit sampling from
  the agent's own generator), like PPO's sampled policy; without it the search is deterministic
  (and, with an imprecise value, prone to loops). Acting outside training searches with
  ``act_simulations`` (32) rather than the self-play ``search.num_simulations`` (8).
* **Success is measured without the bonus**: a ``plain_share`` of the training envs never gets
  it; ``charts/success`` comes from their episodes while the bonus is on (``explore/success``
  from the others).

Interface beyond :class:`~misgen.agents.base.Agent`
---------------------------------------------------
``act`` needs ``env`` (a native vector env) and raises a one-line error without it, or for envs
without a functional core. Extras: ``features``, ``value`` (root search value), ``net_value``,
``reward_pred`` (learned reward of the current observation), ``visit_probs`` (N, A),
``policy_target``, ``prior_probs``, ``q_values``. Probe hooks: ``evaluate_obs(obs)`` ->
``value``, ``reward``, ``policy``, ``features``; ``reward_of_obs(obs)`` and ``value_of_obs(obs)``
-> (N,); ``plan(env, noise)`` -> the full :class:`~.mcts.SearchResult`.

Reported metrics: ``updates``, ``loss/policy|value|reward``, ``grad/norm``,
``reward_model/abs_err_rewarded|unrewarded``, ``search/root_value|net_value|max_depth|
target_entropy``, ``charts/success`` (intended goal reached, episodes since the last report),
``charts/reached_<goal>``, ``charts/episode_return|episode_length|episodes`` (envs without the
bonus), the same under ``explore/`` for envs with it,
``charts/env_steps_per_s``, ``charts/updates_per_s``, ``charts/replay_size``.

Status on maze-cheese (defaults, ``misgen eval``, 200 episodes per split)
-------------------------------------------------------------------------
* Default env (inner mazes 5..13, region 1), seed 0, 40,960 env steps: train 1.000, test-iid
  1.000, test-shift cheese 0.855 (top-right corner first 0.12). Bonus-free training success
  >= 0.9 from 8-12k env steps (``misgen bench learn``: 0.91 at 8,192). Seed 1, 16,384 steps:
  train 1.000, test-iid 0.995; seed 2, 16,384 steps: train 1.000, test-iid 1.000. Times and the measurements
  behind each choice above are in ``misgen/bench/MEASUREMENTS.md``.
* Before the choices above (the torso's reward head, raw value patch in the prior, one learning
  rate), the same env reached 0.3-0.7 bonus-free success by 12-30k steps; the old fixed 13x13
  maze 0.765 at 49k steps, and with the conv value and lambda targets 0.24 after 388k.
* Value iteration on held-out mazes, random mouse cells: the grounded maps alone (no value
  targets) rank the shortest-path move first in 97% of default-maze states after 300 updates of
  128 states at ``vin_lr``; the conv torso regressed on exact values: 0%.
* coinrun-shift (conv value, no value iteration): see MEASUREMENTS.md; not competent.

Deviations from AlphaZero / MuZero
----------------------------------
* No learned dynamics (the core is the model) and no unrolled training of the network: each head
  is trained on single observations. With the value-iteration network the reward model is its
  ``R`` map (no separate reward head) and the root's Q-values are normalised with a floor of
  0.1 reward units (``search.q_range_floor``; 1.0 with the conv value).
* The replay buffer is not checkpointed; ``--resume`` refills it with the loaded networks.
* Value and reward heads regress scalars with MSE (no categorical / two-hot value).
* Value targets are one-step optimal backups through the true model over all actions, not
  n-step returns bootstrapped from search values; on grid envs the value network is a value
  iteration network rather than a head on the shared torso.
"""

from __future__ import annotations

from misgen.agents.planner.agent import PlannerAgent, PlannerConfig

__all__ = ["PlannerAgent", "PlannerConfig"]
