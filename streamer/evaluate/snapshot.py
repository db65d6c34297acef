"""The snapshot: every metric of a tree at one evaluation time, with
baselines, changes, guardrail status and the divergence alert. It is what the
exporter, the API, the Kafka snapshot topic and the tree page all read."""

from __future__ import annotations

from typing import Any, TypedDict


class LabelSnapshot(TypedDict):
    """One label of a broken-down metric: an admitted value, ``(none)`` or ``other``."""

    label: str
    value: float | None


class MetricSnapshot(TypedDict, total=False):
    name: str
    title: str
    role: str  # north_star | input | guardrail | kpi | supporting
    dimension: str | None
    owner: str | None
    direction: str
    unit: str
    window_seconds: int
    value: float | None
    baseline: float | None
    change: float | None  # (value - baseline) / |baseline|
    sample: float | None
    status: str | None  # guardrails: ok | degraded | insufficient_data
    degradation: float | None
    p_value: float | None
    tolerance: float | None
    breakdown: list[LabelSnapshot] | None  # broken-down metrics: admitted labels, then other


class DivergenceSnapshot(TypedDict):
    state: str  # inactive | pending | firing | resolved
    since: int | None
    started: int | None
    north_star_improving: bool
    degraded: list[str]


class Snapshot(TypedDict):
    tree: str
    product: str
    at: int  # evaluation time (ms)
    clock: str  # watermark | wall
    evaluated_at: int  # wall clock of the evaluation (ms)
    metrics: list[MetricSnapshot]
    divergence: DivergenceSnapshot


def alert_event(snapshot: Snapshot, previous_state: str) -> dict[str, Any]:
    """The message sent on a divergence state change (Kafka, webhook).

    ``id`` names the incident (the same for its pending, firing and resolved
    events; the Kafka key); ``event_id`` names this transition: the state and
    the evaluation time it began (``since``), which the evaluator's
    transaction writes once."""
    div = snapshot["divergence"]
    by_name = {m["name"]: m for m in snapshot["metrics"]}
    north = next(m for m in snapshot["metrics"] if m.get("role") == "north_star")
    return {
        "id": f"{snapshot['tree']}:divergence:{div['started']}",
        # one per transition, the same on every delivery of it: receivers dedupe by it
        "event_id": f"{snapshot['tree']}:divergence:{div['since']}:{div['state']}",
        "alert": "NorthStarDivergence",
        "tree": snapshot["tree"],
        "product": snapshot["product"],
        "state": div["state"],
        "previous_state": previous_state,
        "at": snapshot["at"],
        "started": div["started"],
        "since": div["since"],
        "north_star": north,
        "guardrails": [by_name[name] for name in div["degraded"]],
    }
