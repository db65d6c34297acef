"""Breakdowns: a count, sum or distinct metric split by a low-cardinality
field (``breakdown: {property: prop.platform, max_values: 10}``), pure logic.

A broken-down metric gets a **breakdown unit**: a unit of the same kind as the
metric's own (``sum``, ``entity`` or ``hll``) whose fingerprint also covers the
breakdown. It holds a **label registry** (value -> label index, in admission
order) and, per label, a complete sub-unit of that kind under the key prefix
``b<index>:`` inside the unit's hash tag; index 0 is ``other``. The unit's Lua
scripts are reused unchanged for every label (see docs/state.md §8).

Labels (docs/semantics.md §5): an event's value is its field's key (a
non-empty string, or an integer in decimal) or ``(none)`` when missing or of
another type. The first ``max_values`` distinct values seen are admitted;
``other`` is never a value of its own. Admission is final and the registry
only grows, so a value's label never changes once looked up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import orjson

from streamer.events.fields import Reader, entity_key, field_reader, field_value
from streamer.events.types import Event
from streamer.windows.filters import Predicate, compile_filter, names_only
from streamer.windows.units import DiffCount, HllCount, Plan, Unit, WindowSum

BREAKDOWN_VERSION = 1
"""Bumped when the layout of breakdown state or the labelling rule changes."""

OTHER = "other"
NONE = "(none)"
OTHER_INDEX = 0
REGISTRY = "labels"
"""Suffix of the registry hash: value -> label index (1..max_values)."""

LeafReader = WindowSum | DiffCount | HllCount


@dataclass(frozen=True)
class BreakdownPlan:
    """What one broken-down metric needs: its unit (registry + label
    sub-units) and the reader template applied to each label."""

    metric: str
    unit: Unit
    reader: LeafReader
    property: str
    max_values: int

    def label_unit(self, index: int) -> Unit:
        """The sub-unit of label ``index`` (0 = ``other``): same kind, params
        and hash tag, keys under ``b<index>:``."""
        return replace(self.unit, part=f"b{index}:")

    def label_reader(self, index: int) -> LeafReader:
        return replace(self.reader, unit=self.label_unit(index))


def compile_breakdowns(plan: Plan) -> dict[str, BreakdownPlan]:
    """metric name -> its breakdown, for every metric of ``plan`` with one."""
    out: dict[str, BreakdownPlan] = {}
    for _, metric in plan.tree.metrics():
        if metric.breakdown is None:
            continue
        reader = plan.readers[metric.name]
        kinds = ("sum", "entity", "hll")
        if not isinstance(reader, WindowSum | DiffCount | HllCount) or reader.unit.kind not in kinds:
            raise ValueError(f"metric {metric.name!r}: breakdowns apply to count, sum and distinct only")
        base = reader.unit
        field_ref, cap = metric.breakdown.property, metric.breakdown.max_values
        spec = {"property": field_ref, "max_values": cap}
        identity = {"v": BREAKDOWN_VERSION, "base": base.fingerprint, **spec}
        digest = hashlib.sha1(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()[:10]
        unit = Unit(base.kind, base.tree, {**base.params, "breakdown": spec}, digest, base.filters)
        out[metric.name] = BreakdownPlan(
            metric.name, unit, replace(reader, unit=unit), field_ref, cap
        )
    return out


def label_value(event: Event, ref: str) -> str:
    """The value an event is broken down by: its key under ``ref``, else ``(none)``."""
    return label_of(field_value(event, ref))


def label_of(value: object) -> str:
    """The label of a field's value: its key (``entity_key``), else ``(none)``."""
    key = entity_key(value)
    return NONE if key is None else key


@dataclass
class Labeler:
    """Maps one breakdown's values to label indexes for a worker's batches.

    ``candidates`` lists the batch's values the registry must be asked about;
    ``learn`` records the registry's answer. Answers are final (a value once
    admitted stays admitted; a full registry stays full), so they are cached
    for the life of the process."""

    plan: BreakdownPlan
    known: dict[str, int] = field(default_factory=dict)
    full: bool = False
    match: Predicate = field(init=False)

    def __post_init__(self) -> None:
        self.match = compile_filter(self.plan.unit.filters["f"])
        self._read: Reader = field_reader(self.plan.property)

    def _label(self, event: Event) -> str:
        """``label_value(event, plan.property)``, the field read by a compiled reader."""
        return label_of(self._read(event))

    def values(self, events: Sequence[Event]) -> list[str]:
        """Distinct values of the events the measure reads, in first-seen order."""
        label, match = self._label, self.match
        return list(dict.fromkeys(label(e) for e in events if match(e)))

    def candidates(self, events: Sequence[Event]) -> list[str]:
        """Values of ``events`` whose label is not known yet (none once the registry is full)."""
        if self.full:
            return []
        return [v for v in self.values(events) if v != OTHER and v not in self.known]

    def learn(self, candidates: Sequence[str], indexes: Sequence[int], size: int) -> None:
        for value, index in zip(candidates, indexes, strict=True):
            if index != OTHER_INDEX:
                self.known[value] = index
            elif size < self.plan.max_values:
                raise ValueError(f"registry of {self.plan.metric!r} refused {value!r} with room left")
        # monotonic: two partitions' commits may learn at once, the older answer last
        self.full = self.full or size >= self.plan.max_values

    def index(self, value: str) -> int:
        if value in self.known:
            return self.known[value]
        if value == OTHER or self.full:
            return OTHER_INDEX
        raise KeyError(f"label of {value!r} ({self.plan.metric!r}) was never asked for")

    def split(self, events: Sequence[tuple[int, Event]]) -> dict[int, list[tuple[int, Event]]]:
        """The events the measure reads, per label index (log order kept)."""
        names = names_only(self.plan.unit.filters["f"])
        match, read, index = self.match, self._read, self.index
        out: dict[int, list[tuple[int, Event]]] = {}
        by_text: dict[str, int] = {}  # a non-empty string value -> its index, for this batch
        for pair in events:
            event = pair[1]
            if event.name in names if names is not None else match(event):
                value = read(event)
                if value.__class__ is str and value:  # the usual value: its own label
                    i = by_text.get(value)
                    if i is None:
                        i = by_text[value] = index(value)
                else:
                    i = index(label_of(value))
                got = out.get(i)
                if got is None:
                    out[i] = [pair]
                else:
                    got.append(pair)
        return out
