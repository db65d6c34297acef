"""Reading broken-down metrics: every label's value at window ends, in two
pipelined round trips for a whole tree (the label registries, then every
label's state through ``read_tree``). Labels come in admission order, then
``other``: at most ``max_values + 1`` of them, whatever the events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from streamer.state.evaluate import Value, read_tree
from streamer.state.store import Store
from streamer.windows.breakdown import (
    OTHER,
    OTHER_INDEX,
    REGISTRY,
    BreakdownPlan,
    compile_breakdowns,
)
from streamer.windows.units import Plan, Reader


@dataclass(frozen=True)
class LabelValue:
    label: str
    value: Value


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def admitted(store: Store, breakdowns: Sequence[BreakdownPlan]) -> list[list[tuple[int, str]]]:
    """Per breakdown, its admitted values as (label index, value) in admission order."""
    replies = store.read_raw([("hgetall", bd.unit, REGISTRY) for bd in breakdowns])
    return [sorted((int(_text(i)), _text(v)) for v, i in raw.items()) for raw in replies]


def breakdown_values(
    store: Store, plan: Plan, at_ms: Sequence[int], metrics: Sequence[str] | None = None
) -> list[dict[str, list[LabelValue]]]:
    """For each time in ``at_ms``: metric -> its labels' values (every admitted
    label, then ``other``), for the broken-down metrics of ``plan`` (or those
    of ``metrics``). Raises KeyError for a named metric without a breakdown."""
    compiled = compile_breakdowns(plan)
    names = list(compiled) if metrics is None else list(metrics)
    chosen = [compiled[name] for name in names]
    if not chosen:
        return [{} for _ in at_ms]
    readers: dict[str, Reader] = {}
    labels: dict[str, list[tuple[str, str]]] = {}
    for name, bd, values in zip(names, chosen, admitted(store, chosen), strict=True):
        labels[name] = []
        for index, value in [*values, (OTHER_INDEX, OTHER)]:
            key = f"{name}\x1f{index}"
            readers[key] = bd.label_reader(index)
            labels[name].append((key, value))
    rows = read_tree(store, replace(plan, readers=readers), at_ms)
    return [
        {name: [LabelValue(value, row[key].value) for key, value in pairs] for name, pairs in labels.items()}
        for row in rows
    ]
