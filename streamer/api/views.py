"""What the routes answer, as plain data (pure functions, no I/O): the tree
structure for drawing, metric histories, alerts, and query parameter parsing.
Field names and shapes are those of the OpenAPI document (openapi.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from streamer.api.errors import bad_request
from streamer.evaluate.snapshot import MetricSnapshot, Snapshot
from streamer.spec.duration import format_duration
from streamer.spec.model import Guardrail, Input, Metric, NorthStar, Tree

HISTORY_DEFAULT = 200
HISTORY_MAX = 720  # the evaluator keeps this many snapshots per tree
ACTIVE_ALERT_STATES = ("pending", "firing")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_AT_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
# "+02:00" arrives as " 02:00" when the client did not percent-encode the "+"
_SPACE_OFFSET = re.compile(r" (\d{2}(:?\d{2})?)$")


# --------------------------------------------------------------------------- trees


def _metric(metric: Metric) -> dict[str, Any]:
    return {
        "name": metric.name,
        "title": metric.title,
        "description": metric.description,
        "unit": metric.unit,
        "window": format_duration(metric.window),
        "window_seconds": metric.window,
        "direction": metric.direction,
        "measure": metric.measure.kind,
    }


def _north_star(metric: NorthStar) -> dict[str, Any]:
    return {**_metric(metric), "target": metric.target, "min_improvement": metric.min_improvement}


def _input(metric: Input) -> dict[str, Any]:
    return {**_metric(metric), "dimension": metric.dimension, "owner": metric.owner}


def _guardrail(metric: Guardrail) -> dict[str, Any]:
    return {
        **_metric(metric),
        "owner": metric.owner,
        "tolerance": metric.tolerance,
        "for": format_duration(metric.for_),
        "for_seconds": metric.for_,
        "baseline": {"kind": metric.baseline.kind, "periods": metric.baseline.periods},
        "min_sample": metric.min_sample,
        "confidence": metric.confidence,
    }


def tree_view(tree: Tree) -> dict[str, Any]:
    """The tree's structure for drawing it (no state)."""
    return {
        "tree": tree.tree,
        "product": tree.product,
        "description": tree.description,
        "game": tree.game,
        "resolution_seconds": tree.resolution,
        "north_star": _north_star(tree.north_star),
        "inputs": [_input(m) for m in tree.inputs],
        "guardrails": [_guardrail(m) for m in tree.guardrails],
        "kpi": {**_metric(tree.kpi), "owner": tree.kpi.owner} if tree.kpi is not None else None,
        "supporting": [_metric(m) for m in tree.supporting],
        "alerting": {"for_seconds": tree.alerting.for_, "stale_after_seconds": tree.alerting.stale_after},
    }


def tree_summary(tree: Tree, snapshot: Snapshot | None) -> dict[str, Any]:
    return {
        "tree": tree.tree,
        "product": tree.product,
        "game": tree.game,
        "north_star": tree.north_star.name,
        "at": snapshot["at"] if snapshot else None,
        "evaluated_at": snapshot["evaluated_at"] if snapshot else None,
    }


# --------------------------------------------------------------------------- metrics


def find_metric(snapshot: Snapshot | None, name: str) -> MetricSnapshot | None:
    if snapshot is None:
        return None
    return next((m for m in snapshot["metrics"] if m.get("name") == name), None)


def history_points(history: list[Snapshot], name: str) -> list[dict[str, Any]]:
    """One point per stored snapshot that has the metric, oldest first."""
    points = []
    for snapshot in history:
        metric = find_metric(snapshot, name)
        if metric is None:  # evaluated under an older definition without it
            continue
        points.append({
            "at": snapshot["at"],
            "value": metric.get("value"),
            "baseline": metric.get("baseline"),
            "change": metric.get("change"),
            "status": metric.get("status"),
        })
    return points


def group_rule(metric: Metric) -> tuple[str, int]:
    """(group field, members a group needs to qualify) of a grouped metric."""
    group = getattr(metric.measure, "group", None)
    by = getattr(group, "by", None)
    minimum = getattr(group, "min_owners", None) or getattr(group, "min_entities", None)
    if not isinstance(by, str) or not isinstance(minimum, int):
        raise ValueError(f"metric {metric.name!r} does not count groups")
    return by, minimum


# --------------------------------------------------------------------------- alerts


def active_alert(snapshot: Snapshot) -> dict[str, Any] | None:
    """The divergence alert of ``snapshot`` when pending or firing, with the
    North Star and the degraded guardrails involved."""
    div = snapshot["divergence"]
    if div["state"] not in ACTIVE_ALERT_STATES:
        return None
    by_name = {m.get("name"): m for m in snapshot["metrics"]}
    north = next((m for m in snapshot["metrics"] if m.get("role") == "north_star"), None)
    return {
        "tree": snapshot["tree"],
        "product": snapshot["product"],
        "state": div["state"],
        "since": div["since"],
        "started": div["started"],
        "at": snapshot["at"],
        "evaluated_at": snapshot["evaluated_at"],
        "north_star": north,
        "guardrails": [by_name[name] for name in div["degraded"] if name in by_name],
    }


# --------------------------------------------------------------------------- parameters


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return HISTORY_DEFAULT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"limit must be an integer from 1 to {HISTORY_MAX}, got {raw!r}") from None
    if not 1 <= limit <= HISTORY_MAX:
        raise bad_request(f"limit must be from 1 to {HISTORY_MAX}, got {limit}")
    return limit


def parse_at(raw: str) -> int:
    """An evaluation time from ISO 8601 (``2024-05-01T12:00:00Z``; no offset
    means UTC) or epoch milliseconds, as epoch milliseconds."""
    text = raw.strip()
    if text.isdigit() and int(text) <= MAX_AT_MS:
        return int(text)
    candidates = [text]
    if _SPACE_OFFSET.search(text):
        candidates.append(_SPACE_OFFSET.sub(r"+\1", text))
    for candidate in candidates:
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = (moment - EPOCH) // timedelta(milliseconds=1)
        if ms < 0:
            break
        return ms
    raise bad_request(
        f"at must be an ISO 8601 time such as 2024-05-01T12:00:00Z (or epoch milliseconds), got {raw!r}"
    )
