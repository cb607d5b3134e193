"""Dreamer's world model: an RSSM with categorical latents, observation decoder, reward, continue and
(optional) novelty heads.

The recurrent state-space model (RSSM) keeps a deterministic GRU state ``deter`` and a stochastic
state ``stoch`` of ``latents`` categoricals with ``classes`` classes each (one-hot, 1% unimix):

* prior (dynamics): ``deter_t = GRU(deter_{t-1}, dense([stoch_{t-1}, a_{t-1}]))``,
  ``p(stoch_t | deter_t)``, used to imagine without observations;
* posterior (representation): ``q(stoch_t | deter_t, embed(o_t))``, used when observing.

The model state the actor, critic and heads read is ``features = [deter, flatten(stoch)]``.

Loss per step (DreamerV3): ``pred + 0.5 dyn + 0.1 rep`` where ``pred`` is the observation NLL plus
the two-hot symlog reward NLL plus the continue BCE, ``dyn = max(1, KL(sg(post) || prior))`` and
``rep = max(1, KL(post || sg(prior)))`` (KL balancing with 1 nat of free bits, clipped per step).

Not in DreamerV3: with :meth:`WorldModel.add_novelty_head` (only when the agent has an exploration
bonus) a Bernoulli head predicts the episodic novelty stored in replay (1 when the step arrived on an
observation new to its episode) and its BCE joins ``pred``, so its gradient also shapes the
representation (as the reward head's does): the recurrent state has to remember where it has been.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn

from misgen.agents.dreamer.networks import (
    MLP,
    NormGRUCell,
    ObsCodec,
    TwoHot,
    categorical_kl,
    dense,
    mode_onehot,
    sample_onehot,
    unimix_probs,
)


@dataclass
class Latent:
    """A batch of RSSM states: ``deter`` (..., D) and one-hot ``stoch`` (..., latents, classes)."""

    deter: torch.Tensor
    stoch: torch.Tensor

    @property
    def features(self) -> torch.Tensor:
        return torch.cat([self.deter, self.stoch.flatten(-2)], -1)

    def detach(self) -> Latent:
        return Latent(self.deter.detach(), self.stoch.detach())

    def where(self, mask: torch.Tensor, other: Latent) -> Latent:
        """Rows of ``other`` where ``mask`` (N,) is True, ``self`` elsewhere."""
        return Latent(
            torch.where(mask[:, None], other.deter, self.deter),
            torch.where(mask[:, None, None], other.stoch, self.stoch),
        )


class RSSM(nn.Module):
    """Recurrent state-space model (see the module docstring)."""

    def __init__(
        self,
        embed_dim: int,
        num_actions: int,
        deter: int,
        latents: int,
        classes: int,
        hidden: int,
        unimix: float,
    ) -> None:
        super().__init__()
        self.latents, self.classes, self.unimix = latents, classes, unimix
        self.num_actions = num_actions
        stoch = latents * classes
        self.img_in = dense(stoch + num_actions, hidden)
        self.gru = NormGRUCell(hidden, deter)
        self.prior_net = MLP(deter, stoch, hidden, 1)
        self.post_net = MLP(deter + embed_dim, stoch, hidden, 1)
        self.init_deter = nn.Parameter(torch.zeros(deter))
        self.feat_dim = deter + stoch

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        return unimix_probs(logits.view(*logits.shape[:-1], self.latents, self.classes), self.unimix)

    def initial(self, n: int) -> Latent:
        """The learned initial state: ``tanh`` of a parameter, stoch = mode of its prior."""
        deter = torch.tanh(self.init_deter).expand(n, -1)
        stoch = mode_onehot(self.probs(self.prior_net(deter)))
        return Latent(deter, stoch)

    def img_step(self, prev: Latent, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One dynamics step: (previous state, one-hot action) -> (deter, prior logits)."""
        x = self.img_in(torch.cat([prev.stoch.flatten(-2), action], -1))
        deter = self.gru(x, prev.deter)
        return deter, self.prior_net(deter)

    def imagine_step(self, prev: Latent, action: torch.Tensor, gen: torch.Generator | None) -> Latent:
        """Next state from the prior: sampled with ``gen``, or its mode when ``gen`` is None."""
        deter, logits = self.img_step(prev, action)
        probs = self.probs(logits)
        return Latent(deter, sample_onehot(probs, gen) if gen is not None else mode_onehot(probs))

    def obs_step(
        self,
        prev: Latent,
        prev_action: torch.Tensor,
        embed: torch.Tensor,
        is_first: torch.Tensor,
        gen: torch.Generator | None,
    ) -> tuple[Latent, torch.Tensor, torch.Tensor]:
        """One filtering step; rows with ``is_first`` restart from the initial state and no action.

        Returns the posterior state (sampled with ``gen``, mode when None), posterior and prior logits.
        """
        if bool(is_first.any()):
            prev = prev.where(is_first, self.initial(len(is_first)))
            prev_action = prev_action * (~is_first)[:, None].to(prev_action.dtype)
        deter, prior_logits = self.img_step(prev, prev_action)
        post_logits = self.post_net(torch.cat([deter, embed], -1))
        probs = self.probs(post_logits)
        stoch = sample_onehot(probs, gen) if gen is not None else mode_onehot(probs)
        return Latent(deter, stoch), post_logits, prior_logits

    def observe(
        self,
        embed: torch.Tensor,
        prev_actions: torch.Tensor,
        is_first: torch.Tensor,
        gen: torch.Generator | None,
    ) -> tuple[Latent, torch.Tensor, torch.Tensor]:
        """Filter a batch of sequences (B, T, ...) from the initial state (``is_first[:, 0]`` must be True)."""
        b, t = is_first.shape
        state = self.initial(b)
        deters, stochs, posts, priors = [], [], [], []
        for i in range(t):
            state, post, prior = self.obs_step(state, prev_actions[:, i], embed[:, i], is_first[:, i], gen)
            deters.append(state.deter)
            stochs.append(state.stoch)
            posts.append(post)
            priors.append(prior)
        return (
            Latent(torch.stack(deters, 1), torch.stack(stochs, 1)),
            torch.stack(posts, 1),
            torch.stack(priors, 1),
        )


class WorldModel(nn.Module):
    """Encoder/decoder, RSSM, reward and continue heads, and the DreamerV3 world-model loss."""

    def __init__(
        self,
        obs_space: gym.spaces.Box,
        num_actions: int,
        *,
        deter: int,
        latents: int,
        classes: int,
        hidden: int,
        layers: int,
        cnn_depth: int,
        unimix: float,
        bins: int,
    ) -> None:
        super().__init__()
        feat_dim = deter + latents * classes
        self.codec = ObsCodec(obs_space, cnn_depth, hidden, layers, feat_dim)
        self.rssm = RSSM(self.codec.embed_dim, num_actions, deter, latents, classes, hidden, unimix)
        self.reward_head = MLP(feat_dim, bins, hidden, layers, zero_out=True)
        self.cont_head = MLP(feat_dim, 1, hidden, layers)
        self.twohot = TwoHot(bins)
        self.num_actions = num_actions
        self.feat_dim, self.hidden, self.layers = feat_dim, hidden, layers
        self.novelty_head: MLP | None = None

    def add_novelty_head(self) -> MLP:
        """Create the novelty head (left out when there is no exploration bonus, so older
        checkpoints and bonus-free configs have no such parameters). Returns it, uninitialised."""
        self.novelty_head = MLP(self.feat_dim, 1, self.hidden, self.layers)
        return self.novelty_head

    def novelty(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted probability that arriving in this state was novel to the episode."""
        if self.novelty_head is None:
            raise RuntimeError("this world model has no novelty head (explore_bonus == 0)")
        return torch.sigmoid(self.novelty_head(feat).squeeze(-1))

    def reward(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted reward for arriving in the state with features ``feat``."""
        return self.twohot.mean(self.reward_head(feat))

    def cont(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted probability that the episode continues after this state (not terminal)."""
        return torch.sigmoid(self.cont_head(feat).squeeze(-1))

    def loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        is_first: torch.Tensor,
        is_terminal: torch.Tensor,
        gen: torch.Generator,
        *,
        dyn_scale: float,
        rep_scale: float,
        free_nats: float,
        novelty: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Latent, dict[str, float]]:
        """World-model loss on replayed sequences (B, T, ...).

        ``actions[:, t]`` was taken at ``obs[:, t]``; ``rewards[:, t]`` arrived with ``obs[:, t]``;
        ``is_terminal[:, t]`` marks a true terminal state (truncation is not termination). Each
        sequence starts from the initial state (its first step is treated as ``is_first``).
        ``novelty`` (B, T) 0/1 trains the novelty head when the model has one (ignored otherwise).

        Returns the scalar loss, the posterior states (for imagination starts) and metrics.
        """
        b, t = is_first.shape
        embed = self.codec.encode(obs.flatten(0, 1)).view(b, t, -1)
        onehot = F.one_hot(actions, self.num_actions).float()
        prev_actions = torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], 1)
        first = is_first.clone()
        first[:, 0] = True
        post, post_logits, prior_logits = self.rssm.observe(embed, prev_actions, first, gen)
        feat = post.features
        flat = feat.flatten(0, 1)
        recon = self.codec.loss(flat, obs.flatten(0, 1)).view(b, t)
        reward_nll = -self.twohot.log_prob(self.reward_head(feat), rewards)
        cont_target = 1.0 - is_terminal.float()
        cont_nll = F.binary_cross_entropy_with_logits(
            self.cont_head(feat).squeeze(-1), cont_target, reduction="none"
        )
        post_p, prior_p = self.rssm.probs(post_logits), self.rssm.probs(prior_logits)
        dyn_kl = categorical_kl(post_p.detach(), prior_p)
        rep_kl = categorical_kl(post_p, prior_p.detach())
        dyn = torch.clamp(dyn_kl, min=free_nats)
        rep = torch.clamp(rep_kl, min=free_nats)
        pred = recon + reward_nll + cont_nll
        nov_logit = None
        if self.novelty_head is not None and novelty is not None:
            nov_logit = self.novelty_head(feat).squeeze(-1)
            pred = pred + F.binary_cross_entropy_with_logits(nov_logit, novelty.float(), reduction="none")
        loss = (pred + dyn_scale * dyn + rep_scale * rep).mean()
        with torch.no_grad():
            reward_pred = self.twohot.mean(self.reward_head(feat))
            rewarded = rewards.abs() > 0
            metrics = {
                "loss/model": float(loss.detach()),
                "loss/recon": float(recon.mean()),
                "loss/reward": float(reward_nll.mean()),
                "loss/cont": float(cont_nll.mean()),
                "loss/dyn_kl": float(dyn_kl.mean()),
                "loss/rep_kl": float(rep_kl.mean()),
                "model/reward_err_on_rewarded": float((reward_pred - rewards).abs()[rewarded].mean())
                if bool(rewarded.any())
                else float("nan"),
                "model/reward_rel_err_on_rewarded": float(
                    ((reward_pred - rewards).abs() / rewards.abs())[rewarded].mean()
                )
                if bool(rewarded.any())
                else float("nan"),
                "model/reward_err_unrewarded": float((reward_pred - rewards).abs()[~rewarded].mean()),
                "model/post_entropy": float(-(post_p * post_p.log()).sum(-1).mean()),
            }
            if nov_logit is not None:
                nov_err = (torch.sigmoid(nov_logit) - novelty.float()).abs()
                novel = novelty > 0.5
                metrics["loss/novelty"] = float(
                    F.binary_cross_entropy_with_logits(nov_logit, novelty.float())
                )
                metrics["model/novelty_err"] = float(nov_err.mean())
                metrics["model/novelty_err_on_novel"] = (
                    float(nov_err[novel].mean()) if bool(novel.any()) else float("nan")
                )
                metrics["model/novelty_err_on_seen"] = (
                    float(nov_err[~novel].mean()) if bool((~novel).any()) else float("nan")
                )
        return loss, post.detach(), metrics
