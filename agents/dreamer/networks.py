"""Building blocks of the Dreamer agent: symlog, two-hot, categorical latents, layers, encoders.

Everything here follows DreamerV3 (Hafner et al., 2023): linear layers without bias followed by
LayerNorm and SiLU, a LayerNorm GRU with the update gate biased towards keeping its state,
categorical distributions mixed with 1% uniform ("unimix") and sampled with straight-through
gradients, and the two-hot symlog discretization used for reward and value regression.

Initialisation never touches torch's global RNG: :func:`init_weights` draws from an explicit
``torch.Generator`` (truncated normal scaled by fan-avg, as in DreamerV3), so two agents with the
same seed have identical weights.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) log(1 + |x|)``: compresses large magnitudes, keeps small ones near linear."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


class TwoHot:
    """Two-hot encoding over fixed bins in symlog space (DreamerV3 reward and value heads).

    A scalar target is spread over the two bins that bracket its symlog, with weights given by
    linear interpolation; the loss is the cross entropy against the predicted softmax, and the
    prediction is ``symexp`` of the expected bin. Regressing in symlog space makes the loss scale
    independent of the reward scale, which is why DreamerV3 needs no per-env reward tuning.
    """

    def __init__(self, bins: int = 255, low: float = -20.0, high: float = 20.0) -> None:
        self.bins = torch.linspace(low, high, bins)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(...,) raw scalars -> (..., bins) two-hot weights of ``symlog(x)``."""
        bins = self.bins
        y = symlog(x).clamp(bins[0], bins[-1])
        hi = torch.searchsorted(bins, y.contiguous()).clamp(1, len(bins) - 1)
        lo = hi - 1
        w_hi = ((y - bins[lo]) / (bins[hi] - bins[lo])).clamp(0.0, 1.0)
        out = torch.zeros(*y.shape, len(bins), dtype=y.dtype)
        out.scatter_(-1, lo.unsqueeze(-1), (1.0 - w_hi).unsqueeze(-1))
        out.scatter_add_(-1, hi.unsqueeze(-1), w_hi.unsqueeze(-1))
        return out

    def decode_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """(..., bins) probabilities or two-hot weights -> (...,) raw scalars."""
        return symexp((weights * self.bins).sum(-1))

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """Prediction of a two-hot head: ``symexp`` of the expected bin under its softmax."""
        return self.decode_weights(torch.softmax(logits, -1))

    def log_prob(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of raw scalar ``target`` (no gradient to it) under two-hot ``logits``."""
        return (self.encode(target.detach()) * torch.log_softmax(logits, -1)).sum(-1)


def unimix_probs(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """Softmax over the last axis mixed with ``unimix`` of the uniform distribution.

    The mixture keeps every class probability above ``unimix / K``, so KL terms and log-probs stay
    finite and the latent never collapses into a deterministic code (DreamerV3, 1%).
    """
    probs = torch.softmax(logits, -1)
    if unimix > 0:
        probs = (1.0 - unimix) * probs + unimix / probs.shape[-1]
    return probs


def sample_onehot(probs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One-hot samples from categorical ``probs`` with straight-through gradients.

    Sampling is inverse-CDF with uniforms from the explicit generator ``gen`` (deterministic on
    CPU, no global RNG). The forward value is the one-hot sample; the gradient flows to ``probs``.
    """
    u = torch.rand(probs.shape[:-1], generator=gen).unsqueeze(-1)
    cdf = probs.detach().cumsum(-1)
    index = (cdf < u * cdf[..., -1:]).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
    onehot = torch.zeros_like(probs).scatter_(-1, index, 1.0)
    return onehot + probs - probs.detach()


def mode_onehot(probs: torch.Tensor) -> torch.Tensor:
    """One-hot argmax of ``probs`` (no gradient)."""
    return F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)


def categorical_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of independent categoricals (..., latents, classes), summed over latents."""
    return (p * (torch.log(p) - torch.log(q))).sum((-2, -1))


class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of (N, C, H, W) maps, per pixel (as DreamerV3's CNNs)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def dense(inp: int, out: int) -> nn.Sequential:
    """Linear (no bias) -> LayerNorm -> SiLU, DreamerV3's hidden layer."""
    return nn.Sequential(nn.Linear(inp, out, bias=False), nn.LayerNorm(out, eps=1e-3), nn.SiLU())


class MLP(nn.Module):
    """``layers`` hidden dense layers then a linear output (zero-initialised when ``zero_out``).

    DreamerV3 zero-initialises the output layers of the reward head and the critic so that their
    first predictions are exactly 0 instead of large random values that the symexp would inflate.
    """

    def __init__(self, inp: int, out: int, hidden: int, layers: int, zero_out: bool = False) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for i in range(layers):
            mods.append(dense(inp if i == 0 else hidden, hidden))
        self.body = nn.Sequential(*mods)
        self.out = nn.Linear(hidden if layers else inp, out)
        self.zero_out = zero_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class NormGRUCell(nn.Module):
    """GRU cell with LayerNorm on the gate pre-activations and update bias -1 (DreamerV3).

    The -1 bias makes the cell keep most of its state at initialisation, which stabilises the
    long unrolls of the world model.
    """

    def __init__(self, inp: int, size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(inp + size, 3 * size, bias=False)
        self.norm = nn.LayerNorm(3 * size, eps=1e-3)
        self.size = size

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        parts = self.norm(self.linear(torch.cat([x, h], -1)))
        reset, cand, update = parts.split(self.size, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * h


def obs_kind(space: gym.spaces.Box) -> str:
    """How an observation space is encoded: ``grid`` (symbolic C x H x W), ``rgb`` or ``vector``.

    ``grid``: a 3-D uint8 space with values in {0..k} (misgen's symbolic channels); ``rgb``: a
    3-D uint8 space with high 255 (channels first or last); ``vector``: a 1-D space.
    """
    if len(space.shape) == 1:
        return "vector"
    if len(space.shape) != 3:
        raise ValueError(f"dreamer supports 1-D or 3-D observation spaces, got shape {space.shape}")
    if space.dtype == np.uint8 and float(np.max(space.high)) >= 255:
        return "rgb"
    return "grid"


def chw_shape(space: gym.spaces.Box) -> tuple[int, int, int]:
    """(C, H, W) of a 3-D observation space; RGB given as (H, W, 3) is transposed."""
    shape = tuple(int(s) for s in space.shape)
    if obs_kind(space) == "rgb" and shape[-1] in (1, 3) and shape[0] not in (1, 3):
        return shape[2], shape[0], shape[1]
    return shape  # type: ignore[return-value]


class ObsCodec(nn.Module):
    """Encoder and decoder of one observation space, with DreamerV3's input treatment.

    * ``grid`` (symbolic channels): input ``symlog(x)``; a stride-1 3x3 convolution keeps cell
      resolution, then stride-2 4x4 convolutions (depth doubling) down to <= 4 cells; decoder
      mirrors it with transposed convolutions. Binary grids (high == 1) are reconstructed with a
      per-cell Bernoulli likelihood (the exact likelihood of 0/1 data), other grids with symlog MSE.
    * ``rgb``: input ``x / 255 - 0.5``; stride-2 4x4 convolutions down to <= 6 pixels (DreamerV3's
      image CNN); the decoder mirrors it and the loss is the summed squared error.
    * ``vector``: ``symlog(x)`` through an MLP; decoder MLP with symlog squared error.

    ``loss(features, obs)`` returns the negative log-likelihood per sample, summed over elements.
    """

    def __init__(self, space: gym.spaces.Box, depth: int, hidden: int, layers: int, feat_dim: int) -> None:
        super().__init__()
        self.kind = obs_kind(space)
        self.binary = self.kind == "grid" and float(np.max(space.high)) <= 1.0
        if self.kind == "vector":
            size = int(space.shape[0])
            self.enc = MLP(size, hidden, hidden, max(layers - 1, 0))
            self.enc_act = nn.Sequential(nn.LayerNorm(hidden, eps=1e-3), nn.SiLU())
            self.dec = MLP(feat_dim, size, hidden, layers)
            self.embed_dim = hidden
            self.shape: tuple[int, ...] = (size,)
            return
        c, h, w = chw_shape(space)
        self.shape = (c, h, w)
        self.channels_last = self.kind == "rgb" and tuple(space.shape) != (c, h, w)
        enc: list[nn.Module] = []
        chans, hw = c, (h, w)
        if self.kind == "grid":
            enc += [nn.Conv2d(c, depth, 3, 1, 1, bias=False), ChannelNorm(depth), nn.SiLU()]
            chans = depth
        limit = 4 if self.kind == "grid" else 6
        strides: list[tuple[int, int, tuple[int, int], tuple[int, int]]] = []  # in_c, out_c, in_hw, out_hw
        d = depth
        while min(hw) > limit:
            out_hw = (hw[0] // 2, hw[1] // 2)
            enc += [nn.Conv2d(chans, d, 4, 2, 1, bias=False), ChannelNorm(d), nn.SiLU()]
            strides.append((chans, d, hw, out_hw))
            chans, hw, d = d, out_hw, 2 * d
        self.enc = nn.Sequential(*enc)
        self.last = (chans, *hw)
        self.embed_dim = int(np.prod(self.last))
        dec: list[nn.Module] = []
        for i, (in_c, out_c, in_hw, out_hw) in enumerate(reversed(strides)):
            pad = (in_hw[0] - 2 * out_hw[0], in_hw[1] - 2 * out_hw[1])
            dec.append(
                nn.ConvTranspose2d(
                    out_c, in_c, 4, 2, 1, pad, bias=i == len(strides) - 1 and self.kind == "rgb"
                )
            )
            if self.kind == "grid" or i < len(strides) - 1:
                dec += [ChannelNorm(in_c), nn.SiLU()]
        if self.kind == "grid":
            dec.append(nn.Conv2d(depth, c, 3, 1, 1))
        self.dec_in = nn.Linear(feat_dim, self.embed_dim)
        self.dec = nn.Sequential(*dec)

    def preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8/float observations (N, *space.shape) -> float network input (N, *self.shape)."""
        x = obs.float()
        if self.kind == "rgb":
            if self.channels_last:
                x = x.permute(0, 3, 1, 2)
            return x / 255.0 - 0.5
        return symlog(x)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(obs)
        if self.kind == "vector":
            return self.enc_act(self.enc(x))
        return self.enc(x).flatten(1)

    def decode(self, feat: torch.Tensor) -> torch.Tensor:
        """Features (N, F) -> reconstruction in network-input space (logits for binary grids)."""
        if self.kind == "vector":
            return self.dec(feat)
        return self.dec(self.dec_in(feat).view(-1, *self.last))

    def loss(self, feat: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of ``obs`` (N, ...) given features (N, F), per sample."""
        pred = self.decode(feat)
        if self.binary:
            target = obs.float()
            return F.binary_cross_entropy_with_logits(pred, target, reduction="none").flatten(1).sum(-1)
        return ((pred - self.preprocess(obs)) ** 2).flatten(1).sum(-1)


@torch.no_grad()
def init_weights(module: nn.Module, gen: torch.Generator) -> None:
    """DreamerV3 initialisation from an explicit generator: truncated normal, fan-avg scaling.

    Biases and LayerNorm offsets start at 0, LayerNorm scales at 1; :class:`MLP` outputs flagged
    ``zero_out`` start at exactly 0.
    """
    for mod in module.modules():
        if isinstance(mod, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            w = mod.weight
            if isinstance(mod, nn.Linear):
                fan_in, fan_out = w.shape[1], w.shape[0]
            else:
                receptive = w[0][0].numel()
                fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
                if isinstance(mod, nn.ConvTranspose2d):
                    fan_in, fan_out = fan_out, fan_in
            std = math.sqrt(1.0 / ((fan_in + fan_out) / 2)) / 0.87962566103423978
            nn.init.trunc_normal_(w, 0.0, std, -2.0 * std, 2.0 * std, generator=gen)
            if mod.bias is not None:
                mod.bias.zero_()
        elif isinstance(mod, nn.LayerNorm):
            mod.weight.fill_(1.0)
            mod.bias.zero_()
    for mod in module.modules():
        if isinstance(mod, MLP) and mod.zero_out:
            mod.out.weight.zero_()
            mod.out.bias.zero_()
