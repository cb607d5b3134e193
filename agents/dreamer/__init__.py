"""``dreamer``: a DreamerV3-style model-based agent (Hafner et al., 2023, "Mastering Diverse Domains
through World Models"), in plain PyTorch.

The agent learns a world model from replayed experience and trains its actor and critic purely on
trajectories imagined by that model:

* :mod:`.world_model` — RSSM (LayerNorm GRU deterministic state + categorical stochastic latents
  with 1% unimix, straight-through samples), encoder/decoder (:mod:`.networks`: symbolic grids,
  RGB or vectors; symlog inputs), two-hot symlog reward head, continue head, KL balancing
  (dyn 0.5 / rep 0.1) with 1 free nat.
* :mod:`.behavior` — actor-critic on imagined rollouts: λ-returns, REINFORCE actor with returns
  normalised by an EMA of their 5–95 percentile range (never scaled up), two-hot symlog critic with
  a regulariser towards its EMA copy, entropy bonus 3e-4.
* :mod:`.replay` — per-env streams, uniform fixed-length sequences, train ratio bookkeeping.
* :mod:`.agent` — the :class:`~misgen.agents.base.Agent` implementation, checkpoints and probe
  hooks (``observe_state``, ``imagine``, ``evaluate_obs``).

Size presets (``--preset``; the paper's sizes for comparison)
-------------------------------------------------------------
============  =====  =======  ======  ======  =========  =====  ======  =====  ===========
preset        deter  latents  hidden  layers  cnn depth  batch  length  ratio  lr wm / ac
============  =====  =======  ======  ======  =========  =====  ======  =====  ===========
``debug``     32     4 x 4    32      1       4          4      8       8      3e-4 / 1e-4
``small``     256    16 x 16  128     1       16         16     16      8      3e-4 / 1e-4
``medium``    512    32 x 32  512     2       32         16     64      32     1e-4 / 3e-5
paper XS      256    32 x 32  256     1       24         16     64      *      1e-4 / 3e-5
paper S       512    32 x 32  512     2       32         16     64      *      1e-4 / 3e-5
============  =====  =======  ======  ======  =========  =====  ======  =====  ===========

(* the paper's train ratio is per domain: 32-1024; the reference code's default is 32.)
``small`` is the default, sized so that one update costs ~0.2 s on one CPU core; ``medium``
matches the paper's S model and its optimiser settings. All presets use imagination horizon 15,
λ 0.95, discount horizon 333 (γ = 0.997), Adam epsilons 1e-8 (model) / 1e-5 (actor, critic),
gradient-norm clips 1000 / 100, slow critic fraction 0.02, return-normaliser decay 0.99.

Deviations from the paper (and why)
-----------------------------------
* ``small`` (the CPU default) uses 16 x 16 latents, 128-unit single-layer heads and sequences of
  16 steps, a train ratio of 8 replayed steps per env step, and learning rates 3x the paper's
  (model 3e-4, actor and critic 1e-4). On a 2-core CPU the budget is a few thousand updates, not
  the paper's hundreds of thousands; env steps are nearly free by comparison (about 6,000/s with
  acting), so collecting more data per update and taking larger steps is the better trade.
  ``medium`` keeps the paper's learning rates.
* Symbolic grid observations (misgen's C x H x W 0/1 channels) get a CNN whose first layer has
  stride 1 so that single cells are resolved, and a per-cell Bernoulli decoder likelihood (the
  exact likelihood of binary data) instead of the image MSE. RGB observations use the paper's
  stride-2 CNN and MSE; vectors the symlog MLP and symlog MSE.
* Replayed sequences start from the learned initial state (the first step is treated as the start
  of an episode) instead of carrying latent states from the previous training batch.
* The world model is updated before the actor-critic on each batch (the reference computes all
  three losses with the pre-update parameters); imagination starts from the pre-update posteriors.
* The critic additionally learns from λ-returns along replayed sequences with real rewards
  (``repval_scale`` 0.3), as the reference implementation does; the paper's first version
  trained it on imagined trajectories only (``--set repval_scale=0`` restores that).
* Training uses one torch thread by default (``threads``): the networks are small, and on a shared
  machine a second OpenMP thread made updates several times slower.
* A short prefill of uniform random actions precedes training; the replay buffer is not saved in
  checkpoints, so ``--resume`` starts with an empty buffer and collects with the loaded policy
  until one batch of sequences exists. Optimiser states, the slow critic and the return
  normaliser are saved.

Probe hooks
-----------
``act`` extras: ``features`` (the model state ``[deter, stoch]`` the actor reads), ``value`` (critic)
and ``reward_pred`` (reward head on the current state). ``observe_state(obs_seq, actions)`` filters
an observation sequence into a model state; ``imagine(state, actions)`` rolls hypothetical actions
through the prior and returns predicted rewards, continues, values and features;
``evaluate_obs(obs)`` scores single (possibly edited) observations from a fresh state.

Reported metrics: ``updates``, ``loss/*`` (model, recon, reward, cont, dyn_kl, rep_kl, actor,
critic), ``behavior/*``, ``charts/success`` (intended goal reached, over episodes finished
since the last report), ``charts/reached_<goal>``, ``charts/episode_return``,
``charts/env_steps_per_s`` and ``charts/updates_per_s``.
"""

from __future__ import annotations

from misgen.agents.dreamer.agent import DreamerAgent, DreamerConfig

__all__ = ["DreamerAgent", "DreamerConfig"]
