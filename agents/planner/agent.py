"""The ``planner`` agent: config, presets, acting by search, the training loop, checkpoints, probe hooks.

See the package docstring (:mod:`misgen.agents.planner`) for the algorithm and its choices.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

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
from misgen.agents.novelty import decayed_bonus
from misgen.agents.planner.explore import SearchNovelty
from misgen.agents.planner.mcts import SearchConfig, SearchResult, search, softmax
from misgen.agents.planner.networks import PlannerNet
from misgen.agents.planner.replay import Replay, lambda_returns
from misgen.environments.spec import EnvSpec
from misgen.errors import MisgenError
from misgen.seeding import derive_seed

NET, OPTIM = "net.", "optim."


VIN_Q_RANGE_FLOOR = 0.1
"""``search.q_range_floor`` on the envs where the value-iteration value is the default."""


def self_play_search() -> SearchConfig:
    """The planner's default self-play search (see ``PlannerConfig.search``)."""
    return SearchConfig(num_simulations=8, q_range_floor=1.0)


@dataclass(frozen=True)
class PlannerConfig:
    """Planner options (defaults = the ``small`` preset, sized for maze-cheese on a 2-core CPU).

    Attributes:
        num_envs: parallel envs searched and stepped together.
        search: the self-play search (:class:`~.mcts.SearchConfig`; ``--set search.<field>=...``).
            Its defaults differ from mctx's in two places: 8 simulations (a 2-core budget), and
            ``q_range_floor`` 1.0 (reward units) so that near-zero early value noise does not
            become confident policy targets. ``search.discount`` is also the value targets' gamma.
        act_simulations: simulations per search when acting outside training (evaluation,
            probes); 0 means ``search.num_simulations``. Deeper search at decision time costs
            little next to training.
        lam: lambda of the value targets (TD(lambda) returns of the true rewards).
        value_target: ``bellman``: each update recomputes the value targets of its batch from
            the model, ``max over actions of r + discount * V(next)`` with the env's core stepping
            the stored state and the current network valuing the next observations (a one-step
            optimal backup, like MuZero Reanalyse's fresh targets): the value learns the best
            the planner could do, not what the exploring behaviour did, and needs no bonus to be
            right. Used with ``value_net="vin"`` (whose maps are grounded in model transitions):
            with a free linear value head these self-referential targets inflated the values
            without bound (3x the largest possible return within 4k steps). ``lambda`` (the
            default elsewhere): TD(lambda) returns of the behaviour (see ``value_bootstrap``).
        value_bootstrap: ``lambda`` targets only: what they bootstrap from: ``network`` (the value head's
            estimate recorded while acting, as PPO's GAE) or ``search`` (the root search value of
            the learned objective, bonus excluded, as MuZero; it includes learned rewards).
        act_noise: outside training, sample actions (Gumbel noise / visit-count sampling, from the
            agent's generator) instead of searching deterministically.
        unroll: env steps per env between update phases.
        replay_size: replay capacity in transitions (FIFO).
        batch_size: samples per gradient update.
        replay_ratio: replayed samples per env step (updates per phase =
            ``num_envs * unroll * replay_ratio / batch_size``).
        reward_balance: share of each reward-model batch drawn from rewarded transitions (UNREAL's
            skewed sampling; 0 = uniform).
        explore_bonus: training-only search bonus for edges into observations not yet seen in the
            episode (see :mod:`.explore`); 0 disables it. The harness sets it from the env's
            ``exploration_bonus`` (1.0 on maze-cheese).
        explore_steps: env steps over which the bonus decays linearly to 0.
        lr: Adam learning rate.
        max_grad_norm: gradient-norm clip.
        value_coef: weight of the value loss (MSE / 2).
        reward_coef: weight of the reward-model loss (MSE / 2).
        channels: channels of every conv layer.
        conv_layers: 3x3 conv layers of the torso.
        centre_channel: observation channel marking the agent; the torso then sees the board
            re-centred on it (``-1``: as observed). Set from the env's ``agent_channel``.
        hidden: width of the feature vector.
        value_net: ``vin``: the value (and part of the prior) comes from a value-iteration network
            over the board (:mod:`.value_iteration`), which generalises maze distance to unseen
            layouts; ``conv``: heads on the torso features only. The harness picks ``vin`` on
            the envs in ``PlannerAgent.vin_envs`` (maze-cheese).
        agent_channel: observation channel marking the agent, where the value-iteration network
            reads its value; set from the env's ``agent_channel``.
        vin_channels: channels of the value-iteration network's per-cell conv.
        vin_iterations: its rounds of value iteration (0: ``H * W // 2``).
        vin_lr: Adam learning rate of the value-iteration network (the rest uses ``lr``). Its
            map layer starts at zero and must reach logits of several units to mark walls
            impassable; Adam moves each weight by about ``lr`` per update, so at ``lr`` the maps
            needed thousands of updates before the value ranked moves right (see
            MEASUREMENTS.md), and the search had no usable value until then.
        plain_share: share of the training envs that always search without the exploration bonus;
            their episodes give ``charts/success`` (the true objective) while the bonus is on,
            and the others' ``explore/success``.
        report_every: env steps between ``ctx.report`` calls.
        threads: torch CPU threads while the planner trains, acts or evaluates observations (0:
            leave torch's setting). A search makes many small network calls, where intra-op
            threading costs more than it gains (``misgen bench agents`` measures it).
    """

    num_envs: int = 32
    search: SearchConfig = field(default_factory=self_play_search)
    act_simulations: int = 32
    lam: float = 0.95
    value_target: Literal["bellman", "lambda"] = "lambda"
    value_bootstrap: Literal["network", "search"] = "network"
    act_noise: bool = True
    unroll: int = 16
    replay_size: int = 50_000
    batch_size: int = 256
    replay_ratio: float = 8.0
    reward_balance: float = 0.25
    explore_bonus: float = 0.0
    explore_steps: int = 300_000
    lr: float = 1e-3
    max_grad_norm: float = 5.0
    value_coef: float = 0.25
    reward_coef: float = 1.0
    channels: int = 16
    conv_layers: int = 3
    centre_channel: int = -1
    hidden: int = 128
    value_net: Literal["conv", "vin"] = "conv"
    agent_channel: int = -1
    vin_channels: int = 16
    vin_iterations: int = 0
    vin_lr: float = 1e-2
    plain_share: float = 0.25
    report_every: int = 4096
    threads: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.search, SearchConfig):
            raise ValueError(f"search must be a SearchConfig, got {type(self.search).__name__}")
        for name in ("num_envs", "unroll", "batch_size", "replay_size", "hidden", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.act_simulations < 0:
            raise ValueError(f"act_simulations must be >= 0, got {self.act_simulations}")
        if not 0 <= self.lam <= 1:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if self.lr <= 0 or self.vin_lr <= 0 or self.replay_ratio <= 0:
            raise ValueError("lr, vin_lr and replay_ratio must be > 0")
        if self.explore_bonus < 0 or self.explore_steps < 0:
            raise ValueError("explore_bonus and explore_steps must be >= 0")
        if self.value_target not in ("bellman", "lambda"):
            raise ValueError(f"value_target must be bellman or lambda, got {self.value_target!r}")
        if self.value_bootstrap not in ("network", "search"):
            raise ValueError(f"value_bootstrap must be network or search, got {self.value_bootstrap!r}")
        if not 0 <= self.reward_balance <= 1:
            raise ValueError(f"reward_balance must be in [0, 1], got {self.reward_balance}")
        if self.value_net not in ("conv", "vin"):
            raise ValueError(f"value_net must be conv or vin, got {self.value_net!r}")
        if self.value_net == "vin" and self.agent_channel < 0:
            raise ValueError("value_net=vin needs agent_channel (the observation channel marking the agent)")
        if not 0 <= self.plain_share <= 1:
            raise ValueError(f"plain_share must be in [0, 1], got {self.plain_share}")
        if self.conv_layers < 0:
            raise ValueError(f"conv_layers must be >= 0, got {self.conv_layers}")

    def search_config(self, acting: bool = False) -> SearchConfig:
        """Search options for self-play, or for acting outside training (``acting``)."""
        if acting and self.act_simulations:
            return dataclasses.replace(self.search, num_simulations=self.act_simulations)
        return self.search


PRESETS: dict[str, dict[str, Any]] = {
    "debug": {
        "num_envs": 4,
        "search.num_simulations": 4,
        "act_simulations": 4,
        "unroll": 4,
        "batch_size": 16,
        "replay_size": 512,
        "channels": 4,
        "conv_layers": 1,
        "hidden": 16,
        "vin_channels": 4,
        "report_every": 32,
    },
    "small": {},
    "puct": {"search.rule": "puct", "search.num_simulations": 16},
    "true-reward": {"search.reward_source": "true"},
}


def native_env_names() -> str:
    from misgen.environments import ENVS

    return ", ".join(name for name, spec in ENVS.items() if spec.make_core is not None) or "(none)"


def require_core(env: Any, need_state: bool = True) -> tuple[Any, Any]:
    """``(env.core, env.state)`` of a native vector env, or a one-line error naming native envs."""
    if env is None:
        raise MisgenError(
            "the planner acts by search and needs the env (act(obs, state, first, env)); pass the vector env"
        )
    core, state = getattr(env, "core", None), getattr(env, "state", None)
    if core is None:
        spec = getattr(env, "misgen_spec", None)
        name = f"env {spec.id!r}" if spec is not None else "this env"
        raise MisgenError(
            f"the planner needs a native env with a functional core; {name} has none. Native envs: {native_env_names()}"
        )
    if state is None and need_state:
        raise MisgenError("the planner plans from env.state; reset the env before acting")
    return core, state


@register_agent
class PlannerAgent(Agent):
    """MCTS at decision time over the env's functional core, toward a learned reward (see package docs)."""

    name = "planner"
    kind = "planning"
    Config = PlannerConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    default_steps = 300_000
    eval_points: ClassVar[int] = 3
    """Bonus-free evaluations on the training curve: each is a search per step of every episode, so
    far dearer than for PPO or Dreamer; three points still show where the curve is going."""
    vin_envs: ClassVar[tuple[str, ...]] = ("maze-cheese",)
    """Envs where ``value_net="vin"`` is the default: those where it was measured to make the
    planner competent. Other grid envs (keys and chests, where value depends on what is held)
    keep ``conv`` until measured; ``--set value_net=vin --set agent_channel=N`` opts in."""

    @classmethod
    def env_defaults(cls, spec: EnvSpec) -> dict[str, Any]:
        """Centre the torso on the agent where the env marks it; the env's suggested novelty
        bonus; the value-iteration value network (with Bellman targets and a
        :data:`VIN_Q_RANGE_FLOOR` search floor) on the envs in :attr:`vin_envs`."""
        out = grid_env_defaults(spec)
        if spec.agent_channel is not None and spec.id in cls.vin_envs:
            out.update(value_net="vin", agent_channel=spec.agent_channel, value_target="bellman")
            # The value-iteration value is exact enough that Q differences of a tenth of a
            # reward unit are real: far from the cheese a step back costs ~0.2, and the default
            # floor of 1.0 flattened that into near-uniform policy targets.
            out["search.q_range_floor"] = VIN_Q_RANGE_FLOOR
        return out

    def __init__(
        self, config: PlannerConfig, observation_space: gym.Space, action_space: gym.Space, seed: int
    ) -> None:
        super().__init__(config, observation_space, action_space, seed)
        if not isinstance(action_space, gym.spaces.Discrete):
            raise MisgenError(f"the planner supports Discrete action spaces only, got {action_space}")
        self.num_actions = int(action_space.n)
        self.net = PlannerNet(
            observation_space, self.num_actions, config.channels, config.conv_layers, config.hidden, config.centre_channel,
            config.value_net, config.agent_channel, config.vin_channels, config.vin_iterations, config.search.discount,
        )  # fmt: skip
        self.net.init_weights(torch_generator(derive_seed(seed, "init")))
        self.net.eval()
        # The value-iteration maps get their own (larger) learning rate: see ``vin_lr``.
        vin_params = list(self.net.vin.parameters()) if self.net.vin is not None else []
        vin_ids = {id(p) for p in vin_params}
        rest = [p for p in self.net.parameters() if id(p) not in vin_ids]
        self._optim_params = rest + vin_params  # the optimizer's parameter order (checkpoints)
        groups = [{"params": rest, "lr": config.lr}]
        if vin_params:
            groups.append({"params": vin_params, "lr": config.vin_lr})
        self.optim = torch.optim.Adam(groups)
        self.rng = np.random.default_rng(derive_seed(seed, "act"))
        self.updates = 0
        self.episodes = 0

    @property
    def search_config(self) -> SearchConfig:
        """Self-play search options."""
        return self.config.search_config()

    # Network ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _evaluate(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The search's evaluator: prior logits, value and predicted arrival reward."""
        _, logits, value, reward = self.net(torch.as_tensor(np.ascontiguousarray(obs)))
        return logits.numpy(), value.numpy(), reward.numpy()

    @torch.no_grad()
    @with_config_threads
    def evaluate_obs(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Network outputs for observations (N, *obs_shape), real or edited; no search.

        Returns ``value`` (N,): predicted discounted return from the observation; ``reward`` (N,):
        the reward model's prediction for arriving at it (the learned objective); ``policy`` (N, A):
        prior probabilities; ``features`` (N, hidden).
        """
        obs = np.asarray(obs)
        if tuple(obs.shape[1:]) != tuple(self.observation_space.shape):
            raise MisgenError(
                f"planner got observations of shape {tuple(obs.shape[1:])}, trained on {self.observation_space.shape}"
            )
        feat, logits, value, reward = self.net(torch.as_tensor(np.ascontiguousarray(obs)))
        return {
            "value": value.numpy(),
            "reward": reward.numpy(),
            "policy": torch.softmax(logits, -1).numpy(),
            "features": feat.numpy(),
        }

    def reward_of_obs(self, obs: np.ndarray) -> np.ndarray:
        """(N,) learned reward for arriving at each observation (what the tree is scored with)."""
        return self.evaluate_obs(obs)["reward"]

    def value_of_obs(self, obs: np.ndarray) -> np.ndarray:
        """(N,) value head at each observation (the tree's leaf estimate; no search)."""
        return self.evaluate_obs(obs)["value"]

    # Acting -------------------------------------------------------------------------------------
    def plan(self, env: Any, noise: bool, rng: np.random.Generator | None = None) -> SearchResult:
        """Search from the env's current state (``env.state``) with the env's core as the model."""
        core, state = require_core(env)
        cfg = self.config.search_config(acting=True)
        return search(core, state, self._evaluate, cfg, rng or self.rng, noise=noise, sample=noise)

    @with_config_threads
    def act(
        self, obs: np.ndarray, state: Any, first: np.ndarray, env: gym.vector.VectorEnv | None = None
    ) -> tuple[np.ndarray, Any, dict[str, np.ndarray]]:
        """Search from ``env.state`` and return the chosen actions.

        Extras: ``features`` (N, hidden) of the current observation, ``value`` (N,) root search
        value, ``net_value`` (N,) value head, ``reward_pred`` (N,) learned reward of the current
        observation, ``visit_probs`` (N, A) root visit distribution, ``policy_target`` (N, A)
        improved policy, ``prior_probs`` (N, A), ``q_values`` (N, A) completed root Q-values.
        """
        res = self.plan(env, noise=self.config.act_noise)
        core, root = require_core(env)
        with torch.no_grad():
            feat = self.net.features(torch.as_tensor(core.observe(root))).numpy()
        visits = res.visit_counts
        extras = {
            "features": feat,
            "value": res.root_value.astype(np.float32),
            "net_value": res.raw_value.astype(np.float32),
            "reward_pred": res.root_reward.astype(np.float32),
            "visit_probs": (visits / np.maximum(visits.sum(axis=1, keepdims=True), 1.0)).astype(np.float32),
            "policy_target": res.policy_target.astype(np.float32),
            "prior_probs": softmax(res.root_logits).astype(np.float32),
            "q_values": res.q_values.astype(np.float32),
        }
        return res.action, state, extras

    # Learning -----------------------------------------------------------------------------------
    def learn(self, env: gym.vector.VectorEnv, ctx: TrainContext) -> None:
        """Self-play with search on the train split, replay, and network updates until ``ctx.total_steps``.

        Collects ``unroll`` steps from every env (each action from a noisy search), turns the
        segment into targets (search policies, bonus excluded; TD(lambda) returns of the true
        rewards bootstrapped per ``value_bootstrap``; arrival rewards), appends them to the replay and runs ``num_envs * unroll * replay_ratio /
        batch_size`` updates. The replay is not checkpointed: ``--resume`` refills it with the
        loaded networks before updating again. Ctrl-C rollback is the harness's
        (:mod:`misgen.train`): it restores the agent as of its last report before saving.
        """
        require_core(env, need_state=False)
        if env.num_envs != self.config.num_envs:
            raise MisgenError(
                f"planner was configured for num_envs={self.config.num_envs}, got an env with {env.num_envs}"
            )
        try:
            with torch_threads(self.config.threads):
                self._learn(env, ctx)
        finally:
            self.net.eval()

    def _learn(self, env: gym.vector.VectorEnv, ctx: TrainContext) -> None:
        c = self.config
        rng = np.random.default_rng(derive_seed(ctx.seed, "train"))
        obs, _ = env.reset(seed=ctx.seed)
        self._core = env.core
        template = env.state if c.value_target == "bellman" or c.value_net == "vin" else None
        replay = Replay(
            c.replay_size,
            self.observation_space.shape,
            self.observation_space.dtype,
            self.num_actions,
            template,
        )
        spec = getattr(env, "misgen_spec", None)
        intended = spec.intended_goal.name if spec is not None else None
        goals = spec.goal_names if spec is not None else ()
        self._novelty = SearchNovelty(
            env.num_envs, int(np.prod(self.observation_space.shape)), derive_seed(ctx.seed, "novelty")
        )
        self._novelty.restart(np.arange(env.num_envs), obs)
        self._explorers = np.arange(env.num_envs) < env.num_envs - round(c.plain_share * env.num_envs)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        episodes: dict[str, list[float]] = {}
        next_report = (self.steps_done // c.report_every + 1) * c.report_every
        clock, steps0, updates0 = time.monotonic(), self.steps_done, self.updates
        owed = 0.0
        while self.steps_done < ctx.total_steps:
            seg = self._collect(env, obs, rng, ctx.total_steps, episodes, intended, goals, sums, counts)
            obs = seg["next_obs"]
            replay.add(seg["obs"], seg["policy"], seg["value"], seg["arrival"], seg["reward"], seg["state"])
            owed += len(seg["obs"]) * c.replay_ratio / c.batch_size
            if len(replay) >= c.batch_size:
                self.net.train()
                while owed >= 1.0:
                    owed -= 1.0
                    _accumulate(
                        sums, counts, self._update(replay.sample(c.batch_size, rng, c.reward_balance))
                    )
                self.net.eval()
            if self.steps_done >= next_report or self.steps_done >= ctx.total_steps:
                elapsed = max(time.monotonic() - clock, 1e-9)
                metrics = {k: sums[k] / counts[k] for k in sums}
                metrics.update({k: float(np.mean(v)) for k, v in episodes.items() if v})
                metrics["updates"] = float(self.updates)
                metrics["charts/episodes"] = float(self.episodes)
                metrics["charts/env_steps_per_s"] = (self.steps_done - steps0) / elapsed
                metrics["charts/updates_per_s"] = (self.updates - updates0) / elapsed
                metrics["charts/replay_size"] = float(len(replay))
                ctx.report(self.steps_done, metrics)
                sums, counts, episodes = {}, {}, {}
                clock, steps0, updates0 = time.monotonic(), self.steps_done, self.updates
                next_report = (self.steps_done // c.report_every + 1) * c.report_every

    def _collect(
        self, env, obs, rng, total_steps, episodes, intended, goals, sums, counts
    ) -> dict[str, np.ndarray]:
        """Up to ``unroll`` steps of every env with noisy search; returns the segment's targets."""
        c = self.config
        n = env.num_envs
        rec: dict[str, list[np.ndarray]] = {
            k: [] for k in ("obs", "policy", "net_value", "arrival", "reward", "term", "trunc", "final_value")
        }
        states: list[Any] = []
        for _ in range(c.unroll):
            if self.steps_done >= total_steps:
                break
            core, state = require_core(env)
            bonus = self.explore_bonus()
            edge_bonus = self._novelty.bonus_fn(bonus, self._explorers) if bonus > 0 else None
            res = search(
                core,
                state,
                self._evaluate,
                self.search_config,
                rng,
                noise=True,
                sample=True,
                edge_bonus=edge_bonus,
            )
            states.append(state.copy())
            next_obs, reward, terminated, truncated, info = env.step(res.action)
            terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
            done = terminated | truncated
            arrival = np.array(next_obs, copy=True)
            final_value = np.zeros(n)
            if done.any():
                idx = np.flatnonzero(done)
                arrival[idx] = np.stack([info["final_obs"][i] for i in idx])
                final_value[idx] = self._evaluate(arrival[idx])[1]
                self.episodes += len(idx)
                # Success under the true objective comes from envs searching without the bonus.
                explored = self._explorers[idx] if bonus > 0 else np.zeros(len(idx), bool)
                record_finished_episodes(info, idx[~explored], intended, goals, episodes)
                if explored.any():
                    tagged: dict[str, list[float]] = {}
                    record_finished_episodes(info, idx[explored], intended, goals, tagged)
                    for key, values in tagged.items():
                        episodes.setdefault(key.replace("charts/", "explore/"), []).extend(values)
                self._novelty.restart(idx, next_obs[idx])
            self._novelty.visit(next_obs)
            for key, value in (("obs", obs), ("policy", res.policy_target), ("net_value", res.raw_value if c.value_bootstrap == "network" else res.root_value), ("arrival", arrival),
                               ("reward", np.asarray(reward, np.float64)), ("term", terminated), ("trunc", truncated), ("final_value", final_value)):  # fmt: skip
                rec[key].append(np.asarray(value))
            _accumulate(sums, counts, {
                "search/root_value": float(res.root_value.mean()),
                "search/net_value": float(res.raw_value.mean()),
                "search/max_depth": float(res.max_depth.mean()),
                "search/target_entropy": float(-(res.policy_target * np.log(np.maximum(res.policy_target, 1e-12))).sum(1).mean()),
                "search/explore_bonus": bonus,
            })  # fmt: skip
            obs = next_obs
            self.steps_done += n
        bootstrap = self._evaluate(obs)[1]
        seg = {k: np.stack(v) for k, v in rec.items()}
        values = np.concatenate([seg["net_value"], bootstrap[None]])
        targets = lambda_returns(
            seg["reward"], seg["term"], seg["trunc"], values, seg["final_value"], c.search.discount, c.lam
        )
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731 - (T, B, ...) -> (T * B, ...)
        return {
            "obs": flat(seg["obs"]),
            "policy": flat(seg["policy"]),
            "value": flat(targets),
            "arrival": flat(seg["arrival"]),
            "reward": flat(seg["reward"]),
            "state": dataclasses.replace(
                states[0],
                **{
                    f.name: np.concatenate([getattr(x, f.name) for x in states])
                    for f in dataclasses.fields(states[0])
                },
            ),
            "next_obs": obs,
        }

    def explore_bonus(self) -> float:
        """The training-only novelty bonus at the current step (linear decay to 0)."""
        c = self.config
        return decayed_bonus(c.explore_bonus, self.steps_done, c.explore_steps)

    def _model_step(self, state: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every action from each stored state ``s`` through the env's core (the training levels'
        true rewards and termination): ``(next obs (k * A, ...), reward, terminated)``, action-major."""
        k, a = len(state), self.num_actions
        nxt, reward, terminated, _ = self._core.step(
            state.take(np.repeat(np.arange(k), a)), np.tile(np.arange(a), k)
        )
        return self._core.observe(nxt), np.asarray(reward, np.float64), np.asarray(terminated, bool)

    def _bellman_targets(
        self, next_obs: np.ndarray, reward: np.ndarray, terminated: np.ndarray
    ) -> np.ndarray:
        """``max_a r(s, a) + discount * V(s_a)`` with the current network valuing the successors.
        Time limits are ignored (no clock is observed)."""
        with torch.no_grad():
            value = self.net.value_only(torch.as_tensor(np.ascontiguousarray(next_obs))).numpy()
        q = reward + self.config.search.discount * ~terminated * value
        return q.reshape(-1, self.num_actions).max(axis=1)

    def _update(self, batch: Mapping[str, Any]) -> dict[str, float]:
        c = self.config
        _, logits, value, _ = self.net(torch.as_tensor(batch["obs"]))
        # The reward model alone on the arrival batch (no value iteration, and no torso with vin).
        reward = self.net.arrival_reward(torch.as_tensor(batch["arrival"]))
        stepped = self._model_step(batch["state"]) if "state" in batch else None
        target_v = (
            self._bellman_targets(*stepped)
            if c.value_target == "bellman" and stepped is not None
            else batch["value"]
        )
        target_pi = torch.as_tensor(batch["policy"])
        policy_loss = -(target_pi * torch.log_softmax(logits, -1)).sum(-1).mean()
        value_loss = 0.5 * (value - torch.as_tensor(target_v, dtype=value.dtype)).pow(2).mean()
        r_true = torch.as_tensor(batch["reward"])
        reward_err = reward - r_true
        reward_loss = 0.5 * reward_err.pow(2).mean()
        if self.net.vin is not None:
            # With vin, ``reward`` above is the map's R at the agent: the reward loss trains the map.
            if stepped is not None:
                map_reward, map_pass = self.net.vin.map_loss(
                    torch.as_tensor(batch["obs"]),
                    torch.as_tensor(stepped[0]),
                    torch.as_tensor(stepped[1], dtype=torch.float32),
                )
                reward_loss = reward_loss + map_reward + map_pass
        loss = policy_loss + c.value_coef * value_loss + c.reward_coef * reward_loss
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        grad = float(nn.utils.clip_grad_norm_(self.net.parameters(), c.max_grad_norm))
        self.optim.step()
        self.updates += 1
        out = {
            "loss/policy": policy_loss.item(),
            "loss/value": value_loss.item(),
            "loss/reward": reward_loss.item(),
            "grad/norm": grad,
        }
        rewarded = r_true != 0
        if bool(rewarded.any()):
            out["reward_model/abs_err_rewarded"] = reward_err[rewarded].abs().mean().item()
        if bool((~rewarded).any()):
            out["reward_model/abs_err_unrewarded"] = reward_err[~rewarded].abs().mean().item()
        return out

    # Persistence --------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """Network ``state_dict`` under ``net.*``; Adam moments and step counts under ``optim.<i>.*``."""
        out = {NET + k: v.detach().clone() for k, v in self.net.state_dict().items()}
        out.update(optimizer_tensors(self.optim, OPTIM))
        return out

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Inverse of :meth:`tensors`; strict about missing, extra or mis-shaped weights."""
        unknown = sorted(k for k in tensors if not k.startswith((NET, OPTIM)))
        if unknown:
            raise KeyError(f"unexpected tensors {unknown[:3]}")
        self.net.load_state_dict(
            {k.removeprefix(NET): v for k, v in tensors.items() if k.startswith(NET)}, strict=True
        )
        load_optimizer_tensors(self.optim, self._optim_params, tensors, OPTIM)

    def state_json(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done, "updates": self.updates, "episodes": self.episodes}

    def load_state_json(self, data: Mapping[str, Any]) -> None:
        super().load_state_json(data)
        self.updates = int(data.get("updates", 0))
        self.episodes = int(data.get("episodes", 0))


def _accumulate(sums: dict[str, float], counts: dict[str, int], values: Mapping[str, float]) -> None:
    for key, value in values.items():
        if math.isfinite(value):
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
