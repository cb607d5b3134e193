"""The planner's replay: FIFO samples for the three heads, and the lambda-return value targets.

Each stored transition holds what one env step taught: the observation the search ran from, the
search's improved policy and the value target (lambda-return) for the policy and value heads, and
the observation the step *arrived* at with the reward received there for the reward model. On a
step that ended an episode the arrival observation is the final one (``info["final_obs"]``), not
the first observation of the next episode that SAME_STEP autoreset returns.

Rewards are sparse (one rewarded step per successful maze episode), so the reward model's samples
can be skewed towards rewarded transitions, as UNREAL's reward-prediction task does (Jaderberg et
al. 2017, half of its samples rewarded): ``reward_balance`` of each reward batch is drawn from
transitions with a non-zero reward while any are stored. The skew changes the reward model's
training distribution, not its targets; for rewards that depend on the observation alone (all
native envs) the regression optimum is unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from misgen.agents.planner.mcts import StateRows


def lambda_returns(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    values: np.ndarray,
    final_values: np.ndarray,
    discount: float,
    lam: float,
) -> np.ndarray:
    """TD(lambda) returns of a ``(T, B)`` segment, bootstrapped from search values.

    Args:
        rewards: (T, B) rewards of each step.
        terminated: (T, B) the step ended the episode in a terminal state (no bootstrap).
        truncated: (T, B) the step ended the episode on the time limit (bootstrap from the
            final observation's value).
        values: (T + 1, B) value of the observation each step started from, plus the value of the
            observation after the last step.
        final_values: (T, B) value of the final observation where ``truncated`` (else unused).
        discount: gamma.
        lam: lambda; 0 gives one-step TD targets, 1 Monte-Carlo returns up to the segment end.

    Returns:
        (T, B) targets ``G_t = r_t + gamma * [(1 - lam) V(s_{t+1}) + lam * G_{t+1}]``, cut at
        terminal steps and restarted at episode boundaries.
    """
    t_len = len(rewards)
    out = np.zeros_like(rewards, dtype=np.float64)
    g = values[-1].astype(np.float64)
    for t in range(t_len - 1, -1, -1):
        done = terminated[t] | truncated[t]
        next_v = np.where(truncated[t], final_values[t], values[t + 1])
        next_g = np.where(done, next_v, g)
        g = rewards[t] + discount * (~terminated[t]) * ((1.0 - lam) * next_v + lam * next_g)
        out[t] = g
    return out


class Replay:
    """Fixed-capacity FIFO of transitions, sampled uniformly.

    With ``state_template`` (a BatchState of the env's core) each transition also keeps the env
    state the search ran from, so that value targets can be recomputed from the model at update
    time (see ``PlannerConfig.value_target``).
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        num_actions: int,
        state_template: Any = None,
    ) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs_shape), obs_dtype)
        self.policy = np.zeros((capacity, num_actions), np.float32)
        self.value = np.zeros(capacity, np.float32)
        self.arrival = np.zeros((capacity, *obs_shape), obs_dtype)
        self.reward = np.zeros(capacity, np.float32)
        self.rewarded = np.zeros(capacity, bool)
        self.states = StateRows(state_template, capacity) if state_template is not None else None
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        policy: np.ndarray,
        value: np.ndarray,
        arrival: np.ndarray,
        reward: np.ndarray,
        states: Any = None,
    ) -> None:
        """Append ``n`` transitions (the oldest are overwritten once full)."""
        n = len(obs)
        rows = (self.cursor + np.arange(n)) % self.capacity
        if self.states is not None:
            self.states.put_rows(rows, states)
        self.obs[rows] = obs
        self.policy[rows] = policy
        self.value[rows] = value
        self.arrival[rows] = arrival
        self.reward[rows] = reward
        self.rewarded[rows] = np.asarray(reward) != 0
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(
        self, batch: int, rng: np.random.Generator, reward_balance: float = 0.0
    ) -> dict[str, np.ndarray]:
        """A uniform batch for the policy/value heads and a (skewed) batch for the reward model."""
        idx = rng.integers(0, self.size, size=batch)
        ridx = rng.integers(0, self.size, size=batch)
        skewed = int(round(reward_balance * batch))
        if skewed:
            pool = np.flatnonzero(self.rewarded[: self.size])
            if len(pool):
                ridx[:skewed] = pool[rng.integers(0, len(pool), size=skewed)]
        out = {
            "obs": self.obs[idx],
            "policy": self.policy[idx],
            "value": self.value[idx],
            "arrival": self.arrival[ridx],
            "reward": self.reward[ridx],
        }
        if self.states is not None:
            out["state"] = self.states.get_rows(idx)
        return out
