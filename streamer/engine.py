"""The batch path shared by the Kafka worker and ``northstar replay``:
decode -> lateness/duplicate verdicts -> pre-aggregate per unit -> apply.

Two Redis round trips per batch whatever its size: one for verdicts and the
units' applied offsets, one for every unit's apply (plus the watermarks).
Each unit only receives events after its own applied offset, and its apply
checks that offset atomically, so a re-delivered batch changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.events.decode import Decoder
from streamer.events.types import Event, Rejected
from streamer.spec.model import Tree
from streamer.state.store import Store
from streamer.windows.aggregate import Aggregator
from streamer.windows.units import Plan, Unit, compile_tree, entity_mode

MAX_CAS_RETRIES = 5


class EngineError(Exception):
    """Base of the engine's errors."""


@dataclass
class BatchResult:
    """What one batch did. ``counts`` keys: ``accepted:<tree>``, ``late:<tree>``,
    ``duplicate:<tree>`` and ``rejected:<reason>``."""

    counts: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[int, Rejected]] = field(default_factory=list)


def unit_params(unit: Unit, plan: Plan) -> dict[str, Any]:
    """The parameters a unit's Lua script needs (beyond its payload)."""
    p = unit.params
    if unit.kind == "entity":
        mode = entity_mode(unit, plan.resolution_ms)
        return {"w": p["w"], "n": p["n"], "m": p["group"][1] if p["group"] else None, "mode": mode}
    if unit.kind == "retention":
        return {"w": p["w"]}
    if unit.kind == "pair":
        return {"w": p["w"], "r": plan.resolution_ms, "mode": p["mode"], "k": p["k"], "within": p["within_ms"]}
    if unit.kind == "relational":
        return {"w": p["w"], "m": p["min_consumers"], "gm": p["group"][1] if p["group"] else None}
    return {}


class _TreeState:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.decoder = Decoder(plan.tree.source)
        self.aggregators = [Aggregator(u, plan.resolution_ms) for u in plan.units]
        self.params = [unit_params(u, plan) for u in plan.units]


class BatchApplier:
    """Applies batches of raw events for a set of trees to a Store."""

    def __init__(self, store: Store, trees: Sequence[Tree]) -> None:
        self.store = store
        self.trees = [_TreeState(compile_tree(t)) for t in trees]
        self.units = [u for ts in self.trees for u in ts.plan.units]

    @property
    def plans(self) -> list[Plan]:
        return [ts.plan for ts in self.trees]

    def apply(self, partition: str, records: Sequence[tuple[int, bytes]], now_ms: int) -> BatchResult:
        """Apply ``records`` ((offset, raw event), offsets increasing) of ``partition``."""
        result = BatchResult()
        if not records:
            return result
        decoded: list[list[tuple[int, Event]]] = []
        for ts in self.trees:
            events: list[tuple[int, Event]] = []
            for offset, raw in records:
                out = ts.decoder.decode(raw, now_ms)
                if isinstance(out, Event):
                    events.append((offset, out))
                elif ts is self.trees[0]:
                    result.counts["rejected:" + out.reason] += 1
                    result.rejected.append((offset, out))
            decoded.append(events)

        requests = [
            (
                ts.plan.tree.tree,
                ts.plan.horizon_ms,
                ts.plan.dedupe_ms,
                [[ev.insert_id or "", ev.time_ms, off] for off, ev in events],
            )
            for ts, events in zip(self.trees, decoded, strict=True)
        ]
        verdicts, offsets = self.store.verdicts_and_offsets(requests, partition, self.units)

        accepted: list[list[tuple[int, Event]]] = []
        watermarks: list[tuple[str, int]] = []
        for ts, events, (text, stored_wm) in zip(self.trees, decoded, verdicts, strict=True):
            name = ts.plan.tree.tree
            kept = [pair for pair, v in zip(events, text, strict=True) if v == "a"]
            result.counts["accepted:" + name] += len(kept)
            result.counts["late:" + name] += text.count("l")
            result.counts["duplicate:" + name] += text.count("d")
            accepted.append(kept)
            wm = max((ev.time_ms for _, ev in kept), default=None)
            if wm is not None and (stored_wm is None or wm > stored_wm):
                watermarks.append((name, wm))

        last = records[-1][0]
        pending = list(range(len(self.units)))
        for _ in range(MAX_CAS_RETRIES):
            calls = []
            index = 0
            call_units: list[int] = []
            for ts, kept in zip(self.trees, accepted, strict=True):
                for agg, params in zip(ts.aggregators, ts.params, strict=True):
                    if index in pending and offsets[index] < last:
                        fresh = [ev for off, ev in kept if off > offsets[index]]
                        payload = agg.payload(fresh) or {}
                        calls.append((agg.unit, offsets[index], last, _complete(agg.unit, payload), params))
                        call_units.append(index)
                    index += 1
            ok = self.store.apply(calls, partition, watermarks)
            pending = [i for i, good in zip(call_units, ok, strict=True) if not good]
            if not pending:
                return result
            fresh_offsets = self.store.applied_offsets([self.units[i] for i in pending], partition)
            for i, off in zip(pending, fresh_offsets, strict=True):
                offsets[i] = off
        raise EngineError(f"units kept changing under us in partition {partition}: {pending}")


_EMPTY: dict[str, dict[str, Any]] = {
    "sum": {"b": [], "int": True},
    "hll": {"b": []},
    "entity": {"e": [], "g": []},
    "retention": {"e": []},
    "pair": {"e": []},
    "relational": {"s": [], "v": [], "g": []},
}


def _complete(unit: Unit, payload: dict[str, Any]) -> dict[str, Any]:
    """Fill absent payload parts: a unit with nothing to add still records its offset."""
    return {**_EMPTY[unit.kind], **payload}
