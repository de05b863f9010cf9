"""Confidence intervals for the rates the benchmark reports.

A success rate read off 40 or 100 images is uncertain by several points; the report must
say by how much. Wilson's score interval stays inside [0, 1] and keeps a sensible width at
0 or n successes, where the textbook normal interval collapses to a point.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def wilson(successes: np.ndarray, n: np.ndarray, level: float = 0.95
           ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``successes / n``, elementwise; NaN where ``n`` is 0."""
    k, n = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    z = NormalDist().inv_cdf((1 + level) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    low, high = np.where(k == 0, 0.0, low), np.where(k == n, 1.0, high)  # exact, not 1 - 1e-16
    empty = n == 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


RESAMPLES = 2000


def resamples(n: int, count: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``count`` bootstrap resamples of ``n`` image positions (rows of indices). Two results
    on the same images are resampled with the same rows, so their comparison is paired."""
    return np.random.default_rng(seed).integers(0, n, (count, n))


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap ``draws``; NaN if there are none (a
    resample where the statistic is undefined does not count)."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return np.nan, np.nan
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
