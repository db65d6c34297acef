"""Brute-force reference for docs/semantics.md, straight from the raw event log.

Deliberately independent of the engine (nothing from ``streamer.windows``,
``streamer.state`` or ``streamer.engine*`` is imported): every value is computed
by scanning the accepted events again, the most obvious way the specification
can be read. Speed does not matter here; clarity does.

Public API:

- :func:`ingest` decodes a log for one tree and applies lateness and
  duplicate rules (§2), returning the accepted events and the counts;
- :func:`evaluate` computes every metric of the tree at one time (§1, §3);
- :func:`reference_values` / :func:`reference_counts` combine the two.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from streamer.events.decode import Decoder
from streamer.events.fields import entity_key, field_value
from streamer.events.types import Event, Rejected
from streamer.spec.model import (
    FIELD_PATTERN,
    Condition,
    ConversionMeasure,
    CountMeasure,
    DistinctMeasure,
    EntitiesMeasure,
    EventFilter,
    Guardrail,
    Measure,
    Metric,
    PercentileMeasure,
    PerEntityAverageMeasure,
    RatioMeasure,
    RelationalMeasure,
    RetentionMeasure,
    SumMeasure,
    Tree,
    walk_measures,
)

MS_PER_S = 1000
MS_PER_DAY = 86_400_000
_FIELD_REF = re.compile(FIELD_PATTERN)

Value = float | None


# --------------------------------------------------------------------------- §2 ingestion


@dataclass(frozen=True)
class Ingested:
    """The accepted events of one tree, in log order, and what happened to the rest.

    ``counts`` keys: ``accepted``, ``late``, ``duplicate`` and ``rejected:<reason>``
    (only the keys that occurred)."""

    accepted: tuple[Event, ...]
    counts: dict[str, int]


def horizon_s(tree: Tree) -> int:
    """The lateness horizon ``H`` in seconds, as §2 words it: ``lateness:`` when
    set, else the largest ``lookback + baseline span`` over the tree's metrics,
    ``lookback = w`` (``2w`` with retention), ``baseline span = k·w`` with ``k``
    the guardrail's trailing-average periods and 1 otherwise."""
    if tree.lateness is not None:
        return tree.lateness

    def need(metric: Metric) -> int:
        retention = any(isinstance(m, RetentionMeasure) for m in walk_measures(metric.measure))
        lookback = metric.window * (2 if retention else 1)
        k = 1
        if isinstance(metric, Guardrail) and metric.baseline.kind == "trailing_average":
            k = metric.baseline.periods
        return lookback + k * metric.window

    return max(need(metric) for _, metric in tree.metrics())


def read_names(tree: Tree) -> frozenset[str] | None:
    """The event names some measure of ``tree`` reads: every ``event:`` list
    anywhere in its definition (filters, pair starts and ends, relational
    sides); None (every name) when a measure follows group membership, which
    any event of an entity carries (``latest_key``)."""
    names: set[str] = set()
    every = False

    def walk(node: Any) -> None:
        nonlocal every
        if isinstance(node, EventFilter):
            names.update(node.event)
        if isinstance(node, BaseModel):
            if getattr(node, "group", None) is not None and not isinstance(node, Tree):
                every = True
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    walk(tree)
    return None if every else frozenset(names)


def ingest(lines: Iterable[bytes | str], tree: Tree, now_ms: int) -> Ingested:
    """Decode ``lines`` in order and keep the events §2 accepts for ``tree``.
    An event of a name no measure reads takes part in lateness (it moves the
    watermark) but its insert id is ignored: it is never a duplicate and
    makes none."""
    decoder = Decoder(tree.source)
    reads = read_names(tree)
    horizon_ms = horizon_s(tree) * MS_PER_S
    dedupe_ms = tree.dedupe_horizon * MS_PER_S
    watermark: int | None = None
    # insert id -> event time of the most recent *accepted* event carrying it. Never
    # forgotten: §2 forgets only ids that can no longer match, so keeping them all
    # must give the same answers.
    last_time_by_insert_id: dict[str, int] = {}
    accepted: list[Event] = []
    counts: Counter[str] = Counter()
    for line in lines:
        decoded = decoder.decode(line, now_ms)
        if isinstance(decoded, Rejected):
            counts[f"rejected:{decoded.reason}"] += 1
            continue
        t = decoded.time_ms
        if watermark is not None and t < watermark - horizon_ms:
            counts["late"] += 1
            continue
        if decoded.insert_id is not None and (reads is None or decoded.name in reads):
            t0 = last_time_by_insert_id.get(decoded.insert_id)
            if t0 is not None and abs(t - t0) <= dedupe_ms:
                counts["duplicate"] += 1
                continue
            last_time_by_insert_id[decoded.insert_id] = t
        accepted.append(decoded)
        counts["accepted"] += 1
        watermark = t if watermark is None else max(watermark, t)
    return Ingested(tuple(accepted), dict(counts))


# --------------------------------------------------------------------------- field reading


def _ref(name: str) -> str:
    """A ``property:`` or ``where:`` key as a field reference: a full reference
    (``user``, ``prop.X``, ``group.X``, ``user_prop.X``) stays as it is, a bare
    name ``X`` means the event property ``prop.X``."""
    return name if _FIELD_REF.match(name) else f"prop.{name}"


def key_of(event: Event, ref: str) -> str | None:
    """The entity/item/group key an event carries under ``ref`` (None: it does not count)."""
    return entity_key(field_value(event, ref))


def is_number(value: Any) -> bool:
    """An int or a finite float; booleans are not numbers."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def numeric_property(event: Event, name: str) -> int | float | None:
    value = field_value(event, _ref(name))
    return value if is_number(value) else None


def same_value(a: Any, b: Any) -> bool:
    """``eq``/``in`` equality with types kept apart: booleans only equal booleans,
    strings only strings, numbers (int or float) only numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    return False


def condition_holds(cond: Condition, value: Any) -> bool:
    """All operators given in ``cond`` hold for ``value`` (None: missing or null)."""
    if cond.eq is not None and not same_value(value, cond.eq):
        return False
    if cond.ne is not None and same_value(value, cond.ne):
        return False
    if cond.in_ is not None and not any(same_value(value, x) for x in cond.in_):
        return False
    if cond.not_in is not None and any(same_value(value, x) for x in cond.not_in):
        return False
    bounds = (cond.gt, cond.gte, cond.lt, cond.lte)
    if any(b is not None for b in bounds) and not is_number(value):
        return False
    if cond.gt is not None and not value > cond.gt:
        return False
    if cond.gte is not None and not value >= cond.gte:
        return False
    if cond.lt is not None and not value < cond.lt:
        return False
    if cond.lte is not None and not value <= cond.lte:
        return False
    return cond.exists is None or (value is not None) == cond.exists


def matches(flt: EventFilter, event: Event) -> bool:
    """The event has one of the filter's names and satisfies every ``where`` condition."""
    return event.name in flt.event and all(
        condition_holds(cond, field_value(event, _ref(key))) for key, cond in flt.where.items()
    )


# --------------------------------------------------------------------------- §1 windows


def window_end(at_ms: int, resolution_s: int) -> int:
    """``E = ceil(T / r) * r``."""
    r = resolution_s * MS_PER_S
    return -(-at_ms // r) * r


def percentile(values: Sequence[float], q: float) -> float | None:
    """numpy's default (linear) percentile; None for no values."""
    if not values:
        return None
    x = sorted(values)
    h = (len(x) - 1) * q / 100
    lo = math.floor(h)
    if lo + 1 >= len(x):
        return x[lo]
    return x[lo] + (h - lo) * (x[lo + 1] - x[lo])


# --------------------------------------------------------------------------- §3 measures


class Reference:
    """Evaluates the metrics of one tree over a fixed list of accepted events."""

    def __init__(self, tree: Tree, accepted: Sequence[Event]) -> None:
        self.tree = tree
        self.events = tuple(accepted)
        self._owners: dict[tuple[str, str], dict[str, str]] = {}

    # ----- helpers over all accepted events

    def _in_window(self, flt: EventFilter, lo: int, hi: int) -> list[Event]:
        return [e for e in self.events if lo <= e.time_ms < hi and matches(flt, e)]

    def latest_key(self, who_ref: str, who: str, by: str) -> str | None:
        """``by`` of the latest accepted event (any type, any time) whose ``who_ref``
        key is ``who`` and that carries a ``by`` key; ties: greatest value."""
        best: tuple[int, str] | None = None
        for e in self.events:
            if key_of(e, who_ref) != who:
                continue
            value = key_of(e, by)
            if value is not None and (best is None or (e.time_ms, value) > best):
                best = (e.time_ms, value)
        return None if best is None else best[1]

    def first_starts(self, entity: str, start: EventFilter) -> dict[str, int]:
        """Entity key -> time of its earliest accepted ``start`` event."""
        first: dict[str, int] = {}
        for e in self.events:
            k = key_of(e, entity)
            if k is not None and matches(start, e):
                first[k] = min(first.get(k, e.time_ms), e.time_ms)
        return first

    def end_times(self, entity: str, end: EventFilter) -> dict[str, list[int]]:
        """Entity key -> sorted times of its accepted ``end`` events."""
        times: dict[str, list[int]] = {}
        for e in self.events:
            k = key_of(e, entity)
            if k is not None and matches(end, e):
                times.setdefault(k, []).append(e.time_ms)
        return {k: sorted(v) for k, v in times.items()}

    # ----- metrics

    def metric_value(self, metric: Metric, at_ms: int, _stack: tuple[str, ...] = ()) -> Value:
        if metric.name in _stack:
            raise ValueError(f"ratio cycle through {metric.name}")
        return self.measure_value(metric.measure, metric.window, at_ms, (*_stack, metric.name))

    def values(self, at_ms: int) -> dict[str, Value]:
        return {m.name: self.metric_value(m, at_ms) for _, m in self.tree.metrics()}

    def measure_value(
        self, measure: Measure, window_s: int, at_ms: int, stack: tuple[str, ...] = ()
    ) -> Value:
        end = window_end(at_ms, self.tree.resolution)
        w = window_s * MS_PER_S
        if isinstance(measure, RatioMeasure):
            num = self._side(measure.numerator, window_s, at_ms, stack)
            den = self._side(measure.denominator, window_s, at_ms, stack)
            if num is None or den is None or den == 0:
                return None
            return num / den
        if isinstance(measure, CountMeasure):
            return float(len(self._in_window(measure, end - w, end)))
        if isinstance(measure, SumMeasure):
            nums = [
                numeric_property(e, measure.property)
                for e in self._in_window(measure, end - w, end)
            ]
            return float(sum(v for v in nums if v is not None))
        if isinstance(measure, DistinctMeasure):
            return self._distinct(measure, end - w, end)
        if isinstance(measure, EntitiesMeasure):
            return self._entities(measure, end - w, end)
        if isinstance(measure, PerEntityAverageMeasure):
            return self._per_entity_average(measure, end - w, end)
        if isinstance(measure, RetentionMeasure):
            return self._retention(measure, end, w)
        if isinstance(measure, PercentileMeasure):
            return self._percentile(measure, end, w)
        if isinstance(measure, ConversionMeasure):
            return self._conversion(measure, end, w)
        if isinstance(measure, RelationalMeasure):
            return self._relational(measure, end - w, end)
        raise TypeError(f"unknown measure {measure!r}")

    def _side(
        self, side: str | Measure, window_s: int, at_ms: int, stack: tuple[str, ...]
    ) -> Value:
        # A metric named in a ratio contributes its own value (its own window);
        # an inline measure uses the ratio metric's window.
        if isinstance(side, str):
            return self.metric_value(self.tree.metric(side), at_ms, stack)
        return self.measure_value(side, window_s, at_ms, stack)

    def _keys(self, flt: EventFilter, entity: str, lo: int, hi: int) -> set[str]:
        keys = {key_of(e, entity) for e in self._in_window(flt, lo, hi)}
        return {k for k in keys if k is not None}

    def _distinct(self, m: DistinctMeasure, lo: int, hi: int) -> float:
        pairs: set[tuple[str, int]] = set()
        for e in self._in_window(m, lo, hi):
            k = key_of(e, m.entity)
            if k is not None:
                pairs.add((k, e.time_ms // MS_PER_DAY if m.per_day else 0))
        return float(len(pairs))

    def _entities(self, m: EntitiesMeasure, lo: int, hi: int) -> float:
        per_entity = Counter(key_of(e, m.entity) for e in self._in_window(m, lo, hi))
        qualifying = [k for k, n in per_entity.items() if k is not None and n >= m.min_events]
        if m.group is None:
            return float(len(qualifying))
        per_group = Counter(self.latest_key(m.entity, k, m.group.by) for k in qualifying)
        return float(
            sum(1 for g, n in per_group.items() if g is not None and n >= m.group.min_entities)
        )

    def _per_entity_average(self, m: PerEntityAverageMeasure, lo: int, hi: int) -> Value:
        entities: set[str] = set()
        total: float = 0.0
        for e in self._in_window(m, lo, hi):
            k = key_of(e, m.entity)
            if k is None:
                continue
            entities.add(k)
            if m.property is None:
                total += 1
            else:
                v = numeric_property(e, m.property)
                total += 0 if v is None else v
        return total / len(entities) if entities else None

    def _retention(self, m: RetentionMeasure, end: int, w: int) -> Value:
        previous = self._keys(m, m.entity, end - 2 * w, end - w)
        current = self._keys(m, m.entity, end - w, end)
        return len(previous & current) / len(previous) if previous else None

    def _percentile(self, m: PercentileMeasure, end: int, w: int) -> Value:
        ends = self.end_times(m.entity, m.end)
        durations: list[float] = []
        for k, s in self.first_starts(m.entity, m.start).items():
            if not end - w <= s < end:
                continue
            after = [t for t in ends.get(k, []) if t > s]
            if after and after[0] < end:
                durations.append((after[0] - s) / MS_PER_S)
        return percentile(durations, m.q)

    def _conversion(self, m: ConversionMeasure, end: int, w: int) -> Value:
        ends = self.end_times(m.entity, m.end)
        within = m.within * MS_PER_S
        cohort = converted = 0
        for k, s in self.first_starts(m.entity, m.start).items():
            if not end - w <= s < end:
                continue
            cohort += 1
            inside = [t for t in ends.get(k, []) if s < t <= s + within]
            if len(inside) >= m.min_events and inside[m.min_events - 1] < end:
                converted += 1
        return converted / cohort if cohort else None

    def owners(self, m: RelationalMeasure) -> dict[str, str]:
        """Item -> user of its earliest accepted ``created_by`` event (ties: smallest
        user), whatever its time. Cached: it does not depend on the window."""
        cache_key = (m.item, m.created_by.model_dump_json())
        if cache_key not in self._owners:
            first: dict[str, tuple[int, str]] = {}
            for e in self.events:
                item = key_of(e, m.item)
                if item is not None and matches(m.created_by, e):
                    candidate = (e.time_ms, e.user)
                    first[item] = min(first.get(item, candidate), candidate)
            self._owners[cache_key] = {item: user for item, (_, user) in first.items()}
        return self._owners[cache_key]

    def _relational(self, m: RelationalMeasure, lo: int, hi: int) -> float:
        viewers: dict[str, set[str]] = {}
        for e in self._in_window(m.consumed_by, lo, hi):
            item = key_of(e, m.item)
            if item is not None:
                viewers.setdefault(item, set()).add(e.user)
        broadcast: dict[str, int] = {}  # item -> consumers
        owners: set[str] = set()
        owner_of = self.owners(m)
        for item, users in viewers.items():
            owner = owner_of.get(item)
            if owner is None:
                continue
            consumers = len(users - {owner})
            if consumers >= m.min_consumers:
                broadcast[item] = consumers
                owners.add(owner)
        if m.result == "items":
            return float(len(broadcast))
        if m.result == "consumptions":
            return float(sum(broadcast.values()))
        if m.result == "owners":
            return float(len(owners))
        assert m.group is not None
        per_group = Counter(self.latest_key("user", o, m.group.by) for o in owners)
        return float(
            sum(1 for g, n in per_group.items() if g is not None and n >= m.group.min_owners)
        )


# --------------------------------------------------------------------------- entry points


def evaluate(tree: Tree, accepted: Sequence[Event], at_ms: int) -> dict[str, Value]:
    """Every metric of ``tree`` (by name) at time ``at_ms`` over the accepted events."""
    return Reference(tree, accepted).values(at_ms)


def reference_values(
    lines: Sequence[bytes], tree: Tree, at_ms: int, now_ms: int
) -> dict[str, Value]:
    """Every metric of ``tree`` at ``at_ms``, processing ``lines`` with clock ``now_ms``."""
    return evaluate(tree, ingest(lines, tree, now_ms).accepted, at_ms)


def reference_counts(lines: Sequence[bytes], tree: Tree, now_ms: int) -> dict[str, int]:
    """How many lines were accepted, late, duplicate and rejected (``rejected:<reason>``)."""
    return ingest(lines, tree, now_ms).counts


def is_approximate(tree: Tree, metric: Metric, _seen: frozenset[str] = frozenset()) -> bool:
    """The metric's value depends on a HyperLogLog (``approximate: true``) count."""
    for m in walk_measures(metric.measure):
        if isinstance(m, DistinctMeasure) and m.approximate:
            return True
        if isinstance(m, RatioMeasure):
            for side in (m.numerator, m.denominator):
                if (
                    isinstance(side, str)
                    and side not in _seen
                    and is_approximate(tree, tree.metric(side), _seen | {metric.name})
                ):
                    return True
    return False


# --------------------------------------------------------------------------- §5 breakdowns

BREAKDOWN_OTHER = "other"
BREAKDOWN_NONE = "(none)"
BREAKDOWN_KINDS = (CountMeasure, SumMeasure, DistinctMeasure)


def breakdown_value(event: Event, ref: str) -> str:
    """The value §5 breaks an event down by: its key under ``ref``, else ``(none)``."""
    key = key_of(event, ref)
    return BREAKDOWN_NONE if key is None else key


def seen_events(lines: Iterable[bytes | str], tree: Tree, now_ms: int) -> list[Event]:
    """Every event that passes decoding (§2 step 1), in log order, whatever its
    lateness or duplicate verdict: the events whose values a breakdown sees."""
    decoder = Decoder(tree.source)
    return [e for e in (decoder.decode(line, now_ms) for line in lines) if isinstance(e, Event)]


def first_values(metric: Metric, seen: Sequence[Event]) -> list[str]:
    """The values a breakdown admits: the first ``max_values`` distinct values
    (never ``other``) of the seen events matching the measure's filter."""
    assert metric.breakdown is not None and isinstance(metric.measure, BREAKDOWN_KINDS)
    out: list[str] = []
    for e in seen:
        if len(out) == metric.breakdown.max_values:
            break
        if matches(metric.measure, e):
            value = breakdown_value(e, metric.breakdown.property)
            if value != BREAKDOWN_OTHER and value not in out:
                out.append(value)
    return out


def breakdown_values(
    tree: Tree, metric: Metric, accepted: Sequence[Event], admitted: Sequence[str], at_ms: int
) -> list[tuple[str, Value]]:
    """(label, value) for every admitted value in order, then ``other``: the
    measure over the accepted events carrying that label."""
    assert metric.breakdown is not None
    ref = metric.breakdown.property

    def label(e: Event) -> str:
        value = breakdown_value(e, ref)
        return value if value in admitted else BREAKDOWN_OTHER

    out = []
    for name in [*admitted, BREAKDOWN_OTHER]:
        subset = [e for e in accepted if label(e) == name]
        out.append((name, Reference(tree, subset).metric_value(metric, at_ms)))
    return out
