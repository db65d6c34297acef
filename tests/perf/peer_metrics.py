"""What both peers compute, from the same per-(user, UTC day) aggregates.

Each peer keeps, in its own windowed state (faust: a tumbling table; Quix
Streams: a tumbling window), one small vector per (user, day):
``[lessons completed, minutes completed, lessons abandoned, subscriptions
purchased, refunds issued]``. The education metrics below are then read from
the windows of the 7 days before the evaluation time (and the 7 before that
for retention), with northstar's semantics (docs/semantics.md §3).

``time_to_first_lesson_p50_seconds`` is not a windowed aggregate: both peers
keep a plain (non-windowed) per-user pair ``[sign-up time, first lesson
completed after it]`` in their key-value state (``pair_update``). That is
exact for input in event-time order per user, which the benchmark's topic is
(northstar also handles a late sign-up that arrives after lessons).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

DAY_MS = 86_400_000
Vector = list[float]
COMPLETED, MINUTES, ABANDONED, PURCHASED, REFUNDED = range(5)

METRICS = (
    "weekly_learning_minutes",
    "weekly_active_learners",
    "minutes_per_learner",
    "learning_days_per_learner",
    "time_to_first_lesson_p50_seconds",
    "weekly_learner_retention",
    "lesson_abandon_rate",
    "refund_rate",
    "paid_conversions",
)
"""The education metrics the peers implement: all 9."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def project(event: Mapping[str, Any]) -> Vector | None:
    """The event's contribution to its (user, day) vector; None when no metric reads it."""
    kind = event.get("event_type")
    if kind == "lesson_completed":
        minutes = (event.get("event_properties") or {}).get("minutes")
        return [1, float(minutes) if _number(minutes) else 0.0, 0, 0, 0]
    if kind == "lesson_abandoned":
        return [0, 0.0, 1, 0, 0]
    if kind == "subscription_purchased":
        return [0, 0.0, 0, 1, 0]
    if kind == "refund_issued":
        return [0, 0.0, 0, 0, 1]
    return None


def add(total: Vector | None, part: Vector) -> Vector:
    if not total:
        return list(part)
    return [a + b for a, b in zip(total, part, strict=True)]


def pair_update(pair: list[int] | None, event: Mapping[str, Any]) -> list[int] | None:
    """The user's new ``[signed_up, first lesson_completed after it (0: none)]``,
    or None when ``event`` does not change it."""
    kind = event.get("event_type")
    if kind == "signed_up" and pair is None:
        return [int(event["time"]), 0]
    if kind == "lesson_completed" and pair is not None and pair[1] == 0 and event["time"] > pair[0]:
        return [pair[0], int(event["time"])]
    return None


def median_seconds(pairs: Iterable[list[int]], at_ms: int) -> float | None:
    """Median (numpy's linear interpolation) of first-lesson delays of users
    who signed up in the 7 days before ``at_ms`` and completed one before it."""
    xs = sorted(
        (first - signed) / 1000
        for signed, first in pairs
        if at_ms - 7 * DAY_MS <= signed < at_ms and 0 < first < at_ms
    )
    if not xs:
        return None
    h = (len(xs) - 1) * 0.5
    lo = math.floor(h)
    return xs[lo] + (h - lo) * (xs[min(lo + 1, len(xs) - 1)] - xs[lo])


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def metrics(
    days: Iterable[tuple[str, int, Vector]], pairs: Iterable[list[int]], at_ms: int
) -> dict[str, float | None]:
    """The peers' metrics at ``at_ms`` (a UTC midnight) from ``(user, day index,
    vector)`` windows and the users' sign-up pairs."""
    end = at_ms // DAY_MS
    totals = [0.0] * 5
    active: set[str] = set()
    previous: set[str] = set()
    learner_days = 0
    for user, day, vector in days:
        if end - 7 <= day < end:
            totals = [a + b for a, b in zip(totals, vector, strict=True)]
            if vector[COMPLETED] > 0:
                active.add(user)
                learner_days += 1
        elif end - 14 <= day < end - 7 and vector[COMPLETED] > 0:
            previous.add(user)
    minutes, completed = totals[MINUTES], totals[COMPLETED]
    return {
        "weekly_learning_minutes": minutes,
        "weekly_active_learners": float(len(active)),
        "minutes_per_learner": _ratio(minutes, len(active)),
        "learning_days_per_learner": _ratio(learner_days, len(active)),
        "time_to_first_lesson_p50_seconds": median_seconds(pairs, at_ms),
        "weekly_learner_retention": _ratio(len(previous & active), len(previous)),
        "lesson_abandon_rate": _ratio(totals[ABANDONED], totals[ABANDONED] + completed),
        "refund_rate": _ratio(totals[REFUNDED], totals[PURCHASED]),
        "paid_conversions": totals[PURCHASED],
    }
