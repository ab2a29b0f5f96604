"""Confidence intervals of a difference: Welch's (two models) or paired (one model, two settings)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["welch_interval", "CONFIDENCE"]


CONFIDENCE = 0.95


def welch_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Difference of means ``mean(a) - mean(b)`` and its Welch-t confidence interval.

    Welch's t does not assume equal variances: the standard error is ``sqrt(s_a^2/n_a + s_b^2/n_b)``
    and the degrees of freedom come from the Welch-Satterthwaite equation. Both samples need at
    least two values. Returns ``(diff, low, high)``; with zero spread in both the interval is the
    point ``(diff, diff)``.
    """
    from scipy import stats

    n_a, n_b = len(a), len(b)
    if n_a < 2 or n_b < 2:
        raise ValueError(f"Welch's interval needs at least 2 values per sample, got {n_a} and {n_b}")
    mean_a, mean_b = sum(a) / n_a, sum(b) / n_b
    var_a = sum((x - mean_a) ** 2 for x in a) / (n_a - 1)
    var_b = sum((x - mean_b) ** 2 for x in b) / (n_b - 1)
    diff = mean_a - mean_b
    se2 = var_a / n_a + var_b / n_b
    if se2 == 0:
        return diff, diff, diff
    df = se2**2 / ((var_a / n_a) ** 2 / (n_a - 1) + (var_b / n_b) ** 2 / (n_b - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(se2)
    return diff, diff - half, diff + half


def paired_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Mean of the paired differences ``a_i - b_i`` and its t confidence interval (``n - 1`` df).

    For two measurements of the same models (seed ``i`` of ``a`` and of ``b`` are one model, e.g.
    its first and its last block): the seed-to-seed spread they share cancels in the differences.
    Returns ``(diff, low, high)``.
    """
    from scipy import stats

    if len(a) != len(b) or len(a) < 2:
        raise ValueError(
            f"a paired interval needs two equally long samples of at least 2 values, got {len(a)} and {len(b)}"
        )
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    if var == 0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * math.sqrt(var / n)
    return mean, mean - half, mean + half
