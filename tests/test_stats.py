"""The confidence intervals of ``measure.stats`` (scipy's t tests) against the hand-written formulas they replaced."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from tnt_rest_lite.measure.stats import paired_interval, welch_interval


def welch_reference(a, b, confidence=0.95):
    """The former hand-written Welch interval (Welch-Satterthwaite df), kept as the reference."""
    n_a, n_b = len(a), len(b)
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


def paired_reference(a, b, confidence=0.95):
    """The former hand-written paired interval (``n - 1`` df), kept as the reference."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    if var == 0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * math.sqrt(var / n)
    return mean, mean - half, mean + half


def samples():
    rng = random.Random(23)
    yield [71.2, 70.8, 72.0], [69.5, 70.1, 69.9]  # three seeds each, as the tables run
    yield [1.0, 2.0], [3.0, 5.0, 8.0, 13.0]  # unequal sizes
    yield [5.0, 5.0, 5.0], [1.0, 2.0, 4.0]  # no spread in one sample
    for n_a, n_b in [(2, 2), (3, 5), (5, 3), (10, 10), (30, 7)]:
        scale = rng.choice([0.01, 1.0, 100.0])
        yield (
            [rng.gauss(50, scale) for _ in range(n_a)],
            [rng.gauss(50 + scale, 3 * scale) for _ in range(n_b)],
        )


@pytest.mark.parametrize(("a", "b"), list(samples()))
def test_welch_interval_equals_the_former_formula(a, b):
    assert welch_interval(a, b) == pytest.approx(welch_reference(a, b), rel=0, abs=1e-12)


@pytest.mark.parametrize(("a", "b"), [(a, b[: len(a)]) for a, b in samples() if len(b) >= len(a)])
def test_paired_interval_equals_the_former_formula(a, b):
    assert paired_interval(a, b) == pytest.approx(paired_reference(a, b), rel=0, abs=1e-12)


def test_other_confidence_levels():
    a, b = [3.1, 2.9, 3.4, 3.0], [2.0, 2.6, 2.2, 2.3]
    for level in (0.8, 0.9, 0.99):
        assert welch_interval(a, b, level) == pytest.approx(welch_reference(a, b, level), rel=0, abs=1e-12)
        assert paired_interval(a, b, level) == pytest.approx(paired_reference(a, b, level), rel=0, abs=1e-12)


def test_no_spread_is_a_point():
    assert welch_interval([5.0, 5.0], [3.0, 3.0]) == (2.0, 2.0, 2.0)
    assert paired_interval([5.0, 6.0, 7.0], [3.0, 4.0, 5.0]) == (2.0, 2.0, 2.0)
