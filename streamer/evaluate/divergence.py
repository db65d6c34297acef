"""The divergence alert: the North Star improving beyond its threshold while
at least one guardrail is degraded (Goodhart's law in the act).

States: inactive -> pending -> firing -> resolved -> inactive, like a
Prometheus alert; every change of state is an alert event (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["inactive", "pending", "firing", "resolved"]


@dataclass(frozen=True)
class AlertState:
    state: State = "inactive"
    since: int | None = None  # when the condition started (pending/firing) or resolved
    started: int | None = None  # when the current incident first went pending


def improving(change: float | None, threshold: float, direction: str) -> bool:
    """Did the North Star move in its good direction by at least ``threshold``?"""
    if change is None:
        return False
    return change >= threshold if direction == "higher_is_better" else -change >= threshold


def step(state: AlertState, condition: bool, hold_ms: int, now_ms: int) -> AlertState:
    """The next alert state; fires once ``condition`` held for ``hold_ms``."""
    if condition:
        if state.state in ("inactive", "resolved"):
            if hold_ms <= 0:
                return AlertState("firing", now_ms, now_ms)
            return AlertState("pending", now_ms, now_ms)
        if state.state == "pending" and state.since is not None and now_ms - state.since >= hold_ms:
            return AlertState("firing", now_ms, state.started)
        return state
    if state.state == "firing":
        return AlertState("resolved", now_ms, state.started)
    if state.state in ("pending", "resolved"):
        return AlertState("inactive", now_ms, None)
    return state
