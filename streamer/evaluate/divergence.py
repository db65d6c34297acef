"""The divergence alert: the North Star improving beyond its threshold while
at least one guardrail is degraded (Goodhart's law in the act).

States: inactive -> pending -> firing -> resolved -> inactive, like a
Prometheus alert; every change of state is an alert event (pure logic). The
condition must hold for ``hold`` before firing, and a firing alert resolves
only once the condition has been false for ``hold`` too (Prometheus'
``keep_firing_for``), so a North Star hovering at its threshold does not
make the alert flap."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

State = Literal["inactive", "pending", "firing", "resolved"]


@dataclass(frozen=True)
class AlertState:
    state: State = "inactive"
    since: int | None = None  # when the current state began
    started: int | None = None  # when the current incident first went pending
    clear_since: int | None = None  # firing, but the condition false since then


def improving(change: float | None, threshold: float, direction: str) -> bool:
    """Did the North Star move in its good direction by at least ``threshold``?"""
    if change is None:
        return False
    return change >= threshold if direction == "higher_is_better" else -change >= threshold


def step(state: AlertState, condition: bool, hold_ms: int, now_ms: int) -> AlertState:
    """The next alert state at ``now_ms``."""
    if condition:
        if state.state in ("inactive", "resolved"):
            if hold_ms <= 0:
                return AlertState("firing", now_ms, now_ms)
            return AlertState("pending", now_ms, now_ms)
        if state.state == "pending" and state.since is not None and now_ms - state.since >= hold_ms:
            return AlertState("firing", now_ms, state.started)
        if state.state == "firing" and state.clear_since is not None:
            return replace(state, clear_since=None)
        return state
    if state.state == "firing":
        clear = state.clear_since if state.clear_since is not None else now_ms
        if now_ms - clear >= hold_ms:
            return AlertState("resolved", now_ms, state.started)
        return replace(state, clear_since=clear)
    if state.state in ("pending", "resolved"):
        return AlertState("inactive", now_ms, None)
    return state
