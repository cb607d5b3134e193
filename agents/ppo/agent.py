"""The ``ppo`` agent: stable-baselines3 PPO behind misgen's agent protocol.

Training runs SB3's own PPO (rollouts, GAE, clipped surrogate, value bootstrap on time-limit
truncation) on a :class:`~.sb3_vecenv.MisgenSB3VecEnv` view of the batched env. The agent owns
the network: an SB3 ``ActorCriticPolicy`` (feature extractor from :mod:`.networks` + linear policy
and value heads) built from the spaces and the config alone, so acting after ``load_agent`` needs
neither an env nor SB3's pickled ``.zip``. Checkpoints hold the policy ``state_dict`` and the Adam
state as plain tensors (safetensors) plus counters in ``agent.json``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.utils import safe_mean
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from misgen.agents import register_agent
from misgen.agents.base import Agent, TrainContext, grid_env_defaults
from misgen.agents.checkpoint import load_optimizer_tensors, optimizer_tensors, torch_generator
from misgen.agents.grid_torso import Downsample
from misgen.agents.novelty import decayed_bonus
from misgen.agents.ppo.networks import GridCNN, ImpalaCNN, NetworkName, image_shape, resolve_network
from misgen.agents.ppo.novelty import NoveltyBonusVecEnv
from misgen.agents.ppo.sb3_vecenv import MisgenSB3VecEnv
from misgen.environments.spec import EnvSpec
from misgen.errors import MisgenError

OPTIM_PREFIX = "optim."
POLICY_PREFIX = "policy."


@dataclass(frozen=True)
class PPOConfig:
    """PPO options (defaults: the ``small`` preset, tuned to learn maze-cheese fast on 2 CPU cores).

    How the defaults were chosen (the variants tried on maze-cheese and their train success) is in
    ``misgen/bench/MEASUREMENTS.md``.

    Attributes:
        num_envs: parallel envs; one rollout is ``num_envs * n_steps`` env steps.
        n_steps: steps per env per rollout.
        batch_size: minibatch size of the PPO update (should divide ``num_envs * n_steps``).
        n_epochs: passes over each rollout.
        lr: Adam learning rate.
        anneal_lr: decay the learning rate linearly to 0 at the run's total steps.
        gamma: discount factor.
        gae_lambda: GAE lambda (bias/variance trade-off of advantages).
        clip_range: PPO ratio clipping.
        ent_coef: entropy bonus weight (exploration).
        vf_coef: value-loss weight.
        max_grad_norm: gradient-norm clipping.
        normalize_reward: divide rewards by a running std of discounted returns (SB3's
            ``VecNormalize``, rewards only) so the value loss does not swamp the policy gradient
            when rewards are large (maze-cheese pays 10); its statistics are saved with the agent.
        network: feature extractor: ``grid`` (same-size CNN for symbolic grids), ``impala``
            (IMPALA CNN for 64x64 RGB), or ``auto`` (impala for 3-channel images at least 32 px
            high, grid otherwise).
        features_dim: width of the feature vector the heads read (and probes see as ``features``).
        channels: channels of every conv layer of the grid CNN.
        conv_layers: 3x3 conv layers of the grid CNN.
        centre_channel: grid CNN only: observation channel marking the agent; the CNN then sees the
            board re-centred on the agent (``-1``: the board as observed). See ``GridCNN``.
        centre_downsample: grid CNN with ``centre_channel``: how its first conv halves the centred
            board, ``stride`` (a stride-2 conv, the default: ~2.7x less network time per update)
            or ``maxpool`` (conv then 2x2 max-pool; runs saved before this field existed).
        impala_channels: channels of the IMPALA CNN's three stages.
        deterministic: act greedily (argmax) in ``act`` instead of sampling; training always samples.
        explore_bonus: training-only reward for each step onto an observation not yet seen in the
            episode (see :mod:`.novelty`); decays linearly to 0 over ``explore_steps``; 0 disables it.
            The harness sets it from the env's ``exploration_bonus`` (1.0 on maze-cheese).
        explore_steps: env steps over which the bonus decays to 0.
    """

    num_envs: int = 64
    n_steps: int = 64
    batch_size: int = 1024
    n_epochs: int = 2
    lr: float = 1e-3
    anneal_lr: bool = False
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_reward: bool = True
    network: NetworkName = "auto"
    features_dim: int = 256
    channels: int = 16
    conv_layers: int = 3
    centre_channel: int = -1
    centre_downsample: Downsample = "stride"
    impala_channels: tuple[int, ...] = (16, 32, 32)
    deterministic: bool = False
    explore_bonus: float = 0.0
    explore_steps: int = 300_000

    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"centre_downsample": "maxpool"}
    """Values of fields that configs saved before the field existed must keep (see
    ``misgen.configs.config_from_dict``)."""

    def __post_init__(self) -> None:
        for name in ("num_envs", "n_steps", "n_epochs", "features_dim", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= self.batch_size <= self.num_envs * self.n_steps:
            raise ValueError(
                f"batch_size must be in [2, num_envs * n_steps = {self.num_envs * self.n_steps}], got {self.batch_size}"
            )
        if self.network not in ("auto", "grid", "impala"):
            raise ValueError(f"network must be auto, grid or impala, got {self.network!r}")
        if self.explore_bonus < 0 or self.explore_steps < 0:
            raise ValueError("explore_bonus and explore_steps must be >= 0")
        if self.lr <= 0 or self.clip_range <= 0:
            raise ValueError("lr and clip_range must be > 0")
        if not (0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ValueError("gamma and gae_lambda must be in [0, 1]")
        if self.conv_layers < 0 or not self.impala_channels:
            raise ValueError("conv_layers must be >= 0 and impala_channels non-empty")


class _ReportingPPO(PPO):
    """SB3 PPO that calls ``after_update()`` once each rollout's gradient update is done.

    That is the one point per iteration where weights, optimizer state and ``num_timesteps`` agree,
    so reports (where the harness checkpoints and keeps its Ctrl-C snapshot) happen there.
    """

    after_update: Any = None

    def train(self) -> None:
        super().train()
        if self.after_update is not None:
            self.after_update()


@register_agent
class PPOAgent(Agent):
    """Proximal Policy Optimization (Schulman et al. 2017) via stable-baselines3."""

    name = "ppo"
    kind = "model-free"
    Config = PPOConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "debug": {"num_envs": 8, "n_steps": 16, "batch_size": 64, "n_epochs": 1, "channels": 8, "conv_layers": 1, "features_dim": 32},
        "small": {},
        # Cobbe et al. (2020) Procgen hyperparameters with the IMPALA CNN (GPU-sized).
        "procgen": {
            "network": "impala", "num_envs": 64, "n_steps": 256, "batch_size": 2048, "n_epochs": 3,
            "lr": 5e-4, "gamma": 0.999, "gae_lambda": 0.95, "ent_coef": 0.01, "clip_range": 0.2,
            "explore_bonus": 0.0,
        },
    }  # fmt: skip
    default_steps = 1_000_000

    def __init__(
        self, config: PPOConfig, observation_space: gym.Space, action_space: gym.Space, seed: int
    ) -> None:
        super().__init__(config, observation_space, action_space, seed)
        if not isinstance(action_space, gym.spaces.Discrete):
            raise MisgenError(f"ppo supports Discrete actions only, got {action_space}")
        image_shape(observation_space)  # one-line error for non-image observations
        self.network = resolve_network(config.network, observation_space)
        # SB3 initializes weights from torch's global RNG; fork it so the agent's initial weights
        # depend only on its seed and the caller's global RNG state is left untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = ActorCriticPolicy(
                observation_space, action_space, lambda _: config.lr, **self.policy_kwargs()
            )
        self.policy.set_training_mode(False)
        self.n_updates = 0
        self.return_rms = RunningMeanStd(shape=())
        """Running statistics of discounted returns for ``normalize_reward`` (training only)."""
        self.generator = torch_generator(seed)

    @classmethod
    def env_defaults(cls, spec: EnvSpec) -> dict[str, Any]:
        """Centre the torso on the agent where the env marks it; the env's suggested novelty bonus."""
        return grid_env_defaults(spec)

    def explore_bonus_now(self) -> float:
        """The novelty bonus at the current training step (linear decay to 0 at ``explore_steps``)."""
        c = self.config
        return decayed_bonus(c.explore_bonus, self.steps_done, c.explore_steps)

    def policy_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the SB3 policy: the extractor, no hidden MLP between it and the heads."""
        cfg = self.config
        if self.network == "impala":
            extractor, kwargs = (
                ImpalaCNN,
                {"features_dim": cfg.features_dim, "channels": tuple(cfg.impala_channels)},
            )
        else:
            extractor, kwargs = (
                GridCNN,
                {
                    "features_dim": cfg.features_dim,
                    "channels": cfg.channels,
                    "conv_layers": cfg.conv_layers,
                    "centre_channel": cfg.centre_channel,
                    "downsample": cfg.centre_downsample,
                },
            )
        return {
            "net_arch": [],
            "features_extractor_class": extractor,
            "features_extractor_kwargs": kwargs,
            "normalize_images": False,
        }

    # Acting -------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(
        self, obs: np.ndarray, state: Any, first: np.ndarray, env: gym.vector.VectorEnv | None = None
    ) -> tuple[np.ndarray, Any, dict[str, np.ndarray]]:
        """Sample (or, with ``deterministic``, take the argmax of) the policy's action distribution.

        Sampling uses the agent's own ``torch.Generator`` (seeded from the agent seed), never the
        global RNG. Extras: ``features`` (N, features_dim), ``value`` (N,), ``action_probs`` (N, A).
        """
        x = torch.as_tensor(np.asarray(obs))
        if tuple(x.shape[1:]) != tuple(self.observation_space.shape):
            raise MisgenError(
                f"ppo got observations of shape {tuple(x.shape[1:])}, trained on {self.observation_space.shape}"
            )
        features = self.policy.extract_features(x)
        latent_pi, latent_vf = self.policy.mlp_extractor(features)
        probs = torch.softmax(self.policy.action_net(latent_pi), dim=-1)
        value = self.policy.value_net(latent_vf).squeeze(-1)
        if self.config.deterministic:
            actions = probs.argmax(dim=-1)
        else:
            actions = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
        extras = {
            "features": features.float().numpy(),
            "value": value.float().numpy(),
            "action_probs": probs.float().numpy(),
        }
        return actions.numpy().astype(np.int64), state, extras

    # Learning -----------------------------------------------------------------------------------
    def learn(self, env: gym.vector.VectorEnv, ctx: TrainContext) -> None:
        """Train with SB3 PPO from ``self.steps_done`` to ``ctx.total_steps`` env steps.

        SB3 seeds Python's ``random``, NumPy's and torch's *global* RNGs with ``ctx.seed`` when the
        model is built (``set_random_seed``); its action sampling during rollouts and its minibatch
        shuffling use those global RNGs. That is SB3's behaviour, not a choice of this agent: it
        makes a run reproducible for a given seed, at the cost of resetting the process's global
        RNG state. The env's level sampling is reseeded from ``ctx.seed`` at the first reset.

        Training proceeds in whole rollouts of ``num_envs * n_steps`` steps, so it may end up to
        one rollout past ``ctx.total_steps``. ``ctx.report`` is called after every update with
        SB3's logged values (``losses/*``), ``charts/episode_return`` / ``episode_length`` /
        ``success`` (intended goal reached, last 100 episodes) and ``charts/sps``. A Ctrl-C
        propagates as is; the harness (:mod:`misgen.train`) restores the state of the last report
        (a completed update) before it checkpoints.
        """
        cfg = self.config
        if env.num_envs != cfg.num_envs:
            raise MisgenError(
                f"ppo was configured for num_envs={cfg.num_envs}, got an env with {env.num_envs}"
            )
        if self.steps_done >= ctx.total_steps:
            return
        venv: VecEnv = MisgenSB3VecEnv(env)
        if venv.observation_space != self.observation_space or venv.action_space != self.action_space:
            raise MisgenError(
                f"env spaces {venv.observation_space}, {venv.action_space} differ from the agent's"
            )
        if cfg.explore_bonus > 0:
            venv = NoveltyBonusVecEnv(venv, self.explore_bonus_now, seed=ctx.seed)
        if cfg.normalize_reward:
            venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=cfg.gamma)
            venv.ret_rms = self.return_rms  # shared: updated in place, saved in state_json
        lr = cfg.lr
        model = _ReportingPPO(
            ActorCriticPolicy,
            venv,
            learning_rate=(lambda progress: lr * progress) if cfg.anneal_lr else lr,
            n_steps=cfg.n_steps,
            batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_range,
            ent_coef=cfg.ent_coef,
            vf_coef=cfg.vf_coef,
            max_grad_norm=cfg.max_grad_norm,
            policy_kwargs=self.policy_kwargs(),
            seed=ctx.seed,
            device="cpu",
            verbose=0,
        )
        model.policy = self.policy  # train the agent's own network (and its optimizer state)
        model.num_timesteps = self.steps_done
        model._n_updates = self.n_updates
        model.set_logger(Logger(folder=None, output_formats=[]))  # no console output: ctx.report
        last = {"time": time.monotonic(), "steps": self.steps_done}

        def after_update() -> None:
            self.steps_done, self.n_updates = int(model.num_timesteps), int(model._n_updates)
            now = time.monotonic()
            metrics = _metrics(model)
            metrics["charts/sps"] = (self.steps_done - last["steps"]) / max(now - last["time"], 1e-9)
            last.update(time=now, steps=self.steps_done)
            ctx.report(self.steps_done, metrics)

        model.after_update = after_update
        try:
            model.learn(
                ctx.total_steps - self.steps_done,
                log_interval=None,
                reset_num_timesteps=False,
                progress_bar=False,
            )
        finally:
            model.after_update = None
            self.policy.set_training_mode(False)

    # Persistence --------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """Policy ``state_dict`` under ``policy.*``; Adam moments and step counts under ``optim.<i>.*``."""
        names = self._aliases()
        out = {POLICY_PREFIX + k: v for k, v in self.policy.state_dict().items() if names[k] == k}
        out.update(optimizer_tensors(self.policy.optimizer, OPTIM_PREFIX))
        return out

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Inverse of :meth:`tensors`; strict about missing, extra or mis-shaped weights."""
        names = self._aliases()
        saved = {k.removeprefix(POLICY_PREFIX): v for k, v in tensors.items() if k.startswith(POLICY_PREFIX)}
        unknown = sorted(set(saved) - set(names.values()))
        unknown += sorted(k for k in tensors if not k.startswith((POLICY_PREFIX, OPTIM_PREFIX)))
        if unknown:
            raise KeyError(f"unexpected tensors {unknown[:3]}")
        missing = sorted(set(names.values()) - set(saved))
        if missing:
            raise KeyError(f"missing tensors {missing[:3]}")
        self.policy.load_state_dict({k: saved[canonical] for k, canonical in names.items()}, strict=True)
        load_optimizer_tensors(self.policy.optimizer, list(self.policy.parameters()), tensors, OPTIM_PREFIX)

    def _aliases(self) -> dict[str, str]:
        """``state_dict`` key -> the first key holding the same tensor.

        SB3 registers a shared feature extractor three times (``features_extractor``,
        ``pi_features_extractor``, ``vf_features_extractor``); safetensors refuses shared storage,
        so each tensor is saved once under its first name and the aliases are refilled on load.
        """
        first: dict[int, str] = {}
        return {
            k: first.setdefault(v.data_ptr(), k) for k, v in self.policy.state_dict(keep_vars=True).items()
        }

    def state_json(self) -> dict[str, Any]:
        rms = self.return_rms
        return {
            "steps_done": self.steps_done,
            "n_updates": self.n_updates,
            "network": self.network,
            "return_rms": {"mean": float(rms.mean), "var": float(rms.var), "count": float(rms.count)},
        }

    def load_state_json(self, data: Mapping[str, Any]) -> None:
        super().load_state_json(data)
        self.n_updates = int(data.get("n_updates", 0))
        rms = data.get("return_rms")
        if rms is not None:
            self.return_rms.mean = np.asarray(rms["mean"], np.float64)
            self.return_rms.var = np.asarray(rms["var"], np.float64)
            self.return_rms.count = float(rms["count"])


def _metrics(model: PPO) -> dict[str, float]:
    """SB3's logged training values under CleanRL-style names, plus episode statistics."""
    out: dict[str, float] = {}
    for key, value in model.logger.name_to_value.items():
        name = key.split("/", 1)[-1]
        if name in ("learning_rate", "clip_range"):
            out[f"charts/{name}"] = float(value)
        elif key.startswith("train/") and name != "n_updates":
            out[f"losses/{name}"] = float(value)
    model.logger.dump(model.num_timesteps)  # clears the logger (it has no outputs)
    if model.ep_info_buffer:
        out["charts/episode_return"] = float(safe_mean([e["r"] for e in model.ep_info_buffer]))
        out["charts/episode_length"] = float(safe_mean([e["l"] for e in model.ep_info_buffer]))
    if model.ep_success_buffer:
        out["charts/success"] = float(safe_mean(model.ep_success_buffer))
    return out
