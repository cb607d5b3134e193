"""Estimates with intervals: every number a probe reports carries its uncertainty.

* :func:`proportion`: a share of episodes, with a Wilson score interval (never zero-width, honest
  at 0 and 1 where a percentile bootstrap of a constant collapses to a point).
* :func:`bootstrap` / :func:`episode_bootstrap`: percentile bootstrap of any statistic over
  episodes (rows); the probes' version refuses an interval below :data:`MIN_N` episodes.
* :func:`mean_interval`: a mean over a few independent units (levels) with a Student-t interval,
  where a percentile bootstrap of 16 values is too narrow.
* :func:`difference` / :func:`proportion_difference`: two independent samples (an agent against the
  uniform-random agent on the same levels, or two splits).
* :func:`slope`: OLS slope with a heteroskedasticity-robust (HC3) interval and a permutation
  p-value: a statistic whose interval covers 0 when the outcome does not depend on the predictor.

Below :data:`MIN_N` units an estimate keeps its point value but no interval (``lo``/``hi`` NaN):
the battery and the CLI show "too few" instead of a zero-width interval that looks like certainty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

MIN_N = 5
"""Fewest independent units (episodes, levels) an interval is given for."""
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a 95% interval and the number of independent units (episodes) behind it.

    ``lo``/``hi`` are NaN (with a finite ``mean``) when ``n < MIN_N``: too few units for an interval.
    """

    mean: float
    lo: float
    hi: float
    n: int

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Estimate:
        return cls(float(data["mean"]), float(data["lo"]), float(data["hi"]), int(data["n"]))

    @property
    def too_few(self) -> bool:
        """Positive ``n`` below :data:`MIN_N` and no interval: a point value only."""
        return 0 < self.n < MIN_N and not np.isfinite(self.lo)

    def excludes(self, value: float) -> bool:
        """The interval lies wholly above or below ``value`` (False without an interval)."""
        return bool(np.isfinite(self.lo) and np.isfinite(self.hi) and (self.lo > value or self.hi < value))

    def __str__(self) -> str:
        if self.n == 0 or np.isnan(self.mean):
            return "n/a"
        if self.too_few:
            return f"{self.mean:.3f} (n={self.n} < {MIN_N}: too few for an interval)"
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


NAN_ESTIMATE = Estimate(float("nan"), float("nan"), float("nan"), 0)


def _too_few(point: float, n: int) -> Estimate:
    return Estimate(point, float("nan"), float("nan"), n)


def wilson(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927)."""
    if n == 0:
        return float("nan"), float("nan")
    z = Z95 if level == 0.95 else float(_norm_ppf(0.5 + level / 2))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _norm_ppf(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def _empty_or_too_few(values: np.ndarray) -> Estimate | None:
    """The estimate of a mean over ``values`` when it can have no interval (none, or fewer than
    :data:`MIN_N`), else ``None``: the shared refusal of :func:`proportion` and :func:`mean_interval`."""
    if len(values) == 0:
        return NAN_ESTIMATE
    if len(values) < MIN_N:
        return _too_few(float(values.mean()), len(values))
    return None


def proportion(values: np.ndarray, level: float = 0.95) -> Estimate:
    """Share of True (or 1) among ``values`` with a Wilson interval; no interval below MIN_N."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    early = _empty_or_too_few(values)
    if early is not None:
        return early
    n, point = len(values), float(values.mean())
    lo, hi = wilson(float(values.sum()), n, level)
    return Estimate(point, lo, hi, n)


def bootstrap(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    seed: int = 0,
    resamples: int = 2000,
    level: float = 0.95,
    min_n: int = 1,
) -> Estimate:
    """Percentile-bootstrap estimate of ``statistic`` over the rows of ``values`` (episodes).

    Resampling is over rows, so a statistic of several per-episode columns keeps them paired.
    Deterministic for a given ``seed``. No interval below ``min_n`` rows (probes use
    :func:`episode_bootstrap`, which refuses below :data:`MIN_N`; the report's over-seed
    aggregation keeps its own rule).
    """
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        return NAN_ESTIMATE
    point = float(statistic(values))
    if n < min_n:
        return _too_few(point, n)
    rng = np.random.default_rng(seed)
    if statistic is np.mean and values.ndim == 1:
        idx = rng.integers(0, n, size=(resamples, n))
        stats = values.astype(np.float64)[idx].mean(axis=1)
    else:
        stats = np.array(
            [statistic(values[rng.integers(0, n, size=n)]) for _ in range(resamples)], dtype=np.float64
        )
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return Estimate(point, float("nan"), float("nan"), n)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return Estimate(point, float(lo), float(hi), n)


def episode_bootstrap(
    values: np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean, **kwargs
) -> Estimate:
    """:func:`bootstrap` over episodes as probes report it: no interval below :data:`MIN_N` episodes."""
    return bootstrap(values, statistic, min_n=MIN_N, **kwargs)


def mean_interval(values: np.ndarray, level: float = 0.95) -> Estimate:
    """Mean of independent units with a Student-t interval (no interval below :data:`MIN_N`).

    For few units (the value map's 16 levels) the percentile bootstrap of a mean is too narrow: it
    uses the plug-in variance and normal quantiles, and flagged a noise critic as valuing a goal in
    0.13 of null draws instead of 0.05. The t interval has the right width for normal units and is
    close to it for the per-level regression coefficients it is used on.
    """
    from scipy.stats import t as student_t

    values = np.asarray(values, np.float64).reshape(-1)
    values = values[~np.isnan(values)]
    early = _empty_or_too_few(values)
    if early is not None:
        return early
    n, point = len(values), float(values.mean())
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * float(values.std(ddof=1)) / np.sqrt(n)
    return Estimate(point, point - half, point + half, n)


def difference(a: np.ndarray, b: np.ndarray, *, seed: int = 0, resamples: int = 2000) -> Estimate:
    """Bootstrap estimate of mean(a) - mean(b) for two independent samples."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) == 0 or len(b) == 0:
        return NAN_ESTIMATE
    point = float(a.mean() - b.mean())
    if min(len(a), len(b)) < MIN_N:
        return _too_few(point, min(len(a), len(b)))
    rng = np.random.default_rng(seed)
    da = a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)
    db = b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(axis=1)
    lo, hi = np.quantile(da - db, [0.025, 0.975])
    return Estimate(point, float(lo), float(hi), min(len(a), len(b)))


def proportion_difference(a: np.ndarray, b: np.ndarray) -> Estimate:
    """p(a) - p(b) for two independent binary samples, Newcombe's hybrid score interval.

    Built from the two Wilson intervals (Newcombe 1998, method 10): good coverage at shares of 0
    or 1, where a bootstrap of two constants collapses to a point.
    """
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if len(a) == 0 or len(b) == 0:
        return NAN_ESTIMATE
    pa, pb = float(a.mean()), float(b.mean())
    n = min(len(a), len(b))
    if n < MIN_N:
        return _too_few(pa - pb, n)
    la, ua = wilson(float(a.sum()), len(a))
    lb, ub = wilson(float(b.sum()), len(b))
    d = pa - pb
    lo = d - np.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    hi = d + np.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return Estimate(d, float(lo), float(hi), n)


def slope(x: np.ndarray, y: np.ndarray, *, seed: int = 0, permutations: int = 999) -> tuple[Estimate, float]:
    """OLS slope of ``y`` on standardized ``x`` with an HC3 95% interval, and a permutation p-value.

    The slope is "change in mean y per standard deviation of x". Under the null (y independent of
    x) it is centred on 0 and its interval covers 0 in about 95% of samples, unlike a max-minus-min
    spread of binned means, which is positive whenever the bins differ by noise. Returns
    ``(estimate, p)``; NaN when x does not vary.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(x)
    if n == 0 or x.std() == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), n), float("nan")
    z = (x - x.mean()) / x.std()
    yc = y - y.mean()
    b = float((z * yc).sum() / (z * z).sum())
    if n < MIN_N:
        return _too_few(b, n), float("nan")
    resid = yc - b * z
    design = np.stack([np.ones(n), z], axis=1)
    h = (design @ np.linalg.inv(design.T @ design) * design).sum(axis=1)  # leverages
    w = resid**2 / np.maximum(1.0 - h, 1e-12) ** 2
    se = float(np.sqrt((z * z * w).sum()) / (z * z).sum())
    rng = np.random.default_rng(seed)
    perm = np.array([(z * yc[rng.permutation(n)]).sum() for _ in range(permutations)]) / (z * z).sum()
    p = float((1 + (np.abs(perm) >= abs(b) - 1e-12).sum()) / (permutations + 1))
    return Estimate(b, b - Z95 * se, b + Z95 * se, n), p
