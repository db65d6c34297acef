"""Guardrail status: ok / degraded / insufficient data (pure; the clock and
the previous state are passed in).

A guardrail *degrades* when, against its baseline and in its bad direction,
it moved by more than ``tolerance`` (relative) **and** the move is
statistically significant at ``confidence`` (stats.py), with at least
``min_sample`` behind both values. It becomes ``degraded`` once that has held
for ``for``; it recovers (hysteresis) only when the degradation falls to half
the tolerance, so a value hovering at the threshold does not flap."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from streamer.evaluate.stats import Evidence, rate_ratio, two_counts, two_proportions
from streamer.spec.model import Guardrail
from streamer.state.evaluate import Reading

Status = Literal["ok", "degraded", "insufficient_data"]


@dataclass(frozen=True)
class GuardState:
    """What the evaluator remembers between runs (persisted in Redis)."""

    status: Status = "insufficient_data"
    pending_since: int | None = None
    since: int | None = None


@dataclass(frozen=True)
class Assessment:
    """One evaluation of a guardrail against its baseline."""

    insufficient: bool
    degradation: float | None
    significant: bool
    evidence: Evidence | None


def degradation(value: float, baseline: float, direction: str) -> float:
    """Relative change in the bad direction (positive = worse)."""
    worse = value - baseline if direction == "lower_is_better" else baseline - value
    if baseline == 0:
        return math.inf if worse > 0 else 0.0
    return worse / abs(baseline)


def evidence(guard: Guardrail, current: Reading, base: Reading) -> Evidence | None:
    """The statistical test fitting the measure, one-sided in the bad direction."""
    worse_is_greater = guard.direction == "lower_is_better"
    if current.kind in ("proportion", "rate"):
        if None in (current.numerator, current.denominator, base.numerator, base.denominator):
            return None
        args = (current.numerator, current.denominator, base.numerator, base.denominator)
        n1, d1, n0, d0 = (float(x) for x in args)  # type: ignore[arg-type]
        if current.kind == "proportion":
            return two_proportions(n1, d1, n0, d0, greater=worse_is_greater)
        return rate_ratio(n1, d1, n0, d0, greater=worse_is_greater)
    if current.kind == "count" and current.value is not None and base.value is not None:
        return two_counts(current.value, base.value, greater=worse_is_greater)
    return None


def assess(guard: Guardrail, current: Reading, base: Reading, baseline_value: float | None) -> Assessment:
    """``base`` is the reading of the previous window (for the test);
    ``baseline_value`` the guardrail's baseline (previous window or trailing mean)."""
    if current.value is None or baseline_value is None:
        return Assessment(True, None, False, None)
    for sample in (current.sample, base.sample):
        if sample is not None and sample < guard.min_sample:
            return Assessment(True, None, False, None)
    d = degradation(current.value, baseline_value, guard.direction)
    ev = evidence(guard, current, base)
    significant = ev.significant(guard.confidence) if ev is not None else current.kind == "other"
    return Assessment(False, d, significant, ev)


def step(state: GuardState, a: Assessment, guard: Guardrail, now_ms: int) -> GuardState:
    """The next state after assessment ``a`` at ``now_ms``."""
    if a.insufficient or a.degradation is None:
        if state.status == "insufficient_data":
            return state
        return GuardState("insufficient_data", None, now_ms)
    if state.status == "degraded":
        if a.degradation > guard.tolerance / 2:
            return state
        return GuardState("ok", None, now_ms)
    degraded_now = a.degradation > guard.tolerance and a.significant
    if not degraded_now:
        return state if state.status == "ok" and state.pending_since is None else GuardState("ok", None, now_ms)
    pending = state.pending_since if state.pending_since is not None else now_ms
    if now_ms - pending >= guard.for_ * 1000:
        return GuardState("degraded", None, now_ms)
    return GuardState("ok", pending, state.since if state.status == "ok" else now_ms)
