"""Estimates with bootstrap intervals: every number a probe reports carries its uncertainty."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a 95% interval and the number of independent units (episodes) behind it."""

    mean: float
    lo: float
    hi: float
    n: int

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Estimate:
        return cls(float(data["mean"]), float(data["lo"]), float(data["hi"]), int(data["n"]))

    def __str__(self) -> str:
        if self.n == 0 or np.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


NAN_ESTIMATE = Estimate(float("nan"), float("nan"), float("nan"), 0)


def bootstrap(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    seed: int = 0,
    resamples: int = 2000,
    level: float = 0.95,
) -> Estimate:
    """Percentile-bootstrap estimate of ``statistic`` over the rows of ``values`` (episodes).

    Resampling is over rows, so a statistic of several per-episode columns keeps them paired.
    Deterministic for a given ``seed``.
    """
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        return NAN_ESTIMATE
    point = float(statistic(values))
    rng = np.random.default_rng(seed)
    if statistic is np.mean and values.ndim == 1:
        idx = rng.integers(0, n, size=(resamples, n))
        stats = values.astype(np.float64)[idx].mean(axis=1)
    else:
        stats = np.array([statistic(values[rng.integers(0, n, size=n)]) for _ in range(resamples)], dtype=np.float64)
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return Estimate(point, float("nan"), float("nan"), n)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return Estimate(point, float(lo), float(hi), n)


def difference(a: np.ndarray, b: np.ndarray, *, seed: int = 0, resamples: int = 2000) -> Estimate:
    """Bootstrap estimate of mean(a) - mean(b) for two independent samples."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) == 0 or len(b) == 0:
        return NAN_ESTIMATE
    rng = np.random.default_rng(seed)
    da = a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)
    db = b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(axis=1)
    lo, hi = np.quantile(da - db, [0.025, 0.975])
    return Estimate(float(a.mean() - b.mean()), float(lo), float(hi), min(len(a), len(b)))
