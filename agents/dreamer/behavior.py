"""Dreamer's behaviour: an actor and a critic trained on trajectories imagined by the world model.

From every posterior state of a replayed batch, the actor is unrolled ``imag_horizon`` steps in the
world model's prior. On the imagined trajectory (DreamerV3):

* rewards come from the reward head, continue flags from the continue head's mode (the start
  state's flag is the real one), and each step is weighted by the cumulative discounted continue
  probability;
* the critic (two-hot symlog, zero-initialised output) regresses the λ-returns
  ``R_t = r_{t+1} + γ c_{t+1} ((1 - λ) v(s_{t+1}) + λ R_{t+1})``, bootstrapped from its own values,
  plus a regulariser towards the prediction of its slow EMA copy (decay 0.98);
* the actor follows REINFORCE (discrete actions) with advantages ``(R_t - v(s_t)) / max(1, S)``,
  where ``S`` is an EMA (decay 0.99) of the 95th minus 5th percentile of the returns — returns are
  scaled down when large but never scaled up, so sparse rewards are not amplified into noise — and
  an entropy bonus of 3e-4 on a policy mixed with 1% uniform;
* optionally (``repval_scale``, 0.3 in the reference implementation) the critic also regresses
  λ-returns computed along the *replayed* sequences with real rewards, bootstrapped from the
  imagined returns, so real successes reach the critic before the reward head has learned them.

Not in DreamerV3: with an exploration ``bonus > 0`` (training only, decaying to 0; see
:mod:`misgen.agents.dreamer`) the imagined reward is ``reward_head + bonus * novelty_head``, and the
replayed rewards of the replay value loss get ``bonus * novelty`` (the stored true novelty) added,
so both critic targets estimate the same shaped return.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from misgen.agents.dreamer.networks import MLP, TwoHot, sample_onehot, unimix_probs
from misgen.agents.dreamer.world_model import Latent, WorldModel


class ReturnNorm(nn.Module):
    """EMA of the 5th and 95th return percentiles; scale = ``max(limit, high - low)``.

    Both start at 0 like the reference implementation; kept as buffers so checkpoints carry them.
    """

    def __init__(self, decay: float = 0.99, limit: float = 1.0, low: float = 5.0, high: float = 95.0) -> None:
        super().__init__()
        self.decay, self.limit, self.q = decay, limit, torch.tensor([low / 100, high / 100])
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        lo, hi = torch.quantile(returns.flatten(), self.q)
        self.low.mul_(self.decay).add_((1 - self.decay) * lo)
        self.high.mul_(self.decay).add_((1 - self.decay) * hi)

    @property
    def scale(self) -> torch.Tensor:
        return torch.clamp(self.high - self.low, min=self.limit)


def lambda_returns(
    rewards: torch.Tensor, values: torch.Tensor, discounts: torch.Tensor, lam: float
) -> torch.Tensor:
    """λ-returns of a trajectory (time first).

    Args:
        rewards: (H, N) reward on arriving at states 1..H.
        values: (H + 1, N) critic values of states 0..H.
        discounts: (H, N) ``γ * continue`` of states 1..H.
        lam: λ.

    Returns:
        (H, N) returns of states 0..H-1, bootstrapped from ``values[H]``.
    """
    out = []
    last = values[-1]
    for t in reversed(range(rewards.shape[0])):
        last = rewards[t] + discounts[t] * ((1 - lam) * values[t + 1] + lam * last)
        out.append(last)
    return torch.stack(out[::-1])


def replay_returns(
    rewards: torch.Tensor,
    terminal: torch.Tensor,
    last: torch.Tensor,
    boot: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """λ-returns along replayed sequences (batch first), as in the DreamerV3 reference code.

    Real rewards and termination flags are used; the bootstrap at every step is ``boot``, the
    imagined λ-return from that replayed state, and the λ-chain is cut after an episode's final
    step (``last``), where the next entry belongs to another episode.

    Args:
        rewards: (B, T) reward that arrived with each entry.
        terminal: (B, T) whether each entry is a terminal state.
        last: (B, T) whether each entry is the final one of its episode.
        boot: (B, T) imagined λ-return of each entry.
        gamma: discount.
        lam: λ.

    Returns:
        (B, T - 1) returns of entries 0..T-2.
    """
    live = (1.0 - terminal[:, 1:].float()) * gamma
    cont = (1.0 - last[:, 1:].float()) * lam
    interm = rewards[:, 1:] + (1.0 - cont) * live * boot[:, 1:]
    out = [boot[:, -1]]
    for t in reversed(range(live.shape[1])):
        out.append(interm[:, t] + live[:, t] * cont[:, t] * out[-1])
    return torch.stack(out[::-1][:-1], 1)


class Behavior(nn.Module):
    """Actor, critic, slow critic and return normaliser (see the module docstring)."""

    def __init__(
        self, feat_dim: int, num_actions: int, *, hidden: int, layers: int, bins: int, unimix: float
    ) -> None:
        super().__init__()
        # Zero output: the first policy is uniform (plus nothing), the best blind explorer. With
        # DreamerV3's random output layer the initial policy was a fixed, state-dependent bias
        # (entropy ~1.2 of 1.39 on maze-cheese) that found the cheese in 16-22% of episodes
        # against the uniform walk's 29%, and that policy collects until the actor gate opens.
        self.actor = MLP(feat_dim, num_actions, hidden, layers, zero_out=True)
        self.critic = MLP(feat_dim, bins, hidden, layers, zero_out=True)
        self.slow_critic = MLP(feat_dim, bins, hidden, layers, zero_out=True)
        self.retnorm = ReturnNorm()
        self.twohot = TwoHot(bins)
        self.unimix = unimix
        self.num_actions = num_actions

    def policy(self, feat: torch.Tensor) -> torch.Tensor:
        """Action probabilities (1% unimix)."""
        return unimix_probs(self.actor(feat), self.unimix)

    def value(self, feat: torch.Tensor) -> torch.Tensor:
        return self.twohot.mean(self.critic(feat))

    @torch.no_grad()
    def update_slow(self, fraction: float) -> None:
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
            slow.mul_(1 - fraction).add_(fraction * fast)

    def imagine(
        self, wm: WorldModel, start: Latent, horizon: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unroll the actor in the prior from ``start`` (N states).

        The world model runs without gradient; the policy's probabilities keep theirs (REINFORCE
        needs only log-probabilities, not gradients through the dynamics), which saves a second
        actor pass. Returns features (H + 1, N, F) of states 0..H, the actions (H, N) taken at
        0..H-1 and the policy probabilities (H, N, A) they were sampled from.
        """
        state = start
        feats, actions, probs = [state.features.detach()], [], []
        for _ in range(horizon):
            p = self.policy(feats[-1])
            with torch.no_grad():
                action = sample_onehot(p.detach(), gen)
                state = wm.rssm.imagine_step(state, action, gen)
            feats.append(state.features)
            actions.append(action.argmax(-1))
            probs.append(p)
        return torch.stack(feats), torch.stack(actions), torch.stack(probs)

    def loss(
        self,
        wm: WorldModel,
        start: Latent,
        start_cont: torch.Tensor,
        gen: torch.Generator,
        *,
        horizon: int,
        gamma: float,
        lam: float,
        entropy: float,
        slowreg: float,
        replay: dict[str, torch.Tensor] | None = None,
        repval_scale: float = 0.0,
        bonus: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Actor and critic losses on trajectories imagined from ``start`` (N states).

        ``start_cont`` (N,) is 1 - is_terminal of the real start states. When ``replay`` holds the
        (B, T) ``reward``, ``is_terminal`` and ``is_last`` of the replayed sequences the starts
        came from (N = B * T, row-major) and ``repval_scale > 0``, the critic also regresses
        :func:`replay_returns` on the replayed states (DreamerV3's replay value loss). ``bonus > 0``
        adds ``bonus`` times the novelty head's prediction to the imagined rewards (and ``bonus``
        times ``replay["novelty"]``, when given, to the replayed ones). Returns (actor loss, critic
        loss, metrics); the world model receives no gradient from either.
        """
        feats, actions, probs = self.imagine(wm, start, horizon, gen)
        logits = self.critic(feats)
        with torch.no_grad():
            env_rewards = rewards = wm.reward(feats[1:])
            imag_novelty = wm.novelty(feats[1:]) if bonus > 0 else None
            if imag_novelty is not None:
                rewards = env_rewards + bonus * imag_novelty
            cont = torch.cat([start_cont[None], (wm.cont(feats[1:]) > 0.5).float()], 0)
            weight = torch.cumprod(gamma * cont, 0) / gamma  # (H + 1, N)
            values = self.twohot.mean(logits.detach())
            returns = lambda_returns(rewards, values, gamma * cont[1:], lam)
            self.retnorm.update(returns)
            scale = self.retnorm.scale
            adv = (returns - values[:-1]) / scale
            slow_target = self.twohot.mean(self.slow_critic(feats[:-1]))
        w = weight[:-1]
        logp = torch.log(probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1))
        ent = -(probs * torch.log(probs)).sum(-1)
        actor_loss = (w * -(logp * adv + entropy * ent)).mean()
        critic_nll = -self.twohot.log_prob(logits[:-1], returns) - slowreg * self.twohot.log_prob(
            logits[:-1], slow_target
        )
        critic_loss = (w * critic_nll).mean()
        repval = torch.zeros(())
        if replay is not None and repval_scale > 0:
            b, t = replay["reward"].shape
            with torch.no_grad():
                rep_reward = replay["reward"]
                if bonus > 0 and "novelty" in replay:
                    rep_reward = rep_reward + bonus * replay["novelty"]
                rep_ret = replay_returns(
                    rep_reward, replay["is_terminal"], replay["is_last"], returns[0].view(b, t), gamma, lam
                )
                rep_weight = 1.0 - replay["is_last"][:, :-1].float()
            rep_logits = logits[0].view(b, t, -1)[:, :-1]
            rep_slow = slow_target[0].view(b, t)[:, :-1]
            rep_nll = -self.twohot.log_prob(rep_logits, rep_ret) - slowreg * self.twohot.log_prob(
                rep_logits, rep_slow
            )
            repval = (rep_weight * rep_nll).mean()
            critic_loss = critic_loss + repval_scale * repval
        metrics = {
            "loss/actor": float(actor_loss.detach()),
            "loss/critic": float(critic_loss.detach()),
            "loss/repval": float(repval.detach()),
            "behavior/entropy": float(ent.detach().mean()),
            "behavior/imag_lambda_ret": float(returns.mean()),
            "behavior/imag_reward": float(env_rewards.mean()),  # reward head only, without the bonus
            "behavior/imag_reward_max": float(env_rewards.max()),
            "behavior/value": float(values.mean()),
            "behavior/retnorm_scale": float(scale),
            "behavior/adv_abs": float(adv.abs().mean()),
        }
        if imag_novelty is not None:
            metrics["behavior/imag_novelty"] = float(imag_novelty.mean())
        return actor_loss, critic_loss, metrics


def action_onehot(actions: torch.Tensor, num_actions: int) -> torch.Tensor:
    return F.one_hot(actions.long(), num_actions).float()
