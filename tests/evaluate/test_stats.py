"""The statistical tests behind guardrail degradation."""

from __future__ import annotations

import random

import pytest

from streamer.evaluate.stats import normal_sf, rate_ratio, two_counts, two_proportions


def test_normal_tail() -> None:
    assert normal_sf(0) == pytest.approx(0.5)
    assert normal_sf(1.6448536) == pytest.approx(0.05, rel=1e-4)


def test_two_proportions_one_sided() -> None:
    worse = two_proportions(300, 1000, 200, 1000, greater=True)
    assert worse is not None and worse.p_value < 1e-6
    better = two_proportions(300, 1000, 200, 1000, greater=False)
    assert better is not None and better.p_value > 0.99
    assert two_proportions(1, 0, 1, 10, greater=True) is None


def test_two_counts_exact_binomial() -> None:
    # 15 vs 5 events: P(X >= 15 | n=20, p=1/2) = 0.020694...
    ev = two_counts(15, 5, greater=True)
    assert ev is not None and ev.p_value == pytest.approx(0.0206947, rel=1e-5)
    assert two_counts(0, 0, greater=True).p_value == 1.0  # type: ignore[union-attr]


def test_rate_ratio_uses_proportions_when_it_can() -> None:
    a = rate_ratio(30, 100, 10, 100, greater=True)
    b = two_proportions(30, 100, 10, 100, greater=True)
    assert a == b
    over = rate_ratio(150, 100, 100, 100, greater=True)  # numerator above denominator
    assert over is not None and over.test == "rate_ratio" and over.p_value < 0.01


def test_false_positive_rate_is_near_alpha() -> None:
    """Under the null (same true rate), p < 0.05 about 5% of the time."""
    rng = random.Random(5)
    hits = 0
    trials = 2000
    for _ in range(trials):
        x1 = sum(rng.random() < 0.2 for _ in range(400))
        x0 = sum(rng.random() < 0.2 for _ in range(400))
        ev = two_proportions(x1, 400, x0, 400, greater=True)
        assert ev is not None
        hits += ev.p_value < 0.05
    assert 0.03 < hits / trials < 0.07
