"""The ``dreamer`` agent: config, presets, acting, the training loop, checkpoints and probe hooks.

See the package docstring (:mod:`misgen.agents.dreamer`) for the algorithm, the size presets and
every deviation from the DreamerV3 paper.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from misgen.agents import register_agent
from misgen.agents.base import (
    Agent,
    TrainContext,
    grid_env_defaults,
    record_finished_episodes,
    torch_threads,
    with_config_threads,
)
from misgen.agents.checkpoint import load_optimizer_tensors, optimizer_tensors, torch_generator
from misgen.agents.dreamer.behavior import Behavior
from misgen.agents.dreamer.networks import init_weights, mode_onehot, sample_onehot
from misgen.agents.dreamer.replay import Replay
from misgen.agents.dreamer.world_model import Latent, WorldModel
from misgen.agents.grid_torso import centre_on
from misgen.agents.novelty import EpisodicNovelty, decayed_bonus
from misgen.environments.spec import EnvSpec
from misgen.errors import MisgenError
from misgen.seeding import derive_seed


@dataclass(frozen=True)
class DreamerConfig:
    """Dreamer options (defaults = the ``small`` preset, sized for a 2-core CPU).

    Attributes:
        deter: GRU (deterministic state) size.
        latents: number of categorical latents in the stochastic state.
        classes: classes per categorical latent.
        hidden: width of every dense hidden layer.
        layers: hidden layers of the heads, actor and critic.
        cnn_depth: channels of the first convolution (doubling at each stride-2 layer).
        num_envs: parallel envs collecting experience.
        batch_size: replayed sequences per update.
        batch_length: steps per replayed sequence.
        train_ratio: replayed steps per env step (updates = env steps * ratio / (batch * length)).
        replay_size: replay capacity in entries (split evenly over env streams; FIFO).
        reward_balance: share of each training batch's sequences drawn to contain a rewarded
            step (UNREAL's skewed replay; not in DreamerV3; 0 = uniform). For sparse rewards that a
            random policy almost never finds, where uniform replay leaves the reward head at 0.
            0.5 by default: on maze-cheese uniform replay held about one rewarded entry per batch
            and the reward head (which gates the actor, ``actor_gate``) learned too slowly.
        prefill: env steps of uniform random actions before the first update (fresh runs only).
        model_lr: world-model Adam learning rate.
        model_eps: world-model Adam epsilon.
        model_clip: world-model gradient-norm clip.
        actor_lr: actor Adam learning rate.
        critic_lr: critic Adam learning rate.
        ac_eps: actor/critic Adam epsilon.
        ac_clip: actor/critic gradient-norm clip.
        dyn_scale: weight of the dynamics KL (trains the prior towards the posterior).
        rep_scale: weight of the representation KL (trains the posterior towards the prior).
        free_nats: free bits: each KL term is clipped below this many nats per step.
        unimix: uniform mixture of latent and policy categoricals.
        bins: two-hot bins of the reward and value heads (symlog space, -20..20).
        imag_horizon: imagined steps per actor-critic update.
        horizon: discount horizon; the discount is ``1 - 1 / horizon``.
        lam: λ of the λ-returns.
        entropy: actor entropy bonus (advantages are normalised, so this is scale-free).
        slow_critic_fraction: EMA step of the slow critic per update (1 - decay).
        slowreg: weight of the critic's regulariser towards the slow critic.
        repval_scale: weight of the critic's loss on λ-returns along replayed sequences (real
            rewards; the DreamerV3 reference code's ``repval``, 0.3 there; 0 disables it, as in
            the paper's first version).
        act_greedy: act with the policy's mode instead of sampling (evaluation only; training
            always samples).
        report_every: env steps between ``ctx.report`` calls.
        threads: torch CPU threads while training and acting (0: leave torch's setting). The
            networks are small, so a second thread gains little, and on a shared machine OpenMP
            spin-waiting under oversubscription makes updates several times slower.
        explore_bonus: training-only intrinsic reward per imagined step predicted to land on an
            observation new to the episode (episodic novelty, :mod:`misgen.agents.novelty`, the
            device PPO and the planner use). Replay stores each step's true novelty apart from the
            env reward; a Bernoulli novelty head of the world model learns it, and the actor-critic
            maximises ``reward_head + bonus_now * novelty_head`` in imagination, with ``bonus_now``
            decaying linearly from ``explore_bonus`` to 0 over ``explore_steps``. 0 disables it and
            builds no novelty head. Unlike PPO's and the planner's, it is not taken from the
            env's ``exploration_bonus`` (see :meth:`DreamerAgent.env_defaults`). Not in DreamerV3
            (see the package docstring).
        centre_channel: for symbolic grids, the observation channel marking the agent; the world
            model then encodes and reconstructs the board re-centred on that cell
            (:func:`~misgen.agents.grid_torso.centre_on`: ``C + 1`` channels of ``2H - 1 x 2W - 1``,
            the last marking the board), the input PPO's and the planner's torsos use. ``-1``: the
            board as observed (the dataclass default; the harness sets the env's ``agent_channel``,
            as for PPO and the planner). The larger board makes each update dearer. Not in
            DreamerV3 (see the package docstring).
        imagine_uniform: imagine (and compute the replay value loss) only from the batch's
            uniformly drawn sequences, not from those ``reward_balance`` aimed at rewards: the
            skew is there for the reward head; the actor and critic should learn on the states
            the policy visits, not on a batch half of which ends next to the goal. Not in
            DreamerV3 (which has no skew).
        actor_gate: the actor is trained only once the reward head has learned the replayed
            rewards: while an EMA of its relative error on rewarded replay entries (``|pred - r| /
            |r|``) is above ``actor_gate``, updates train the world model and the critic only, and
            the untrained actor (close to uniform) keeps collecting. Not in DreamerV3 (see the
            package docstring). 0 disables the gate (the actor learns from the first update).
        actor_warmup_max: updates after which the gate opens regardless (for tasks whose rewards
            the initial policy rarely finds, where the gate's EMA would have nothing to measure).
        explore_steps: env steps over which the bonus decays to 0. 150k, half PPO's 300k, because
            Dreamer collects far fewer env steps per second than PPO (each env step pays for
            ``train_ratio / (batch_size * batch_length)`` updates), so that a run of the same
            wall time ends on the env's own objective.
    """

    deter: int = 128
    latents: int = 16
    classes: int = 16
    hidden: int = 128
    layers: int = 1
    cnn_depth: int = 8
    num_envs: int = 16
    batch_size: int = 16
    batch_length: int = 16
    train_ratio: float = 8.0
    replay_size: int = 200_000
    reward_balance: float = 0.5
    prefill: int = 4096
    model_lr: float = 1e-3
    model_eps: float = 1e-8
    model_clip: float = 1000.0
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    ac_eps: float = 1e-5
    ac_clip: float = 100.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    free_nats: float = 1.0
    unimix: float = 0.01
    bins: int = 255
    imag_horizon: int = 15
    horizon: float = 333.0
    lam: float = 0.95
    entropy: float = 3e-4
    slow_critic_fraction: float = 0.02
    slowreg: float = 1.0
    repval_scale: float = 0.3
    act_greedy: bool = False
    report_every: int = 4096
    threads: int = 1
    explore_bonus: float = 0.0
    explore_steps: int = 150_000
    actor_gate: float = 0.5
    imagine_uniform: bool = True
    actor_warmup_max: int = 2000
    centre_channel: int = -1

    def __post_init__(self) -> None:
        for name in (
            "deter",
            "latents",
            "classes",
            "hidden",
            "cnn_depth",
            "num_envs",
            "batch_size",
            "imag_horizon",
            "bins",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_length < 2:
            raise ValueError(f"batch_length must be >= 2, got {self.batch_length}")
        if self.horizon <= 1:
            raise ValueError(f"horizon must be > 1, got {self.horizon}")
        if not 0 <= self.unimix < 1:
            raise ValueError(f"unimix must be in [0, 1), got {self.unimix}")
        if self.train_ratio <= 0:
            raise ValueError(f"train_ratio must be > 0, got {self.train_ratio}")
        if self.explore_bonus < 0 or self.explore_steps < 0:
            raise ValueError("explore_bonus and explore_steps must be >= 0")


PRESETS: dict[str, dict[str, Any]] = {
    "debug": dict(
        deter=32,
        latents=4,
        classes=4,
        hidden=32,
        layers=1,
        cnn_depth=4,
        num_envs=4,
        batch_size=4,
        batch_length=8,
        train_ratio=8.0,
        replay_size=4096,
        prefill=64,
        imag_horizon=5,
        report_every=64,
        actor_warmup_max=32,  # short test runs exercise both sides of the actor gate
    ),
    "small": {},
    "medium": dict(
        deter=512,
        latents=32,
        classes=32,
        hidden=512,
        layers=2,
        cnn_depth=32,
        batch_length=64,
        train_ratio=32.0,
        model_lr=1e-4,
        actor_lr=3e-5,
        critic_lr=3e-5,
    ),
}


@dataclass
class Carry:
    """Recurrent state while acting: the posterior latent and the one-hot action just taken."""

    latent: Latent
    action: torch.Tensor


def _is_last(is_first: torch.Tensor) -> torch.Tensor:
    """(B, T) final-entry flags: an entry is last when the next one starts an episode (unknown,
    hence False, for the final column, whose replay return is never used)."""
    last = torch.zeros_like(is_first)
    last[:, :-1] = is_first[:, 1:]
    return last


@register_agent
class DreamerAgent(Agent):
    """DreamerV3-style model-based agent: RSSM world model, actor-critic trained in imagination.

    Sizes, losses and every deviation from the paper are in the package docstring
    (:mod:`misgen.agents.dreamer`).
    """

    name = "dreamer"
    kind = "model-based"
    Config = DreamerConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    default_steps = 400_000

    def __init__(
        self, config: DreamerConfig, observation_space: gym.Space, action_space: gym.Space, seed: int
    ) -> None:
        super().__init__(config, observation_space, action_space, seed)
        if not isinstance(action_space, gym.spaces.Discrete):
            raise MisgenError(f"dreamer supports Discrete action spaces only, got {action_space}")
        if not isinstance(observation_space, gym.spaces.Box):
            raise MisgenError(f"dreamer supports Box observation spaces only, got {observation_space}")
        c = config
        self.num_actions = int(action_space.n)
        model_space = observation_space
        if c.centre_channel >= 0:
            if len(observation_space.shape) != 3 or not 0 <= c.centre_channel < observation_space.shape[0]:
                raise MisgenError(
                    f"centre_channel={c.centre_channel} needs a C x H x W grid with that channel, got {observation_space}"
                )
            ch, h, w = observation_space.shape
            model_space = gym.spaces.Box(0, 1, (ch + 1, 2 * h - 1, 2 * w - 1), np.uint8)
        self.wm = WorldModel(
            model_space,
            self.num_actions,
            deter=c.deter,
            latents=c.latents,
            classes=c.classes,
            hidden=c.hidden,
            layers=c.layers,
            cnn_depth=c.cnn_depth,
            unimix=c.unimix,
            bins=c.bins,
        )
        self.behavior = Behavior(
            self.wm.rssm.feat_dim,
            self.num_actions,
            hidden=c.hidden,
            layers=c.layers,
            bins=c.bins,
            unimix=c.unimix,
        )
        init_gen = torch_generator(derive_seed(seed, "init"))
        init_weights(self.wm, init_gen)
        init_weights(self.behavior, init_gen)
        if c.explore_bonus > 0:
            # Built after the others so that their initial weights do not depend on whether it exists.
            init_weights(self.wm.add_novelty_head(), torch_generator(derive_seed(seed, "init-novelty")))
        self.behavior.slow_critic.load_state_dict(self.behavior.critic.state_dict())
        self.model_opt = torch.optim.Adam(self.wm.parameters(), lr=c.model_lr, eps=c.model_eps)
        self.actor_opt = torch.optim.Adam(self.behavior.actor.parameters(), lr=c.actor_lr, eps=c.ac_eps)
        self.critic_opt = torch.optim.Adam(self.behavior.critic.parameters(), lr=c.critic_lr, eps=c.ac_eps)
        self.gen = torch_generator(derive_seed(seed, "act"))
        self.updates = 0
        self.reward_fit = 1.0  # EMA of the reward head's relative error on rewarded entries (actor gate)
        self.actor_open = config.actor_gate <= 0
        self.owed = 0.0  # fractional updates carried between env steps (train ratio bookkeeping)
        self.replay: Replay | None = None  # the current learn() call's buffer (not checkpointed)

    @classmethod
    def env_defaults(cls, spec: EnvSpec) -> dict[str, Any]:
        """Where the env marks the agent, an agent-centred world-model input (as PPO's and the
        planner's torsos): see ``centre_channel``.

        Unlike PPO and the planner, Dreamer does not take the env's suggested novelty bonus
        (``--set explore_bonus=...`` still turns it on): on maze-cheese it made the actor follow
        the untrained novelty head (entropy 1.39 -> 0.58 within 256 updates, success below the
        random walk's), and a bonus of up to 1 per novel step outweighs the cheese's 10, which
        also ends the episode and with it the bonus (see the package docstring).
        """
        defaults = grid_env_defaults(spec)
        defaults.pop("explore_bonus", None)
        return defaults

    def explore_bonus_now(self) -> float:
        """The novelty bonus at the current training step (linear decay to 0 at ``explore_steps``)."""
        c = self.config
        return decayed_bonus(c.explore_bonus, self.steps_done, c.explore_steps)

    def model_obs(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Observations (N, *obs_shape) as the world model sees them (re-centred with ``centre_channel``)."""
        x = torch.as_tensor(np.asarray(obs))
        if self.config.centre_channel < 0:
            return x
        return centre_on(x.to(torch.uint8), self.config.centre_channel)

    # Acting -------------------------------------------------------------------------------------
    def initial_state(self, n: int) -> Carry:
        with torch.no_grad():
            return Carry(self.wm.rssm.initial(n), torch.zeros(n, self.num_actions))

    @torch.no_grad()
    def _step(
        self, obs: np.ndarray, carry: Carry, first: np.ndarray, greedy: bool
    ) -> tuple[torch.Tensor, Carry, torch.Tensor]:
        """Filter one observation per env and pick actions; returns (actions, carry, features)."""
        first_t = torch.as_tensor(np.asarray(first, dtype=bool))
        embed = self.wm.codec.encode(self.model_obs(obs))
        latent, _, _ = self.wm.rssm.obs_step(carry.latent, carry.action, embed, first_t, self.gen)
        feat = latent.features
        probs = self.behavior.policy(feat)
        onehot = mode_onehot(probs) if greedy else sample_onehot(probs, self.gen)
        return onehot.argmax(-1), Carry(latent, onehot), feat

    @with_config_threads
    def act(
        self, obs: np.ndarray, state: Carry, first: np.ndarray, env: gym.vector.VectorEnv | None = None
    ) -> tuple[np.ndarray, Carry, dict[str, np.ndarray]]:
        """Filter ``obs`` into the model state and sample (or, with ``act_greedy``, take the mode of) the policy."""
        with torch.no_grad():
            actions, carry, feat = self._step(obs, state, first, self.config.act_greedy)
            extras = {
                "features": feat.numpy(),
                "value": self.behavior.value(feat).numpy(),
                "reward_pred": self.wm.reward(feat).numpy(),
            }
        return actions.numpy(), carry, extras

    # Probe hooks --------------------------------------------------------------------------------
    @with_config_threads
    @torch.no_grad()
    def observe_state(self, obs: np.ndarray, actions: np.ndarray | None = None) -> Carry:
        """Model state after filtering observation sequences ``obs`` (N, T, *obs_shape).

        ``actions[:, t]`` (N, T) is the action taken at ``obs[:, t]`` (only ``t < T - 1`` are
        used); ``None`` means ``T == 1``. The sequence starts a fresh episode. Latents use the
        posterior mode, so the result is deterministic.
        """
        obs = np.asarray(obs)
        n, t = obs.shape[:2]
        if actions is None and t > 1:
            raise MisgenError("observe_state needs actions for sequences longer than one step")
        carry = self.initial_state(n)
        first = np.zeros(n, dtype=bool)
        for i in range(t):
            first[:] = i == 0
            embed = self.wm.codec.encode(self.model_obs(obs[:, i]))
            latent, _, _ = self.wm.rssm.obs_step(
                carry.latent, carry.action, embed, torch.as_tensor(first), None
            )
            prev = (
                torch.as_tensor(np.asarray(actions)[:, i])
                if actions is not None and i < t - 1
                else torch.zeros(n, dtype=torch.long)
            )
            carry = Carry(latent, nn.functional.one_hot(prev.long(), self.num_actions).float())
        return carry

    @with_config_threads
    @torch.no_grad()
    def imagine(self, state: Carry, actions: np.ndarray, sample: bool = False) -> dict[str, np.ndarray]:
        """What the world model expects if ``actions`` (N, H) are taken from model ``state``.

        ``state`` is a carry from :meth:`act` or :meth:`observe_state` (its latent is the start
        s_0; its stored last action is ignored). Latents follow the prior's mode unless ``sample``
        (then the agent's generator is used).

        Returns:
            ``reward`` (N, H): predicted reward on arriving at s_1..s_H; ``cont`` (N, H): predicted
            continue probability of s_1..s_H; ``value`` (N, H + 1): critic value of s_0..s_H;
            ``features`` (N, H + 1, F).
        """
        acts = torch.as_tensor(np.asarray(actions)).long()
        latent = state.latent
        feats = [latent.features]
        for i in range(acts.shape[1]):
            onehot = nn.functional.one_hot(acts[:, i], self.num_actions).float()
            latent = self.wm.rssm.imagine_step(latent, onehot, self.gen if sample else None)
            feats.append(latent.features)
        feat = torch.stack(feats, 1)
        return {
            "reward": self.wm.reward(feat[:, 1:]).numpy(),
            "cont": self.wm.cont(feat[:, 1:]).numpy(),
            "value": self.behavior.value(feat).numpy(),
            "features": feat.numpy(),
        }

    @with_config_threads
    @torch.no_grad()
    def evaluate_obs(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Critic value and reward-head prediction for single observations (N, *obs_shape).

        Each observation is filtered from a fresh state (as the first step of an episode, posterior
        mode), so edited observations (e.g. the mouse or cheese moved) can be scored directly.
        Returns ``value`` (N,), ``reward`` (N,), ``cont`` (N,) and ``features`` (N, F).
        """
        obs = np.asarray(obs)
        carry = self.observe_state(obs[:, None])
        feat = carry.latent.features
        return {
            "value": self.behavior.value(feat).numpy(),
            "reward": self.wm.reward(feat).numpy(),
            "cont": self.wm.cont(feat).numpy(),
            "features": feat.numpy(),
        }

    # Learning -----------------------------------------------------------------------------------
    @with_config_threads
    def train_world_model(
        self, batch: Mapping[str, np.ndarray], gen: torch.Generator
    ) -> tuple[Latent, dict[str, float]]:
        """One world-model update on replayed sequences ``batch`` (as :meth:`Replay.sample` returns them).

        Returns the posterior states (B, T, ...) from before the update, where imagination starts,
        and the loss metrics. Separate from the actor-critic step so that the world model can be
        trained and checked on its own.
        """
        c = self.config
        obs = torch.from_numpy(batch["obs"])
        if c.centre_channel >= 0:
            obs = self.model_obs(obs.flatten(0, 1)).unflatten(0, obs.shape[:2])
        novelty = torch.from_numpy(batch["novelty"]) if "novelty" in batch else None
        model_loss, post, metrics = self.wm.loss(
            obs,
            torch.from_numpy(batch["action"]),
            torch.from_numpy(batch["reward"]),
            torch.from_numpy(batch["is_first"]),
            torch.from_numpy(batch["is_terminal"]),
            gen,
            dyn_scale=c.dyn_scale,
            rep_scale=c.rep_scale,
            free_nats=c.free_nats,
            novelty=novelty,
        )
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        metrics["grad/model"] = float(nn.utils.clip_grad_norm_(self.wm.parameters(), c.model_clip))
        self.model_opt.step()
        return post, metrics

    def _train_step(self, batch: Mapping[str, np.ndarray], gen: torch.Generator) -> dict[str, float]:
        c = self.config
        terminal = torch.from_numpy(batch["is_terminal"])
        reward = torch.from_numpy(batch["reward"])
        first = torch.from_numpy(batch["is_first"])
        novelty = torch.from_numpy(batch["novelty"]) if "novelty" in batch else None
        post, metrics = self.train_world_model(batch, gen)
        # Replay puts its reward-aimed sequences first; the actor-critic learns from the others.
        skewed = int(c.batch_size * c.reward_balance) if c.imagine_uniform else 0
        rows = slice(skewed if skewed < c.batch_size else 0, None)
        post, terminal, reward, first = (
            Latent(post.deter[rows], post.stoch[rows]),
            *(x[rows] for x in (terminal, reward, first)),
        )
        novelty = novelty[rows] if novelty is not None else None
        start = Latent(post.deter.flatten(0, 1), post.stoch.flatten(0, 1))
        start_cont = 1.0 - terminal.flatten().float()
        bonus = self.explore_bonus_now() if self.wm.novelty_head is not None else 0.0
        replayed = {"reward": reward, "is_terminal": terminal, "is_last": _is_last(first)}
        if novelty is not None:
            replayed["novelty"] = novelty
        actor_loss, critic_loss, ac_metrics = self.behavior.loss(
            self.wm,
            start,
            start_cont,
            gen,
            horizon=c.imag_horizon,
            gamma=1.0 - 1.0 / c.horizon,
            lam=c.lam,
            entropy=c.entropy,
            slowreg=c.slowreg,
            replay=replayed,
            repval_scale=c.repval_scale,
            bonus=bonus,
        )
        if self.wm.novelty_head is not None:
            metrics["behavior/explore_bonus"] = bonus
        metrics["behavior/actor_open"] = float(self.actor_open)
        if self.actor_open:
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            metrics["grad/actor"] = float(
                nn.utils.clip_grad_norm_(self.behavior.actor.parameters(), c.ac_clip)
            )
            self.actor_opt.step()
        self._update_gate(metrics["model/reward_rel_err_on_rewarded"])
        metrics["model/reward_fit"] = self.reward_fit
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        metrics["grad/critic"] = float(nn.utils.clip_grad_norm_(self.behavior.critic.parameters(), c.ac_clip))
        self.critic_opt.step()
        self.behavior.update_slow(c.slow_critic_fraction)
        self.updates += 1
        metrics.update(ac_metrics)
        return metrics

    def _update_gate(self, rel_err: float) -> None:
        """Track how well the reward head fits real rewards; open the actor gate (once, for good)
        when that error falls below ``actor_gate`` or after ``actor_warmup_max`` updates.

        Why: an actor trained on an untrained model follows its noise. Adam turns any consistent
        gradient into full-size steps, and DreamerV3's entropy bonus (3e-4) is about 100 times
        smaller than the advantages that spurious imagined rewards of ~0.5 give, so the policy
        collapsed (entropy 1.27 -> 0.6 in 600 updates) onto paths the model merely hallucinated
        as rewarding, collecting fewer real rewards than the initial policy.
        """
        if math.isfinite(rel_err):
            self.reward_fit = 0.9 * self.reward_fit + 0.1 * min(rel_err, 1.0)
        c = self.config
        if self.reward_fit < c.actor_gate or self.updates >= c.actor_warmup_max:
            self.actor_open = True

    def learn(self, env: gym.vector.VectorEnv, ctx: TrainContext) -> None:
        """Collect with the current policy, store in replay, and update at the configured train ratio.

        A fresh run starts with ``prefill`` env steps of uniform random actions. Resuming restarts
        with an empty replay buffer (it is not checkpointed) and collects with the loaded policy
        until one batch of sequences exists before updating again.
        """
        with torch_threads(self.config.threads):
            self._learn(env, ctx)

    def _learn(self, env: gym.vector.VectorEnv, ctx: TrainContext) -> None:
        c = self.config
        n = env.num_envs
        gen = torch_generator(derive_seed(ctx.seed, "train"))
        self.gen = torch_generator(derive_seed(ctx.seed, "act"))
        rng = np.random.default_rng(derive_seed(ctx.seed, "replay"))
        replay = self.replay = Replay(
            n, c.replay_size, self.observation_space.shape, self.observation_space.dtype
        )
        tracker = EpisodicNovelty(
            n, int(np.prod(self.observation_space.shape)), derive_seed(ctx.seed, "novelty")
        )
        spec = getattr(env, "misgen_spec", None)
        intended = spec.intended_goal.name if spec is not None else None
        goals = spec.goal_names if spec is not None else ()
        rows = np.arange(n)
        obs, _ = env.reset(seed=ctx.seed)
        tracker.visit(obs)
        carry = self.initial_state(n)
        first = np.ones(n, dtype=bool)
        reward = np.zeros(n, dtype=np.float32)
        novel = np.zeros(n, dtype=np.float32)  # whether ``obs`` was new to its episode (0 on first)
        random_until = self.steps_done + (c.prefill if self.updates == 0 else 0)
        per_update = c.batch_size * c.batch_length
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        episodes: dict[str, list[float]] = {}
        next_report = (self.steps_done // c.report_every + 1) * c.report_every
        clock, steps0, updates0 = time.monotonic(), self.steps_done, self.updates
        while self.steps_done < ctx.total_steps:
            actions_t, carry, _ = self._step(obs, carry, first, greedy=False)
            actions = actions_t.numpy()
            if self.steps_done < random_until:
                actions = rng.integers(0, self.num_actions, size=n)
                carry = Carry(
                    carry.latent, nn.functional.one_hot(torch.as_tensor(actions), self.num_actions).float()
                )
            replay.add(rows, obs, actions, reward, first, np.zeros(n, bool), novel)
            obs, reward, terminated, truncated, info = env.step(actions)
            reward = np.asarray(reward, dtype=np.float32)
            done = np.asarray(terminated) | np.asarray(truncated)
            going = np.flatnonzero(~done)
            novel = np.zeros(n, dtype=np.float32)
            novel[going] = tracker.visit(obs[going], going)
            if done.any():
                idx = np.flatnonzero(done)
                final_obs = np.stack([info["final_obs"][i] for i in idx])
                final_novel = tracker.visit(final_obs, idx).astype(np.float32)
                novel[idx] = final_novel  # counted in the novel share below (the arrivals of this step)
                replay.add(
                    idx,
                    final_obs,
                    np.zeros(len(idx), np.int64),
                    reward[idx],
                    np.zeros(len(idx), bool),
                    np.asarray(terminated)[idx],
                    final_novel,
                )
                record_finished_episodes(info, idx, intended, goals, episodes)
                reward = np.where(done, 0.0, reward).astype(np.float32)
                tracker.restart(idx)
                tracker.visit(obs[idx], idx)  # the next episode's first observation
            episodes.setdefault("charts/novel_share", []).append(float(novel.mean()))
            novel[done] = 0.0  # a first entry: nothing arrived
            first = done
            self.steps_done += n
            if self.steps_done >= random_until and replay.can_sample(c.batch_length):
                self.owed += n * c.train_ratio / per_update
                while self.owed >= 1.0:
                    self.owed -= 1.0
                    for key, value in self._train_step(
                        replay.sample(c.batch_size, c.batch_length, rng, c.reward_balance), gen
                    ).items():
                        if math.isfinite(value):
                            sums[key] = sums.get(key, 0.0) + value
                            counts[key] = counts.get(key, 0) + 1
            if self.steps_done >= next_report or self.steps_done >= ctx.total_steps:
                elapsed = max(time.monotonic() - clock, 1e-9)
                metrics = {k: sums[k] / counts[k] for k in sums}
                metrics.update({k: float(np.mean(v)) for k, v in episodes.items() if v})
                metrics["updates"] = float(self.updates)
                metrics["charts/env_steps_per_s"] = (self.steps_done - steps0) / elapsed
                metrics["charts/updates_per_s"] = (self.updates - updates0) / elapsed
                metrics["charts/replay_size"] = float(len(replay))
                ctx.report(self.steps_done, metrics)
                sums, counts, episodes = {}, {}, {}
                clock, steps0, updates0 = time.monotonic(), self.steps_done, self.updates
                next_report = (self.steps_done // c.report_every + 1) * c.report_every

    # Persistence --------------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        return {"wm": self.wm, "behavior": self.behavior}

    def _optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, list[nn.Parameter]]]:
        """Each optimizer with its parameters in the order it was built over (for strict loading)."""
        return {
            "model": (self.model_opt, list(self.wm.parameters())),
            "actor": (self.actor_opt, list(self.behavior.actor.parameters())),
            "critic": (self.critic_opt, list(self.behavior.critic.parameters())),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for prefix, module in self._modules().items():
            out.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
        for name, (opt, _) in self._optimizers().items():
            out.update(optimizer_tensors(opt, f"opt.{name}."))
        return out

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        for prefix, module in self._modules().items():
            sub = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            module.load_state_dict(sub, strict=True)
        for name, (opt, params) in self._optimizers().items():
            load_optimizer_tensors(opt, params, tensors, f"opt.{name}.")

    def state_json(self) -> dict[str, Any]:
        return {
            "steps_done": self.steps_done,
            "updates": self.updates,
            "owed": self.owed,
            "reward_fit": self.reward_fit,
            "actor_open": self.actor_open,
        }

    def load_state_json(self, data: Mapping[str, Any]) -> None:
        super().load_state_json(data)
        self.updates = int(data.get("updates", 0))
        self.owed = float(data.get("owed", 0.0))
        self.reward_fit = float(data.get("reward_fit", 1.0))
        # Checkpoints from before the gate existed were trained with the actor on from the start.
        self.actor_open = bool(data.get("actor_open", True)) or self.config.actor_gate <= 0
