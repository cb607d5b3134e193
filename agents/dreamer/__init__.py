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
============  =====  =======  ======  ======  =========  =====  =======
preset        deter  latents  hidden  layers  cnn depth  batch  length
============  =====  =======  ======  ======  =========  =====  =======
``debug``     32     4 x 4    32      1       4          4      8
``small``     256    16 x 16  256     2       16         16     32
``medium``    512    32 x 32  512     2       32         16     64
paper XS      256    32 x 32  256     1       24         16     64
paper S       512    32 x 32  512     2       32         16     64
============  =====  =======  ======  ======  =========  =====  =======

``small`` is the default and is sized to train on a 2-core CPU; ``medium`` matches the paper's S
model. All presets use imagination horizon 15, λ 0.95, discount horizon 333 (γ = 0.997), the
paper's learning rates (model 1e-4, actor and critic 3e-5), Adam epsilons (1e-8 / 1e-5) and
gradient clips (1000 / 100).

Deviations from the paper (and why)
-----------------------------------
* Smaller latents (16 x 16) and shorter sequences (32) in ``small``: CPU time.
* Default train ratio 64 replayed steps per env step (paper: 32–1024 depending on the domain; 512
  for Atari 100k), a compromise between sample efficiency and wall-clock on a CPU.
* Symbolic grid observations (misgen's C x H x W 0/1 channels) get a CNN whose first layer has
  stride 1 so that single cells are resolved, and a per-cell Bernoulli decoder likelihood (the
  exact likelihood of binary data) instead of the image MSE. RGB observations use the paper's
  stride-2 CNN and MSE; vectors the symlog MLP and symlog MSE.
* Replayed sequences start from the learned initial state (the first step is treated as the start
  of an episode) instead of carrying latent states from the previous training batch.
* The world model is updated before the actor-critic on each batch (the reference computes all
  three losses with the pre-update parameters); imagination starts from the pre-update posteriors.
* The critic learns from imagined trajectories only (the paper's first version), not the later
  "replayed value" loss.
* A short prefill of uniform random actions precedes training; the replay buffer is not saved in
  checkpoints, so ``--resume`` starts with an empty buffer and collects with the loaded policy
  until one batch of sequences exists.

Reported metrics: ``updates``, ``loss/*`` (model, recon, reward, cont, dyn_kl, rep_kl, actor,
critic), ``behavior/*``, ``charts/success`` (intended goal reached, over episodes finished
since the last report), ``charts/reached_<goal>``, ``charts/episode_return``,
``charts/env_steps_per_s`` and ``charts/updates_per_s``.
"""

from __future__ import annotations

from misgen.agents.dreamer.agent import DreamerAgent, DreamerConfig

__all__ = ["DreamerAgent", "DreamerConfig"]
