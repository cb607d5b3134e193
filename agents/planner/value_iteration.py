"""A value-iteration value network for grid boards (a structured Value Iteration Network).

Why: the planner's search sees a few steps; beyond them it reads the value network. A conv torso
plus a linear layer (the PPO torso) has to *memorise* maze distance per layout: regressed on exact
maze values it generalised to unseen mazes with an error larger than the value differences between
neighbouring cells, so the search had no gradient to follow and looped. Maze distance is an
iterative computation (a flood fill); a network that iterates can represent it exactly for every
layout, and then generalises by construction.

This module does what Tamar et al. (2016, "Value Iteration Networks") do with a 3x3 conv as the
transition model, with the transition fixed to the board's 4-neighbourhood (the grid envs' moves)
so that only *what is rewarding* and *what is passable* are learned, per cell, from the
observation:

* ``R(x) >= 0``: learned reward for arriving on cell ``x`` (softplus of a small per-cell conv; so
  the value-iteration part only represents non-negative rewards);
* ``P(x) in (0, 1)``: learned passability of ``x`` (sigmoid of the same conv);
* ``U(x)``, the value of arriving on ``x``, by ``iterations`` rounds of
  ``U <- P * max(R, discount * max over the 4 neighbours of U)`` from ``U = 0``;
* the value at the agent's cell (the argmax of ``agent_channel``): the best ``U`` over its
  neighbourhood (itself included: a move into a wall stays put), and the 3x3 patch of ``U``
  around it, which the planner's prior reads.

With ``R`` = 10 on the cheese, ``P`` = 0 on walls and 1 elsewhere, the fixed point is exactly
``10 * discount ** (d - 1)`` for a mouse ``d`` moves from the cheese, in every maze. The iteration
is monotone from 0, so outside training it stops early at the exact fixed point (same output).
What ``R`` learns is a map of the goal the value was trained towards: in training levels the
cheese and the top-right corner coincide, so ``R`` can as well point at either; the probes read
the planner's value and reward model, and the value-map probe can read this module's ``R``.

How the maps learn (:meth:`GridValueIteration.map_loss`): the planner has the env's core as its
model, so every update steps each stored state with every action and grounds the maps in those
transitions: the cell a move arrives on is passable and has ``R`` = the reward received; a
neighbouring cell no move reaches is impassable. Value targets alone cannot pin the maps down
where the agent never stands (walls): the iteration is consistent with itself at any scale. The
value loss (one-step optimal backups, see the agent) trains the maps as well.

The maps are blind to the agent's channel (:meth:`GridValueIteration.board`), and ``R`` at the
agent's cell is also the search's reward model when this network is used (the planner then has no
reward head on its torso): one learned objective for the tree's edges and for the value.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from misgen.errors import MisgenError

PATCH = 9  # the 3x3 patch of U around the agent
MOVES_CLIP = 4.0  # the prior's patch: cells more than this many moves behind the best are all "far"
GRAD_ITERATIONS = 16  # rounds the value loss backpropagates through (5x cheaper than all 84 on 13x13)


def neighbour_max(u: torch.Tensor) -> torch.Tensor:
    """Max of ``u`` (N, H, W) over each cell's 4 neighbours (outside the board counts as 0)."""
    p = F.pad(u, (1, 1, 1, 1))
    return torch.maximum(
        torch.maximum(p[:, :-2, 1:-1], p[:, 2:, 1:-1]), torch.maximum(p[:, 1:-1, :-2], p[:, 1:-1, 2:])
    )


class GridValueIteration(nn.Module):
    """Learned reward and passability maps, iterated value, read out at the agent's cell.

    Args:
        shape: ``(C, H, W)`` of the observations.
        agent_channel: observation channel marking the agent's cell.
        channels: channels of the per-cell conv that predicts ``R`` and ``P``.
        iterations: rounds of value iteration; 0 means ``H * W // 2`` (longer than any path
            through a perfect maze on the board).
        discount: per-move discount of the iteration (the planner's ``discount``).
        scale: factor applied to the raw observations.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        agent_channel: int,
        channels: int,
        iterations: int,
        discount: float,
        scale: float,
    ) -> None:
        super().__init__()
        c, h, w = shape
        if not 0 <= agent_channel < c:
            raise MisgenError(
                f"the value-iteration network needs the agent's channel; got {agent_channel} for {c} channels"
            )
        self.agent_channel, self.discount, self.scale = agent_channel, discount, scale
        self.iterations = iterations or h * w // 2
        self.grad_iterations = GRAD_ITERATIONS
        self.maps = nn.Sequential(nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, 2, 1))

    def init_weights(self, generator: torch.Generator) -> None:
        """First conv Kaiming-uniform; the map layer zero with ``R`` ~ 0.02 and ``P`` ~ 0.95
        everywhere, so the untrained value is ~0 and gradients reach across the whole board."""
        first, last = self.maps[0], self.maps[2]
        nn.init.kaiming_uniform_(first.weight, nonlinearity="relu", generator=generator)
        nn.init.zeros_(first.bias)
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.tensor([-4.0, 3.0]))

    def reward_and_passability(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``R`` and ``P`` maps, each (N, H, W)."""
        m = self.maps(self.board(obs))
        return F.softplus(m[:, 0]), torch.sigmoid(m[:, 1])

    def board(self, obs: torch.Tensor) -> torch.Tensor:
        """The maps' input: the scaled observation with the agent's channel zeroed.

        Why: ``R`` and ``P`` describe the board, and the agent's position enters only through the
        readout. Were the maps to see the agent, ``R`` on the goal would be predicted twice, once
        with the agent beside it (the value of standing there, ``discount * R``) and once with
        the agent on it (the edge reward of stepping there), and any mismatch above
        ``1 - discount`` (3%) made waiting beside the goal worth more than taking it: the
        learned-reward planner hovered next to the cheese until the time limit. Blind to the
        agent, both read the same cell of the same map, so arriving always wins."""
        x = obs.float() * self.scale
        keep = torch.ones(x.shape[1], dtype=x.dtype)
        keep[self.agent_channel] = 0.0
        return x * keep[:, None, None]

    def map_loss(
        self, obs: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Losses that ground ``R`` and ``P`` in model transitions: ``(reward MSE, passability BCE)``.

        ``obs`` (k, ...) are states the model stepped with every one of ``A`` actions, giving
        ``next_obs`` (k * A, ...) and ``reward`` (k * A,), action-major per state. The cell each
        move arrived on is passable and has ``R`` = the reward received (clipped at 0: ``R`` is a
        softplus); a neighbouring cell no move reached is impassable. Without this, value targets
        alone leave the maps free wherever the agent never stands (walls): the iteration is
        self-consistent at any scale, and bootstrapped targets inflated it without bound.
        """
        k = len(obs)
        m = self.maps(self.board(obs))
        r_map, p_logit = F.softplus(m[:, 0]), m[:, 1]
        h, w = r_map.shape[1:]
        row1, col1 = (x.view(k, -1) for x in self.agent_cells(next_obs))
        at = torch.arange(k)[:, None]
        reward_loss = 0.5 * (r_map[at, row1, col1] - reward.view(k, -1).clamp(min=0.0)).pow(2).mean()
        row0, col0 = self.agent_cells(obs)
        nr = row0[:, None] + torch.tensor([-1, 1, 0, 0])
        nc = col0[:, None] + torch.tensor([0, 0, -1, 1])
        inside = (nr >= 0) & (nr < h) & (nc >= 0) & (nc < w)
        reached = ((nr[:, :, None] == row1[:, None, :]) & (nc[:, :, None] == col1[:, None, :])).any(dim=2)
        blocked = p_logit[at, nr.clamp(0, h - 1), nc.clamp(0, w - 1)][inside & ~reached]
        open_ = p_logit[at, row1, col1].flatten()
        logits = torch.cat([open_, blocked])
        targets = torch.cat([torch.ones_like(open_), torch.zeros_like(blocked)])
        return reward_loss, F.binary_cross_entropy_with_logits(logits, targets)

    def agent_cells(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, col) of the agent in each observation (the argmax of ``agent_channel``)."""
        where = obs[:, self.agent_channel].flatten(1).argmax(dim=1)
        return where // obs.shape[-1], where % obs.shape[-1]

    def reward_at_agent(self, obs: torch.Tensor) -> torch.Tensor:
        """(N,) ``R`` at the agent's cell: the map's prediction of the reward for arriving there,
        which the planner regresses on the rewards it receives (so ``R`` learns the objective
        from every rewarded step, not only through the value)."""
        r, _ = self.reward_and_passability(obs)
        row, col = self.agent_cells(obs)
        return r[torch.arange(len(r)), row, col]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(value (N,), patch (N, 9), reward (N,))``: best neighbouring ``U`` at the agent, ``U``
        around it, and ``R`` at the agent's cell (the learned reward for arriving there)."""
        r, p = self.reward_and_passability(obs)
        u = torch.zeros_like(r)
        grad = torch.is_grad_enabled()
        # Training backpropagates through the last ``grad_iterations`` rounds only (truncated
        # backpropagation: the maps are also grounded directly, see ``map_loss``); the earlier
        # rounds run without a graph, and outside training the iteration stops at its fixed point.
        with torch.no_grad():
            rd, pd = r.detach(), p.detach()
            for k in range(self.iterations - self.grad_iterations if grad else self.iterations):
                new = pd * torch.maximum(rd, self.discount * neighbour_max(u))
                # Monotone from 0: once nothing changes, the rest of the rounds change nothing either.
                if k % 8 == 7 and torch.equal(new, u):
                    break
                u = new
        if grad:
            for _ in range(min(self.grad_iterations, self.iterations)):
                u = p * torch.maximum(r, self.discount * neighbour_max(u))
        n = len(u)
        row, col = self.agent_cells(obs)
        padded = F.pad(u, (1, 1, 1, 1))
        # Padded rows/cols [row, row + 3) hold the agent's 3x3 neighbourhood.
        rows = row[:, None] + torch.arange(3)
        cols = col[:, None] + torch.arange(3)
        patch = padded[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]].reshape(n, PATCH)
        value = patch[:, [1, 3, 4, 5, 7]].max(dim=1).values  # the cell and its 4 neighbours
        return value, patch, r[torch.arange(n), row, col]

    def patch_in_moves(self, patch: torch.Tensor) -> torch.Tensor:
        """The (N, 9) value patch as "moves behind its best cell": ``log(U / max U) / -log(discount)``,
        clipped to ``[-MOVES_CLIP, 0]`` (walls and unreachable cells at the clip).

        Why: ``U`` falls by a factor ``discount`` per move, so far from the goal the raw patch
        differs between neighbours by a few hundredths of its level; a linear prior on it could
        not tell the way on (the planner's prior put most mass on a move into a wall, and the
        search's sequential halving kept that move). In moves the way on is 0, a step back -2,
        whatever the distance. Detached: the prior reads the value, it does not shape it.
        """
        u = patch.detach().clamp(min=1e-6)
        per_move = -math.log(min(max(self.discount, 1e-6), 1.0 - 1e-6))  # undiscounted: ~1e-6 per move
        moves = torch.log(u / u.max(dim=1, keepdim=True).values) / per_move
        return moves.clamp(min=-MOVES_CLIP)
