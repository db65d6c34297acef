"""Scenario knobs: how behaviour drifts day by day (pure data)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Drift:
    """Per-day multiplicative drift of behaviour, applied from the scenario start.

    ``activity``: chance a known user is active on a day; ``minutes``: minutes per
    completed lesson; ``abandon``: share of started lessons abandoned;
    ``signups``: new users per day; ``noise``: relative day-to-day noise;
    ``returning_activity``: extra factor on activity of users who were active
    before; ``churn``: chance a learner leaves for good."""

    activity: float = 1.0
    minutes: float = 1.0
    abandon: float = 1.0
    signups: float = 1.0
    returning_activity: float = 1.0
    refunds: float = 1.0
    churn: float = 1.0
    noise: float = 0.03


SCENARIOS: dict[str, Drift] = {
    # North Star and guardrails rise together: more learners, stable quality
    "healthy": Drift(activity=1.01, minutes=1.004, abandon=0.995, signups=1.02, returning_activity=1.004, churn=0.98),
    # stable with realistic noise
    "noisy": Drift(noise=0.10),
    # autoplay-like inflation: minutes climb while people abandon and stop coming back
    "goodhart": Drift(
        activity=1.0, minutes=1.07, abandon=1.05, signups=1.0, returning_activity=0.98, refunds=1.04, churn=1.12
    ),
}


def factor(per_day: float, days: float) -> float:
    """Compounded drift after ``days`` (no drift before the scenario starts)."""
    return float(per_day ** max(days, 0.0))
