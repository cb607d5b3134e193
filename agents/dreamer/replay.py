"""Replay buffer of per-env streams, sampled as uniform fixed-length sequences.

Each env slot writes its own stream (a ring of ``capacity // num_envs`` entries), so a sampled
sequence is always consecutive in time for one env; episode boundaries inside a sequence are marked
by ``is_first``. An entry is DreamerV3's step record: the observation, the action taken at it, the
reward that arrived with it, ``is_first`` and ``is_terminal``, plus misgen's ``novelty`` (1 when
the observation was new to its episode, see :mod:`misgen.agents.novelty`; 0 on an episode's first
entry, where nothing arrived; kept apart from the env reward). When an episode ends the env's true
final observation becomes its own entry (``is_terminal`` only if the episode terminated, not if it
was truncated), followed by the first observation of the next episode with ``is_first``.

Writes are vectorised over env slots (no per-env Python loop); sampling uses an explicit
``np.random.Generator``.
"""

from __future__ import annotations

import numpy as np


class Replay:
    """Ring buffers for ``num_envs`` streams holding ``capacity`` entries in total."""

    def __init__(self, num_envs: int, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype) -> None:
        self.num_envs = num_envs
        self.size = max(2, capacity // num_envs)
        self.obs = np.zeros((num_envs, self.size, *obs_shape), dtype=obs_dtype)
        self.action = np.zeros((num_envs, self.size), dtype=np.int64)
        self.reward = np.zeros((num_envs, self.size), dtype=np.float32)
        self.novelty = np.zeros((num_envs, self.size), dtype=np.float32)
        self.is_first = np.zeros((num_envs, self.size), dtype=bool)
        self.is_terminal = np.zeros((num_envs, self.size), dtype=bool)
        self.ptr = np.zeros(num_envs, dtype=np.int64)  # next write position per stream
        self.count = np.zeros(num_envs, dtype=np.int64)  # valid entries per stream

    def __len__(self) -> int:
        return int(self.count.sum())

    def add(
        self,
        rows: np.ndarray,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        is_first: np.ndarray,
        is_terminal: np.ndarray,
        novelty: np.ndarray | None = None,
    ) -> None:
        """Append one entry to each stream in ``rows`` (int indices); other arrays are per row
        (``novelty`` None: 0)."""
        pos = self.ptr[rows]
        self.obs[rows, pos] = obs
        self.action[rows, pos] = action
        self.reward[rows, pos] = reward
        self.is_first[rows, pos] = is_first
        self.is_terminal[rows, pos] = is_terminal
        self.novelty[rows, pos] = 0.0 if novelty is None else novelty
        self.ptr[rows] = (pos + 1) % self.size
        self.count[rows] = np.minimum(self.count[rows] + 1, self.size)

    def _aim_at_rewards(
        self, stream: np.ndarray, offset: np.ndarray, k: int, length: int, rng: np.random.Generator
    ) -> None:
        """Overwrite the first ``k`` (stream, offset) draws with sequences around rewarded entries."""
        oldest_all = np.where(self.count < self.size, 0, self.ptr)
        rows, pos = np.nonzero(self.reward != 0)
        logical = (pos - oldest_all[rows]) % self.size  # entry index from the stream's oldest
        ok = (logical < self.count[rows]) & (self.count[rows] >= length)
        rows, logical = rows[ok], logical[ok]
        if len(rows) == 0:
            return
        pick = rng.integers(0, len(rows), size=k)
        start = logical[pick] - rng.integers(0, length, size=k)
        stream[:k] = rows[pick]
        offset[:k] = np.clip(start, 0, self.count[rows[pick]] - length)

    def can_sample(self, length: int) -> bool:
        return bool((self.count >= length).any())

    def sample(
        self, batch: int, length: int, rng: np.random.Generator, rewarded_share: float = 0.0
    ) -> dict[str, np.ndarray]:
        """``batch`` sequences of ``length`` consecutive entries, uniform over all valid starts.

        With ``rewarded_share > 0`` that share of the sequences (rounded down) is instead drawn to
        contain a uniformly chosen entry with non-zero reward, at a uniform position in the
        sequence (UNREAL's skewed replay for the reward predictor), while any exist.
        """
        starts_per_stream = np.maximum(self.count - length + 1, 0)
        total = int(starts_per_stream.sum())
        if total == 0:
            raise ValueError(f"replay holds no sequence of length {length} yet")
        flat = rng.integers(0, total, size=batch)
        cum = np.cumsum(starts_per_stream)
        stream = np.searchsorted(cum, flat, side="right")
        offset = flat - (cum[stream] - starts_per_stream[stream])
        skewed = int(batch * rewarded_share)
        if skewed > 0:
            self._aim_at_rewards(stream, offset, skewed, length, rng)
        oldest = np.where(self.count[stream] < self.size, 0, self.ptr[stream])
        index = (oldest[:, None] + offset[:, None] + np.arange(length)[None]) % self.size
        row = stream[:, None]
        return {
            "obs": self.obs[row, index],
            "action": self.action[row, index],
            "reward": self.reward[row, index],
            "is_first": self.is_first[row, index],
            "is_terminal": self.is_terminal[row, index],
            "novelty": self.novelty[row, index],
        }
