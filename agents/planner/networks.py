"""The planner's network: one torso, three heads (policy prior, value, reward model).

The torso is the grid torso PPO also uses (:mod:`misgen.agents.grid_torso`): a same-size 3x3 conv
stack plus one linear layer, optionally on the board re-centred on the agent. The heads read the
torso's features:

* ``policy``: prior logits over actions at this observation (trained on search policies);
* ``value``: expected discounted return from this observation (trained on lambda-returns);
* ``reward``: the reward received on *arriving* at this observation, ``r(s')`` (regressed on the
  rewards seen on the training split). A state-based reward keeps the learned objective a map
  over observations, so the value-map probe can ask it about edited observations directly, and
  each tree expansion gets the new leaf's prior, value and edge reward from one network call.

With ``value_net="vin"`` the value and the reward come from the value-iteration network
(:mod:`.value_iteration`) instead of the value and reward heads, which are then absent.

The last layer of every head starts at zero: the untrained planner has a uniform prior, value 0
and predicts no reward anywhere, so early search is not steered by random initial outputs.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from misgen.agents.grid_torso import GridTorso
from misgen.agents.planner.value_iteration import PATCH, GridValueIteration
from misgen.errors import MisgenError


def image_shape(space: gym.Space) -> tuple[int, int, int]:
    """``(C, H, W)`` of a channels-first image observation space, or a one-line error."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3:
        raise MisgenError(f"the planner's network needs (C, H, W) Box observations, got {space}")
    c, h, w = (int(d) for d in space.shape)
    return c, h, w


class PlannerNet(nn.Module):
    """Torso + policy / value / reward heads.

    Args:
        observation_space: ``(C, H, W)`` Box; inputs are scaled by 1 / its upper bound.
        num_actions: size of the Discrete action space.
        channels: channels of every conv layer.
        conv_layers: number of 3x3 same-size conv layers.
        hidden: width of the feature vector (the ``features`` extra).
        centre_channel: observation channel marking the agent (``-1``: the board as observed).
        value_net: ``conv``: value and prior are heads on the torso features; ``vin``: the value
            is a :class:`~.value_iteration.GridValueIteration` read out at the agent's cell, and
            the prior also reads its 3x3 value patch around the agent, in moves behind the best cell
            (:meth:`~.value_iteration.GridValueIteration.patch_in_moves`). ``vin`` needs
            ``agent_channel``. No correction head on the torso is added to that value: with
            bootstrapped targets a free linear head inflated the values without bound. The
            reward model is then the network's ``R`` map at the agent's cell (no reward head on
            the torso): one learned objective for the tree's edges and for the value.
        agent_channel: observation channel marking the agent (``vin`` only).
        vin_channels: channels of the value-iteration network's per-cell conv.
        vin_iterations: its rounds of value iteration (0: ``H * W // 2``).
        discount: its per-move discount (the planner's).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        num_actions: int,
        channels: int,
        conv_layers: int,
        hidden: int,
        centre_channel: int = -1,
        value_net: str = "conv",
        agent_channel: int = -1,
        vin_channels: int = 16,
        vin_iterations: int = 0,
        discount: float = 0.97,
    ) -> None:
        super().__init__()
        high = np.asarray(observation_space.high, dtype=np.float64)
        scale = 1.0 / max(float(high.max()) if np.isfinite(high).all() else 1.0, 1.0)
        shape = image_shape(observation_space)
        self.torso = GridTorso(shape, hidden, channels, conv_layers, centre_channel, scale)
        self.vin = (
            GridValueIteration(shape, agent_channel, vin_channels, vin_iterations, discount, scale)
            if value_net == "vin"
            else None
        )
        self.policy = nn.Linear(hidden + (PATCH if self.vin is not None else 0), num_actions)
        self.value = nn.Linear(hidden, 1) if self.vin is None else None
        self.reward = nn.Linear(hidden, 1) if self.vin is None else None

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.torso(obs)

    def arrival_reward(self, obs: torch.Tensor) -> torch.Tensor:
        """(n,) the reward model alone: the value-iteration ``R`` map at the agent's cell with
        ``vin`` (no torso, no iteration), else the reward head on the torso features."""
        if self.vin is not None:
            return self.vin.reward_at_agent(obs)
        return self.reward(self.features(obs)).squeeze(-1)

    def value_only(self, obs: torch.Tensor) -> torch.Tensor:
        """(n,) value without the policy and reward heads. With ``vin`` the torso is skipped:
        the value-iteration network alone gives the value, which makes the model-based value
        targets (several successors per stored state every update) cheap."""
        if self.vin is not None:
            return self.vin(obs)[0]
        return self.value(self.features(obs)).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(features (n, hidden), logits (n, A), value (n,), reward (n,))``."""
        feat = self.features(obs)
        if self.vin is None:
            return feat, self.policy(feat), self.value(feat).squeeze(-1), self.reward(feat).squeeze(-1)
        vin_value, patch, reward = self.vin(obs)
        logits = self.policy(torch.cat([feat, self.vin.patch_in_moves(patch)], dim=1))
        return feat, logits, vin_value, reward

    def init_weights(self, generator: torch.Generator) -> None:
        """Kaiming-uniform torso from ``generator`` (never the global RNG); zero head outputs."""
        for module in self.torso.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)
        for head in (h for h in (self.policy, self.value, self.reward) if h is not None):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        if self.vin is not None:
            self.vin.init_weights(generator)
