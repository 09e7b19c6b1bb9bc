"""Bootstrap confidence intervals over seeds: the uncertainty a report puts on its numbers.

Percentile bootstrap (Efron & Tibshirani 1993, ch. 13): resample the seeds with replacement,
recompute the statistic, take the 2.5% and 97.5% quantiles. The resamples come from a fixed
generator, so a report rebuilt from the same store prints the same intervals. Costs that never
reach a target are ``inf``; the quantiles are taken without interpolation (``inverted_cdf``), so
an interval may end at ``inf`` ("not reached in that resample") instead of turning into NaN.

With few seeds a percentile interval is narrower than its nominal level (for 5 normal samples,
a 95% interval of the mean covers about 88% of the time): reports say how many seeds each
interval rests on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 20221128  # any fixed value: intervals must not change from one report build to the next


@dataclass(frozen=True)
class Interval:
    """A statistic over seeds with its bootstrap interval.

    Attributes:
        value: the statistic on the seeds themselves.
        low, high: the interval's ends (``value`` for both when there is one seed).
        n: how many seeds it rests on.
    """

    value: float
    low: float
    high: float
    n: int

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _ends(stats: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def bootstrap(
    values: Sequence[float],
    stat: Callable[[np.ndarray], np.ndarray] = lambda v: v.mean(axis=-1),
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval | None:
    """``stat`` of ``values`` with its interval; ``None`` for no values.

    ``stat`` maps an array of shape ``(..., n)`` to shape ``(...)`` (it sees all resamples at
    once): ``lambda v: v.mean(axis=-1)`` (the default) or :func:`median`.
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None
    value = float(stat(v))
    if v.size == 1:
        return Interval(value, value, value, 1)
    low, high = _ends(stat(v[_indices(v.size, resamples, seed)]), level)
    return Interval(value, low, high, int(v.size))


def median(v: np.ndarray) -> np.ndarray:
    """The median along the last axis, ``inf`` when at least half the values are ``inf``.

    (numpy's median of ``[1, inf]`` is ``inf`` too, but of ``[inf, inf]`` it is ``inf`` and of
    ``[-inf, inf]`` NaN; costs are never negative, so sorting and taking the lower middle for an
    even count keeps every case finite or ``inf``.)
    """
    s = np.sort(v, axis=-1)
    n = s.shape[-1]
    if n % 2:
        return s[..., n // 2]
    low, high = s[..., n // 2 - 1], s[..., n // 2]
    with np.errstate(invalid="ignore"):
        mid = np.where(np.isinf(high), high, (low + high) / 2.0)
    return mid


def ratio_of_medians(
    numerator: Sequence[float],
    denominator: Sequence[float],
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval | None:
    """``median(numerator) / median(denominator)`` over paired seeds, resampled in pairs.

    Pairs share a seed (the same data order and initialisation), so they are resampled together.
    ``inf`` in the numerator (never reached) makes the ratio ``inf`` where it dominates the median.
    """
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} and {b.size}")
    if a.size == 0:
        return None
    value = float(median(a) / median(b))
    if a.size == 1:
        return Interval(value, value, value, 1)
    idx = _indices(a.size, resamples, seed)
    low, high = _ends(median(a[idx]) / median(b[idx]), level)
    return Interval(value, low, high, int(a.size))
