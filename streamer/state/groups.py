"""Per-group values of grouped metrics (e.g. weekly learning users per
organization): served by the API for customer-facing teams, never exported
as Prometheus labels (unbounded)."""

from __future__ import annotations

from typing import Any

from streamer.state.evaluate import window_end
from streamer.state.store import Store
from streamer.windows.units import DiffCount, Plan

# unit kind -> hash of group -> packed {window end: qualifying members}
_GROUP_HASH = {"entity": "gc", "relational": "gq"}


def grouped(plan: Plan, metric: str) -> bool:
    """Whether ``metric`` counts groups, so that per-group values exist."""
    reader = plan.readers.get(metric)
    return isinstance(reader, DiffCount) and reader.array == "g" and reader.unit.kind in _GROUP_HASH


def group_values(store: Store, plan: Plan, metric: str, at_ms: int) -> dict[str, int]:
    """For a grouped metric: every group's number of qualifying members
    (entities, or owners for relational measures) in the window at ``at_ms``;
    groups with none are left out. Raises KeyError for other metrics."""
    reader = plan.readers.get(metric)
    if not grouped(plan, metric):
        raise KeyError(f"metric {metric!r} of tree {plan.tree.tree!r} has no groups")
    assert isinstance(reader, DiffCount)
    e = window_end(at_ms, plan.resolution_ms)
    raw: dict[Any, Any] = store.client.hgetall(store.keys.unit(reader.unit, _GROUP_HASH[reader.unit.kind]))
    out: dict[str, int] = {}
    for group, packed in raw.items():
        name = group.decode() if isinstance(group, bytes) else str(group)
        text = packed.decode() if isinstance(packed, bytes) else str(packed)
        parts = text.split(",") if text else []
        counts = {int(parts[i]): int(parts[i + 1]) for i in range(0, len(parts) - 1, 2)}
        if counts.get(e, 0) > 0:
            out[name] = counts[e]
    return dict(sorted(out.items()))
