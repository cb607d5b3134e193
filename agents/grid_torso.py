"""The conv torso that PPO and the planner share for small symbolic grids.

A same-size 3x3 conv stack plus one linear layer: symbolic grids are small, so every cell keeps
its own activations until the linear layer reads the whole board.

Optionally the board is first re-centred on the agent (``centre_channel``): padded to
``(2H - 1) x (2W - 1)`` with one extra "on the board" channel and cropped so that the agent's cell
is in the middle. The linear layer then reads the surroundings *relative to the agent*, so what it
learns about "a wall to my left" or "the goal up and to the right" transfers across the agent's
positions instead of being learned once per cell. The whole board stays visible, so this is a
change of coordinates, not of information. On maze-cheese it roughly doubled PPO's train success
per env step in the first 300k steps (0.32 vs 0.13).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from misgen.errors import MisgenError

Downsample = Literal["maxpool", "stride"]


def centre_on(x: torch.Tensor, channel: int) -> torch.Tensor:
    """Re-centre ``(N, C, H, W)`` grids on the (first) cell where ``channel`` is largest.

    Returns ``(N, C + 1, 2H - 1, 2W - 1)``: the input channels shifted so that cell lands at the
    centre, zeros off the board, and a last channel that is 1 on the board and 0 off it.
    """
    n, _, h, w = x.shape
    board = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    padded = nn.functional.pad(board, (w - 1, w - 1, h - 1, h - 1))
    where = x[:, channel].flatten(1).argmax(dim=1)
    row, col = where // w, where % w
    # Rows [row, row + 2h - 1) of the padded board put board row ``row`` (padded row + h - 1) in the middle.
    rows = row[:, None] + torch.arange(2 * h - 1)
    cols = col[:, None] + torch.arange(2 * w - 1)
    crop = padded.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return crop.permute(0, 3, 1, 2).contiguous()


class GridTorso(nn.Module):
    """3x3 conv stack (+ optional re-centring on the agent) and one ReLU linear layer.

    Args:
        shape: ``(C, H, W)`` of the observations.
        features_dim: width of the output feature vector.
        channels: channels of every conv layer.
        conv_layers: number of 3x3 conv layers (receptive field ``2 * conv_layers + 1`` cells).
        centre_channel: observation channel marking the agent's cell; ``-1``: no re-centring.
            With re-centring the first conv halves the ``2H - 1`` board back to ``H`` cells, so the
            rest of the network costs what it would on the uncentred board.
        scale: factor applied to the raw observations (1 / their upper bound).
        downsample: how the first conv halves the centred board: ``maxpool`` (conv at every cell,
            then a 2x2 max-pool) or ``stride`` (the conv at every other cell, stride 2). Both keep
            every cell inside some 3x3 window, and the agent's cell (the centre, an even offset) is
            sampled by the strided conv; ``stride`` skips three quarters of the first layer's work
            and its backward pass, the most expensive layer of the torso (about 2.7x faster per
            update on the 13x13 maze; see MEASUREMENTS.md).
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        features_dim: int,
        channels: int,
        conv_layers: int,
        centre_channel: int = -1,
        scale: float = 1.0,
        downsample: Downsample = "maxpool",
    ) -> None:
        super().__init__()
        c, h, w = shape
        if downsample not in ("maxpool", "stride"):
            raise MisgenError(f"downsample must be maxpool or stride, got {downsample!r}")
        if centre_channel >= c:
            raise MisgenError(
                f"centre_channel {centre_channel} is not a channel of a {c}-channel observation"
            )
        self.centre_channel = centre_channel
        self.scale = scale
        if centre_channel >= 0:
            c, h, w = c + 1, 2 * h - 1, 2 * w - 1
        layers: list[nn.Module] = []
        for i in range(conv_layers):
            halve = i == 0 and centre_channel >= 0
            stride = 2 if halve and downsample == "stride" else 1
            layers += [nn.Conv2d(c if i == 0 else channels, channels, 3, stride=stride, padding=1), nn.ReLU()]
            if halve and downsample == "maxpool":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            if halve:
                h, w = (h + 1) // 2, (w + 1) // 2
        self.convs = nn.Sequential(*layers, nn.Flatten())
        flat = (channels if conv_layers else c) * h * w
        self.linear = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations.float() * self.scale
        if self.centre_channel >= 0:
            x = centre_on(x, self.centre_channel)
        return self.linear(self.convs(x))
