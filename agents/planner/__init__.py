"""``planner``: explicit search at decision time toward a learned objective (AlphaZero / Gumbel
MuZero-style MCTS over the native env's functional core).

The planning class of the comparison. At every decision the agent grows a search tree from the
env's true current state (``env.state``), using the env's functional core (``env.core.step``) as
its model of the dynamics. What the tree *pursues* is learned: edges are scored with a learned
**reward model** ``r(s')`` (a head of the network, regressed on the rewards seen on the training
split), leaves with a learned value, and the search is guided by a learned policy prior. So when
the probes ask which goal the planner pursues at test-shift, they ask what its reward model (and
value) learned from training levels where the cheese and the corner coincide.

* :mod:`.mcts` — the batched search: one tree per env, one expansion per env per simulation with a
  single batched ``core.step`` and a single batched network call; ``gumbel`` (Gumbel MuZero:
  Gumbel-top-k + sequential halving at the root, deterministic interior selection, improved-policy
  targets; the default, because it improves the policy even at 4-16 simulations) or ``puct``
  (AlphaZero pUCT with root Dirichlet noise, visit-count targets). Formulas follow DeepMind's
  ``mctx`` so they can be checked against it.
* :mod:`.networks` — same-size CNN torso with policy, value and reward heads.
* :mod:`.replay` — FIFO replay (reward-skewed sampling for the reward model) and TD(lambda)
  value targets.
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
* **Value targets** are TD(lambda) returns of the *true* rewards bootstrapped from the value
  head's estimates recorded while acting (as PPO's GAE targets); time-limit truncation bootstraps
  from the value of the final observation. Not from search values (MuZero's choice): those contain
  the learned rewards and, early in training, the exploration bonus, which would leak into the
  value. The value head is trained on the real reward, the tree reads the learned one: both
  generalize from the same training levels.
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
  (and, with an imprecise value, prone to loops: 8% vs 36% train success in one check). Acting
  outside training searches with ``act_simulations`` (32) rather than the self-play ``num_simulations``
  (8): deeper search is cheap at decision time and raised train-split success from 26% to 37%.

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
``charts/reached_<goal>``, ``charts/episode_return|episode_length|episodes``,
``charts/env_steps_per_s``, ``charts/updates_per_s``, ``charts/replay_size``.

Status on maze-cheese (CPU, defaults)
-------------------------------------
About 180k env steps (~400 CPU-seconds, one thread) give 36-37% intended success on train and
test-iid levels (random: 0.5-1.5%), far from 90%. The bottleneck is the value head: a diagnostic
regression of this CNN on *exact* maze values (3000 updates, 768k samples) still leaves test RMSE
~1.2 against neighbour differences of ~0.1-0.3, and greedy one-step lookahead on it solves 0% of
mazes. The search (horizon of a few steps) finds the cheese only once the value has brought the
mouse near it. The reward model, by contrast, is learned quickly and shows the misgeneralization
the probes look for: it predicts ~10 for the mouse on the cheese inside the training region and
~0.4 for the cheese elsewhere (test-shift).

Deviations from AlphaZero / MuZero
----------------------------------
* No learned dynamics (the core is the model) and no unrolled training of the network: each head
  is trained on single observations.
* The replay buffer is not checkpointed; ``--resume`` refills it with the loaded networks.
* Value and reward heads regress scalars with MSE (no categorical / two-hot value).
"""

from __future__ import annotations

from misgen.agents.planner.agent import PlannerAgent, PlannerConfig

__all__ = ["PlannerAgent", "PlannerConfig"]
