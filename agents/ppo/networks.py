"""Feature extractors for PPO: a same-size CNN for small symbolic grids and the IMPALA CNN.

Both are stable-baselines3 ``BaseFeaturesExtractor`` subclasses, so SB3's ``ActorCriticPolicy``
puts its policy and value heads on their output. The policy is built with
``normalize_images=False``: each extractor scales its own input by the observation space's upper
bound (``1`` for 0/1 symbolic channels, ``255`` for uint8 RGB), so the same code handles both and
``act`` sees exactly what training saw.

* :class:`GridCNN` wraps the grid torso shared with the planner (:mod:`misgen.agents.grid_torso`):
  same-size 3x3 convs so every cell of a 13x13 maze keeps its own activations up to the linear
  layer, optionally on the board re-centred on the agent.
* :class:`ImpalaCNN` is the network of Espeholt et al. (2018), "IMPALA", as used for Procgen by
  Cobbe et al. (2020) and for the goal-misgeneralization experiments of Langosco et al. (2022):
  three stacks of conv + 3x3/2 max-pool + two residual blocks (16/32/32 channels), then a 256-unit
  linear layer.
"""

from __future__ import annotations

from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from misgen.agents.grid_torso import Downsample, GridTorso
from misgen.errors import MisgenError

NetworkName = Literal["auto", "grid", "impala"]


def image_shape(space: gym.Space) -> tuple[int, int, int]:
    """``(C, H, W)`` of a channels-first image observation space, or a one-line error."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3:
        raise MisgenError(f"PPO's CNNs need (C, H, W) Box observations, got {space}")
    c, h, w = (int(d) for d in space.shape)
    return c, h, w


def input_scale(space: gym.spaces.Box) -> float:
    """Factor that maps observations to [0, 1]: 1 / the space's upper bound (255 for uint8 RGB)."""
    high = np.asarray(space.high, dtype=np.float64)
    top = float(high.max()) if np.isfinite(high).all() else 1.0
    return 1.0 / max(top, 1.0)


def resolve_network(name: NetworkName, space: gym.Space) -> Literal["grid", "impala"]:
    """``auto`` picks IMPALA for RGB-sized images (3 channels, at least 32 pixels high), else grid."""
    if name != "auto":
        return name
    c, h, _ = image_shape(space)
    return "impala" if c == 3 and h >= 32 else "grid"


class GridCNN(BaseFeaturesExtractor):
    """SB3 feature extractor around :class:`~misgen.agents.grid_torso.GridTorso` (see there).

    Args:
        observation_space: ``(C, H, W)`` Box.
        features_dim: width of the output (post-ReLU) feature vector.
        channels: channels of every conv layer.
        conv_layers: number of 3x3 conv layers.
        centre_channel: observation channel marking the agent's cell (``-1``: no re-centring).
        downsample: how the first conv halves the centred board (see ``GridTorso``).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 256,
        channels: int = 32,
        conv_layers: int = 3,
        centre_channel: int = -1,
        downsample: Downsample = "maxpool",
    ) -> None:
        super().__init__(observation_space, features_dim)
        self.torso = GridTorso(
            image_shape(observation_space),
            features_dim,
            channels,
            conv_layers,
            centre_channel,
            input_scale(observation_space),
            downsample,
        )

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.torso(observations)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convs that keep the shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ConvSequence(nn.Module):
    """IMPALA stage: conv, 3x3 max-pool with stride 2 (halves H and W), two residual blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res0 = ResidualBlock(out_channels)
        self.res1 = ResidualBlock(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res1(self.res0(self.pool(self.conv(x))))


class ImpalaCNN(BaseFeaturesExtractor):
    """The IMPALA CNN (Espeholt et al. 2018) for 64x64 RGB observations (Procgen).

    Args:
        observation_space: ``(C, H, W)`` Box; uint8 RGB is scaled by 1/255 inside.
        features_dim: width of the final linear layer (256 in the paper).
        channels: channels of the conv stages (16, 32, 32 in the paper).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 256,
        channels: tuple[int, ...] = (16, 32, 32),
    ) -> None:
        super().__init__(observation_space, features_dim)
        c, h, w = image_shape(observation_space)
        stages: list[nn.Module] = []
        for out in channels:
            stages.append(ConvSequence(c, out))
            c = out
            h, w = (h + 1) // 2, (w + 1) // 2
        self.stages = nn.Sequential(*stages, nn.Flatten(), nn.ReLU())
        self.linear = nn.Sequential(nn.Linear(c * h * w, features_dim), nn.ReLU())
        self.scale = input_scale(observation_space)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.stages(observations.float() * self.scale))
