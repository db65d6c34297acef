"""Compiling a tree into *state units* and *readers*.

A state unit is one piece of Redis state that a batch updates (a windowed sum,
an entity-qualification count, a first-A-then-B pairing, a relational item
graph). Metrics that need the same state share one unit: the unit's key is a
fingerprint of everything that determines its contents, so a changed
definition starts fresh state and never reads stale state.

A reader is a small expression over units that yields a metric's value at a
window end (ratios divide two readers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from streamer.spec.horizon import lateness_horizon
from streamer.spec.model import (
    ConversionMeasure,
    CountMeasure,
    DistinctMeasure,
    EntitiesMeasure,
    EventFilter,
    Measure,
    OwnerGroup,
    PercentileMeasure,
    PerEntityAverageMeasure,
    RatioMeasure,
    RelationalMeasure,
    RetentionMeasure,
    SumMeasure,
    Tree,
    walk_measures,
)

STATE_VERSION = 2
"""Bumped when the layout of state changes, so old state is never misread.
2: entity (distinct) and retention units keep sparse bucket sets or per-day
markers instead of packed bucket counts; insert ids are collected per day."""

PAIR_VERSION = 3
"""The pair unit's (percentile, conversion) own layout, bumped apart from the
others so that their state stays valid. 3: the end times a late start may
claim are kept in one member-ordered sorted set instead of each entity's
packed list (state.md §3)."""

RELATIONAL_VERSION = 3
"""The relational unit's own layout. 3: each viewer's buckets of an item are
a bucket set and the item's viewers per window end a dense run of counts, and
only the window ends a batch changed are re-qualified (state.md §1.2)."""

UNIT_VERSION: dict[str, int] = {"pair": PAIR_VERSION, "relational": RELATIONAL_VERSION}
"""Kinds with a layout version of their own; the others use ``STATE_VERSION``."""

DAY_MS = 86_400_000

UnitKind = Literal["sum", "entity", "hll", "retention", "pair", "relational"]


def _filter_params(flt: EventFilter) -> dict[str, Any]:
    return {
        "event": sorted(flt.event),
        "where": {k: v.model_dump(exclude_none=True, by_alias=True) for k, v in sorted(flt.where.items())},
    }


@dataclass(frozen=True)
class Unit:
    """One piece of state. ``params`` fully determine its contents."""

    kind: UnitKind
    tree: str
    params: dict[str, Any] = field(hash=False, compare=False)
    fingerprint: str = ""
    filters: dict[str, EventFilter] = field(default_factory=dict, hash=False, compare=False)
    part: str = ""
    """Empty for a whole unit; ``"b<i>:"`` for one label of a breakdown
    (streamer/windows/breakdown.py): its keys get this prefix after the tag."""

    @property
    def tag(self) -> str:
        """The Redis Cluster hash tag: every key of the unit lives in one slot."""
        return f"{{{self.tree}:{self.fingerprint}}}"


# ---------------------------------------------------------------- readers


@dataclass(frozen=True)
class WindowSum:
    unit: Unit
    window_buckets: int


@dataclass(frozen=True)
class DiffCount:
    """A value kept as a difference array over window ends (``array`` names which)."""

    unit: Unit
    array: str
    shift_buckets: int = 0


@dataclass(frozen=True)
class HllCount:
    unit: Unit
    window_buckets: int


@dataclass(frozen=True)
class PercentileOf:
    unit: Unit
    q: float


@dataclass(frozen=True)
class Quotient:
    numerator: Reader
    denominator: Reader


Reader = WindowSum | DiffCount | HllCount | PercentileOf | Quotient


def reader_units(reader: Reader) -> Iterator[Unit]:
    """The units a reader reads, both sides of a quotient included."""
    if isinstance(reader, Quotient):
        yield from reader_units(reader.numerator)
        yield from reader_units(reader.denominator)
    else:
        yield reader.unit


@dataclass(frozen=True)
class Plan:
    """What a tree needs: its units (deduplicated) and a reader per metric."""

    tree: Tree
    resolution_ms: int
    horizon_ms: int
    dedupe_ms: int
    units: tuple[Unit, ...]
    readers: dict[str, Reader]

    def buckets(self, seconds: int) -> int:
        return seconds * 1000 // self.resolution_ms


class _Compiler:
    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.resolution_ms = tree.resolution * 1000
        self.horizon_ms = lateness_horizon(tree) * 1000
        self.dedupe_ms = tree.dedupe_horizon * 1000
        self.units: dict[str, Unit] = {}
        self.readers: dict[str, Reader] = {}
        self._compiling: set[str] = set()
        self._sharing = True  # False while compiling a broken-down metric

    def unit(self, kind: UnitKind, params: dict[str, Any], filters: dict[str, EventFilter]) -> Unit:
        identity = {
            "v": UNIT_VERSION.get(kind, STATE_VERSION),
            "kind": kind,
            "tree": self.tree.tree,
            "resolution": self.tree.resolution,
            "horizon": self.horizon_ms,
            "dedupe": self.dedupe_ms,
            "source": self.tree.source.model_dump(mode="json"),
            **params,
        }
        digest = hashlib.sha1(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()[:10]
        if digest not in self.units:
            self.units[digest] = Unit(kind, self.tree.tree, params, digest, filters)
        return self.units[digest]

    def reader(self, measure: Measure, window: int) -> Reader:
        w = window * 1000 // self.resolution_ms
        if isinstance(measure, CountMeasure | SumMeasure):
            value = measure.property if isinstance(measure, SumMeasure) else None
            unit = self.unit("sum", {"filter": _filter_params(measure), "value": value}, {"f": measure})
            return WindowSum(unit, w)
        if isinstance(measure, DistinctMeasure):
            if measure.approximate:
                params = {"filter": _filter_params(measure), "entity": measure.entity, "per_day": measure.per_day}
                return HllCount(self.unit("hll", params, {"f": measure}), w)
            if not measure.per_day:
                return self._distinct(measure, w)
            retention = self._sibling_retention(measure, w) if self._sharing else None
            if retention is not None and self.resolution_ms == DAY_MS:
                return DiffCount(self._retention_unit(retention, w), "d")
            return DiffCount(self._entity_unit(measure, w, 1, True, None), "q")
        if isinstance(measure, EntitiesMeasure):
            group = (measure.group.by, measure.group.min_entities) if measure.group else None
            unit = self._entity_unit(measure, w, measure.min_events, False, group)
            return DiffCount(unit, "g" if group else "q")
        if isinstance(measure, PerEntityAverageMeasure):
            # only events with an entity key count: the average of entities' totals
            total = self.unit(
                "sum",
                {"filter": _filter_params(measure), "value": measure.property, "entity": measure.entity},
                {"f": measure},
            )
            return Quotient(WindowSum(total, w), self._distinct(measure, w))
        if isinstance(measure, RetentionMeasure):
            unit = self._retention_unit(measure, w)
            return Quotient(DiffCount(unit, "r"), DiffCount(unit, "a", shift_buckets=w))
        if isinstance(measure, PercentileMeasure | ConversionMeasure):
            conversion = isinstance(measure, ConversionMeasure)
            params = {
                "entity": measure.entity,
                "start": _filter_params(measure.start),
                "end": _filter_params(measure.end),
                "w": w,
                "mode": "conversion" if conversion else "percentile",
                "k": measure.min_events if isinstance(measure, ConversionMeasure) else 1,
                "within_ms": measure.within * 1000 if isinstance(measure, ConversionMeasure) else None,
            }
            unit = self.unit("pair", params, {"start": measure.start, "end": measure.end})
            if isinstance(measure, ConversionMeasure):
                return Quotient(DiffCount(unit, "v"), DiffCount(unit, "c"))
            return PercentileOf(unit, measure.q)
        if isinstance(measure, RelationalMeasure):
            owners = measure.group or self._relational_group(measure, window)
            params = {
                "item": measure.item,
                "created_by": _filter_params(measure.created_by),
                "consumed_by": _filter_params(measure.consumed_by),
                "min_consumers": measure.min_consumers,
                "w": w,
                "group": [owners.by, owners.min_owners] if owners else None,
            }
            filters = {"created_by": measure.created_by, "consumed_by": measure.consumed_by}
            unit = self.unit("relational", params, filters)
            return DiffCount(unit, {"items": "i", "consumptions": "n", "owners": "o", "groups": "g"}[measure.result])
        if isinstance(measure, RatioMeasure):
            return Quotient(self._side(measure.numerator, window), self._side(measure.denominator, window))
        raise TypeError(f"unsupported measure {measure!r}")

    def _retention_unit(self, measure: RetentionMeasure, w: int) -> Unit:
        params: dict[str, Any] = {"filter": _filter_params(measure), "entity": measure.entity, "w": w}
        if self._per_day_sibling(measure, w):
            params["days"] = True  # it also keeps "d", the entity-days (see reader())
        return self.unit("retention", params, {"f": measure})

    def _sibling_retention(self, measure: EventFilter, w: int) -> RetentionMeasure | None:
        """A retention metric of the tree over the same events and entity and
        with the same window as ``measure``, if there is one."""
        entity = getattr(measure, "entity", "user")
        for _, metric in self.tree.metrics():
            other = metric.measure
            if (
                isinstance(other, RetentionMeasure)
                and other.entity == entity
                and metric.window * 1000 // self.resolution_ms == w
                and _filter_params(other) == _filter_params(measure)
            ):
                return other
        return None

    def _per_day_sibling(self, retention: RetentionMeasure, w: int) -> bool:
        """Whether a per-day distinct count of the tree (inline in a ratio
        too, not broken down) reads its entity-days from this retention's
        unit: same events, entity and window, at a resolution of one day,
        where a bucket is a day and a new bucket of an entity is a new
        (entity, day). The unit then also keeps the difference array ``d``
        (+1 over the window ends a new bucket covers), which is what an
        entity unit in ``day`` mode keeps in ``q``: one script, one hash and
        one field per (entity, day) fewer (state.md §1)."""
        if self.resolution_ms != DAY_MS:
            return False
        for _, metric in self.tree.metrics():
            if metric.breakdown is not None or metric.window * 1000 // self.resolution_ms != w:
                continue
            for m in walk_measures(metric.measure):
                if (
                    isinstance(m, DistinctMeasure)
                    and m.per_day
                    and not m.approximate
                    and m.entity == retention.entity
                    and _filter_params(m) == _filter_params(retention)
                ):
                    return True
        return False

    def _distinct(self, measure: DistinctMeasure | PerEntityAverageMeasure, w: int) -> DiffCount:
        """Distinct entities with an event in the window: the ``q`` array of
        an entity unit, or the ``a`` array of a retention unit of the tree
        over the same events, entity and window. That unit keeps the same
        bucket sets and updates ``a`` as the entity unit updates ``q``
        (state.md §1), so the distinct count reads it there instead of
        keeping a second copy: one script and one hash fewer per batch (the
        education tree's active learners and minutes per learner read its
        retention's unit). Not for a broken-down metric, whose label
        sub-units are entity units."""
        retention = self._sibling_retention(measure, w) if self._sharing else None
        if retention is not None:
            return DiffCount(self._retention_unit(retention, w), "a")
        return DiffCount(self._entity_unit(measure, w, 1, False, None), "q")

    def _relational_group(self, measure: RelationalMeasure, window: int) -> OwnerGroup | None:
        """The group of a grouped relational metric of the tree over the same
        items, events, consumers and window, if there is one: its unit keeps
        the items, consumptions and owners too, so an ungrouped measure reads
        them there instead of keeping a second copy (one script per batch
        instead of two; the learning-users tree's North Star and two of its
        inputs share the unit of its organizations input)."""
        same = (measure.item, measure.created_by, measure.consumed_by, measure.min_consumers)
        groups = [
            other.group
            for _, metric in self.tree.metrics()
            if isinstance(other := metric.measure, RelationalMeasure)
            and other.group is not None
            and metric.window == window
            and (other.item, other.created_by, other.consumed_by, other.min_consumers) == same
        ]
        return min(groups, key=lambda g: (g.by, g.min_owners), default=None)

    def _side(self, side: str | Measure, window: int) -> Reader:
        if not isinstance(side, str):
            return self.reader(side, window)
        return self.metric_reader(side)

    def _entity_unit(
        self, measure: EventFilter, w: int, n: int, per_day: bool, group: tuple[str, int] | None
    ) -> Unit:
        entity = getattr(measure, "entity", "user")
        params = {
            "filter": _filter_params(measure),
            "entity": entity,
            "per_day": per_day,
            "n": n,
            "w": w,
            "group": list(group) if group else None,
        }
        return self.unit("entity", params, {"f": measure})

    def metric_reader(self, name: str) -> Reader:
        if name in self.readers:
            return self.readers[name]
        if name in self._compiling:
            raise ValueError(f"ratio cycle through metric {name!r}")
        self._compiling.add(name)
        metric = self.tree.metric(name)
        sharing, self._sharing = self._sharing, metric.breakdown is None
        try:
            reader = self.reader(metric.measure, metric.window)
        finally:
            self._sharing = sharing
        self._compiling.discard(name)
        self.readers[name] = reader
        return reader


EntityMode = Literal["day", "cover", "counts"]


def entity_mode(unit: Unit, resolution_ms: int) -> EntityMode:
    """Which state an ``entity`` unit keeps (streamer/state/lua/entity.lua):

    - ``day``: distinct per day with a resolution of whole days, so an entity
      key (entity and day) falls in one bucket: a set of keys;
    - ``cover``: distinct entities (``n = 1``, no group): a set of buckets per
      entity, updated from the nearest neighbours of a new bucket;
    - ``counts``: events per bucket per entity (``min_events`` above 1, groups).
    """
    p = unit.params
    if p["n"] != 1 or p["group"]:
        return "counts"
    if p["per_day"] and resolution_ms % DAY_MS == 0:
        return "day"
    return "cover"


def days_are_buckets(unit: Unit, resolution_ms: int) -> bool:
    """Whether a ``day`` mode unit's buckets are its days (a resolution of
    exactly one day): then its payload is the per-entity bucket counts that a
    distinct count or retention over the same events also sends (shared,
    built once per batch), and its script makes each key ``entity\x1fday``
    from the bucket itself."""
    return resolution_ms == DAY_MS and entity_mode(unit, resolution_ms) == "day"


def compile_tree(tree: Tree) -> Plan:
    """The units and readers of every metric of ``tree``."""
    compiler = _Compiler(tree)
    for _, metric in tree.metrics():
        compiler.metric_reader(metric.name)
    return Plan(
        tree=tree,
        resolution_ms=compiler.resolution_ms,
        horizon_ms=compiler.horizon_ms,
        dedupe_ms=compiler.dedupe_ms,
        units=tuple(compiler.units.values()),
        readers=dict(compiler.readers),
    )
