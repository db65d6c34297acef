"""Statistical evidence that a guardrail moved (pure math, no I/O).

For proportions (retention, abandon rate: successes out of trials in two
windows) a one-sided two-proportion z-test; for counts in two equal windows
(refunds vs purchases is a ratio of two counts; plain counts too) the
conditional binomial test: given ``n = x1 + x2`` events, ``x1 ~ Bin(n, 1/2)``
under equal rates. Other measures (sums, averages, percentiles) carry no
sample variance here; they are judged by their threshold, minimum sample and
``for`` duration only (docs/alerts.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True)
class Evidence:
    test: str
    statistic: float
    p_value: float

    def significant(self, confidence: float) -> bool:
        return self.p_value < 1.0 - confidence


def two_proportions(x1: float, n1: float, x0: float, n0: float, *, greater: bool) -> Evidence | None:
    """One-sided test that the current proportion x1/n1 is greater (or, with
    ``greater=False``, smaller) than the baseline proportion x0/n0."""
    if n1 <= 0 or n0 <= 0 or not (0 <= x1 <= n1) or not (0 <= x0 <= n0):
        return None
    p1, p0 = x1 / n1, x0 / n0
    pooled = (x1 + x0) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if se == 0:
        return Evidence("two_proportions", 0.0, 1.0)
    z = (p1 - p0) / se
    if not greater:
        z = -z
    return Evidence("two_proportions", z, normal_sf(z))


def _binom_sf(k: int, n: int) -> float:
    """P(X >= k) for X ~ Bin(n, 1/2), exact for small n, normal beyond."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if n <= 1000:
        log_half = n * math.log(0.5)
        total = 0.0
        for i in range(k, n + 1):
            total += math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half)
        return min(1.0, total)
    z = (k - 0.5 - n / 2) / math.sqrt(n / 4)
    return normal_sf(z)


def two_counts(x1: float, x0: float, *, greater: bool) -> Evidence | None:
    """One-sided test that the count x1 (current window) exceeds (or falls
    below) x0 (baseline window of equal length) beyond Poisson noise."""
    if x1 < 0 or x0 < 0:
        return None
    a, b = round(x1), round(x0)
    n = a + b
    if n == 0:
        return Evidence("two_counts", 0.0, 1.0)
    k = a if greater else b
    p = _binom_sf(k, n)
    return Evidence("two_counts", (k - n / 2) / math.sqrt(n / 4), p)


def rate_ratio(num1: float, den1: float, num0: float, den0: float, *, greater: bool) -> Evidence | None:
    """Ratio of two counts (refunds / purchases): a proportion test when the
    numerator cannot exceed the denominator, else a test on the numerators
    scaled by exposure (conditional binomial with unequal exposure, normal
    approximation)."""
    if den1 <= 0 or den0 <= 0:
        return None
    if num1 <= den1 and num0 <= den0:
        return two_proportions(num1, den1, num0, den0, greater=greater)
    share = den1 / (den1 + den0)
    n = num1 + num0
    if n == 0:
        return Evidence("rate_ratio", 0.0, 1.0)
    z = (num1 - n * share) / math.sqrt(n * share * (1 - share))
    if not greater:
        z = -z
    return Evidence("rate_ratio", z, normal_sf(z))
