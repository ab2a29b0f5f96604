"""Confidence intervals of a difference: Welch's (two models) or paired (one model, two settings)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["welch_interval", "paired_interval", "CONFIDENCE"]


CONFIDENCE = 0.95


def welch_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Difference of means ``mean(a) - mean(b)`` and its Welch-t confidence interval.

    Welch's t does not assume equal variances (standard error ``sqrt(s_a^2/n_a + s_b^2/n_b)``,
    Welch-Satterthwaite degrees of freedom): scipy's ``ttest_ind(a, b, equal_var=False)``. Both samples
    need at least two values. Returns ``(diff, low, high)``; with zero spread in both the interval is
    the point ``(diff, diff)``.
    """
    from scipy import stats

    n_a, n_b = len(a), len(b)
    if n_a < 2 or n_b < 2:
        raise ValueError(f"Welch's interval needs at least 2 values per sample, got {n_a} and {n_b}")
    diff = sum(a) / n_a - sum(b) / n_b
    if _spread(a) == 0 and _spread(b) == 0:
        return diff, diff, diff
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    return diff, float(interval.low), float(interval.high)


def paired_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Mean of the paired differences ``a_i - b_i`` and its t confidence interval (``n - 1`` df).

    For two measurements of the same models (seed ``i`` of ``a`` and of ``b`` are one model, e.g.
    its first and its last block): the seed-to-seed spread they share cancels in the differences.
    scipy's ``ttest_rel(a, b)``. Returns ``(diff, low, high)``; the point ``(diff, diff)`` when every
    difference is the same.
    """
    from scipy import stats

    if len(a) != len(b) or len(a) < 2:
        raise ValueError(
            f"a paired interval needs two equally long samples of at least 2 values, got {len(a)} and {len(b)}"
        )
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / len(d)
    if _spread(d) == 0:
        return mean, mean, mean
    interval = stats.ttest_rel(a, b).confidence_interval(confidence)
    return mean, float(interval.low), float(interval.high)


def _spread(x: Sequence[float]) -> float:
    """The sum of squared deviations from the mean (0 when every value is the same)."""
    mean = sum(x) / len(x)
    return sum((v - mean) ** 2 for v in x)
