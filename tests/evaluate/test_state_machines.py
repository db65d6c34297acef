"""Guardrail status and the divergence alert as state machines."""

from __future__ import annotations

from streamer.evaluate import divergence, guardrails
from streamer.evaluate.guardrails import Assessment, GuardState
from streamer.spec.model import Guardrail
from streamer.state.evaluate import Reading

HOUR = 3_600_000
GUARD = Guardrail.model_validate(
    {
        "name": "abandon", "title": "t", "description": "d", "unit": "ratio", "window": "7d",
        "direction": "lower_is_better", "tolerance": 0.1, "min_sample": 100, "for": "2h",
        "measure": {"kind": "count", "event": "x"},
    }
)


def _assess(d: float | None, significant: bool = True) -> Assessment:
    return Assessment(d is None, d, significant, None)


def test_degrades_only_after_for_and_recovers_with_hysteresis() -> None:
    s = GuardState("ok")
    s = guardrails.step(s, _assess(0.2), GUARD, 0)
    assert s.status == "ok" and s.pending_since == 0
    s = guardrails.step(s, _assess(0.2), GUARD, 1 * HOUR)
    assert s.status == "ok"
    s = guardrails.step(s, _assess(0.2), GUARD, 2 * HOUR)
    assert s.status == "degraded"
    s = guardrails.step(s, _assess(0.07), GUARD, 3 * HOUR)  # below tolerance, above half
    assert s.status == "degraded"
    s = guardrails.step(s, _assess(0.04), GUARD, 4 * HOUR)
    assert s.status == "ok" and s.pending_since is None


def test_a_dip_restarts_the_for_clock() -> None:
    s = guardrails.step(GuardState("ok"), _assess(0.2), GUARD, 0)
    s = guardrails.step(s, _assess(0.05), GUARD, HOUR)
    s = guardrails.step(s, _assess(0.2), GUARD, 2 * HOUR)
    assert s.status == "ok" and s.pending_since == 2 * HOUR


def test_not_significant_is_not_degraded() -> None:
    s = GuardState("ok")
    for h in range(5):
        s = guardrails.step(s, _assess(0.5, significant=False), GUARD, h * HOUR)
    assert s.status == "ok"


def test_insufficient_sample() -> None:
    small = Reading(0.3, 3, 10, "rate", 10)
    a = guardrails.assess(GUARD, small, small, 0.2)
    assert a.insufficient
    s = guardrails.step(GuardState("degraded"), a, GUARD, 0)
    assert s.status == "insufficient_data"


def test_assess_direction_and_evidence() -> None:
    now = Reading(0.3, 300, 1000, "rate", 1000)
    before = Reading(0.2, 200, 1000, "rate", 1000)
    a = guardrails.assess(GUARD, now, before, 0.2)
    assert a.degradation is not None and abs(a.degradation - 0.5) < 1e-12
    assert a.significant and a.evidence is not None and a.evidence.p_value < 1e-6
    improving = guardrails.assess(GUARD, before, now, 0.3)
    assert improving.degradation is not None and improving.degradation < 0 and not improving.significant


def test_divergence_pending_firing_resolved_without_flapping() -> None:
    s = divergence.AlertState()
    s = divergence.step(s, True, 2 * HOUR, 0)
    assert s.state == "pending" and s.started == 0
    s = divergence.step(s, True, 2 * HOUR, 2 * HOUR)
    assert s.state == "firing"
    s = divergence.step(s, False, 2 * HOUR, 3 * HOUR)  # a dip shorter than the hold
    assert s.state == "firing" and s.clear_since == 3 * HOUR
    s = divergence.step(s, True, 2 * HOUR, 4 * HOUR)
    assert s.state == "firing" and s.clear_since is None
    s = divergence.step(s, False, 2 * HOUR, 5 * HOUR)
    s = divergence.step(s, False, 2 * HOUR, 7 * HOUR)
    assert s.state == "resolved" and s.started == 0
    s = divergence.step(s, False, 2 * HOUR, 8 * HOUR)
    assert s.state == "inactive"


def test_pending_that_clears_never_fires() -> None:
    s = divergence.step(divergence.AlertState(), True, 2 * HOUR, 0)
    s = divergence.step(s, False, 2 * HOUR, HOUR)
    assert s.state == "inactive"


def test_improving_respects_direction() -> None:
    assert divergence.improving(0.05, 0.02, "higher_is_better")
    assert not divergence.improving(0.01, 0.02, "higher_is_better")
    assert divergence.improving(-0.05, 0.02, "lower_is_better")
    assert not divergence.improving(None, 0.02, "higher_is_better")
