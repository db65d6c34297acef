"""Pre-aggregation of a batch per state unit (pure; no I/O).

The Kafka worker and ``northstar replay`` both hand accepted events here and
get, per unit, one compact payload that the unit's Lua script applies in a
single call: per (bucket), per (entity, bucket), per (item, viewer) ... never
per event.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from math import isfinite
from typing import Any

from streamer.events.fields import entity_key, field_reader
from streamer.events.types import Event
from streamer.windows.filters import compile_filter, is_number, names_only
from streamer.windows.units import Unit, days_are_buckets

DAY_MS = 86_400_000
Payload = dict[str, Any]
Memo = dict[tuple[Any, ...], tuple[Sequence[Event], Any]]
"""What the units of one batch share: their per-entity counts of the same
events under the same filter and key (see ``Aggregator.payload``)."""
Counts = dict[str, list[int]]
"""Per entity, its buckets and their events flat: ``[b, c, b, c, ...]``
(buckets in the order first seen), as the scripts' payloads carry them."""
FLAT_FIXED = {"entity": 0, "retention": 0, "pair": 1}
"""Unit kinds whose payload list ``"e"`` is flat, one record after the other:
``key, <fixed fields>, n, v1, ..., vn`` (entity and retention: ``entity, n,
b, c, ...``; pair: ``entity, start or false, n, end, ...``). The scripts
decode one array with no table per record, which costs Redis a third of a
nested ``[[key, [v, ...]], ...]`` (docs/performance.md, proposal 24). The
array travels as MessagePack, which has no null inside an array: ``False``
stands for none (``streamer.state.store.pack``)."""


def unflatten(flat: Sequence[Any], fixed: int = 0) -> list[list[Any]]:
    """The nested view of a flat payload list (``FLAT_FIXED``): ``[[key,
    <fixed fields>, [v1, ..., vn]], ...]`` (tests and profiles read it)."""
    out: list[list[Any]] = []
    i = 0
    while i < len(flat):
        n = flat[i + 1 + fixed]
        out.append([*flat[i : i + 1 + fixed], list(flat[i + 2 + fixed : i + 2 + fixed + n])])
        i += 2 + fixed + n
    return out


def reads_names(unit: Unit) -> frozenset[str] | None:
    """The event names whose events can change ``unit``, or None when any
    event can (a unit that follows group membership reads every event)."""
    if unit.params.get("group"):
        return None
    return frozenset(name for flt in unit.filters.values() for name in flt.event)


class Aggregator:
    """Turns accepted events into a unit's payload."""

    def __init__(self, unit: Unit, resolution_ms: int) -> None:
        self.unit = unit
        self.r = resolution_ms
        self.matchers = {name: compile_filter(flt) for name, flt in unit.filters.items()}
        self._names = {name: names_only(flt) for name, flt in unit.filters.items()}
        """Per filter, its names when a name test is all it does (else None)."""
        self.names = reads_names(unit)
        self._readers: dict[str, Callable[[Event], Any]] = {}
        self._build: Callable[[Sequence[Event], Memo | None], Payload] = getattr(self, "_" + unit.kind)
        self._per_day = bool(unit.params.get("per_day")) and not (
            unit.kind == "entity" and days_are_buckets(unit, resolution_ms)
        )
        """Whether the payload's entities are ``entity\x1fday`` keys (False when
        the script makes them from the bucket, ``days_are_buckets``)."""
        flt = unit.filters.get("f")
        # units whose entity counts are the same function of the same events
        self._counts_key = None if flt is None else (
            json.dumps(flt.model_dump(include={"event", "where"}, mode="json"), sort_keys=True),
            unit.params.get("entity"),
            resolution_ms,
        )

    def payload(self, events: Sequence[Event], memo: Memo | None = None) -> Payload | None:
        """The unit's payload for ``events``, or None when nothing changes.

        ``memo``, a dict the caller keeps for one batch and passes to every
        unit of it, lets units share work: the per-entity counts of the same
        event list (the same object) under the same filter and key are
        computed once (a distinct count and a retention over the same
        events), and per-day counts are derived from them when days are
        whole buckets. The payloads are the same with or without it."""
        return self._build(events, memo)

    # -- helpers
    def _key(self, event: Event, ref: str) -> str | None:
        if ref == "user":
            return event.user or None  # a string: the decoders never make another
        read = self._readers.get(ref)
        if read is None:
            read = self._readers[ref] = field_reader(ref)
        return entity_key(read(event))

    def _entity_of(self, event: Event) -> str | None:
        key = self._key(event, self.unit.params["entity"])
        if key is not None and self.unit.params.get("per_day"):
            return f"{key}\x1f{event.time_ms // DAY_MS}"
        return key

    def _entity_counts(self, events: Sequence[Event], memo: Memo | None) -> Counts:
        """{entity: [bucket, events, ...]} of the matching events (entity and day per
        entity when the payload's entities are per day)."""
        return self._counts(events, memo, self._per_day)

    def _counts(self, events: Sequence[Event], memo: Memo | None, per_day: bool) -> Counts:
        """``_count`` through ``memo``: per-day counts derived from per-entity ones
        when days are whole buckets."""
        if memo is None or self._counts_key is None:
            return self._count(events, per_day)
        key = ("counts", id(events), per_day, *self._counts_key)
        got = memo.get(key)
        if got is None:
            if per_day and DAY_MS % self.r == 0:
                counts = _by_day(self._counts(events, memo, False), self.r)
            else:
                counts = self._count(events, per_day)
            got = memo[key] = (events, counts)  # the events kept alive: their id is in the key
        counts_: Counts = got[1]
        return counts_

    def _count(self, events: Sequence[Event], per_day: bool) -> Counts:
        r = self.r
        ref = self.unit.params["entity"]
        names = self._names["f"]
        counts: Counts = {}
        if names is not None and ref == "user" and not per_day:
            # the usual case, inline: a name test, the user (the decoders only
            # make non-empty strings of users), and most often the bucket of
            # the user's previous event
            for event in events:
                if event.name in names:
                    b = event.time_ms // r
                    flat = counts.get(event.user)
                    if flat is None:
                        counts[event.user] = [b, 1]
                    elif flat[-2] == b:
                        flat[-1] += 1
                    else:
                        _add(flat, b)
            return counts
        match = self.matchers["f"]
        for event in events:
            if not match(event):
                continue
            key = event.user if ref == "user" else self._key(event, ref)
            if key is None:
                continue
            t = event.time_ms
            if per_day:
                key = f"{key}\x1f{t // DAY_MS}"
            b = t // r
            flat = counts.get(key)
            if flat is None:
                counts[key] = [b, 1]
            elif flat[-2] == b:
                flat[-1] += 1
            else:
                _add(flat, b)
        return counts

    def _latest_groups(self, events: Sequence[Event], owner_ref: str, group_ref: str) -> list[list[Any]]:
        latest: dict[str, tuple[int, str]] = {}
        for event in events:
            group = self._key(event, group_ref)
            if group is None:
                continue
            owner = self._key(event, owner_ref)
            if owner is None:
                continue
            seen = latest.get(owner)
            if seen is None or (event.time_ms, group) > seen:
                latest[owner] = (event.time_ms, group)
        return [[owner, t, group] for owner, (t, group) in latest.items()]

    # -- one builder per unit kind
    def _sum(self, events: Sequence[Event], memo: Memo | None) -> Payload | None:
        match = self.matchers["f"]
        prop = self.unit.params["value"]
        entity = self.unit.params.get("entity")
        names = self._names["f"]
        if names is not None and entity is None:
            return self._sum_of_names(events, names, prop)
        totals: dict[int, float] = defaultdict(float)
        for event in events:
            if not match(event):
                continue
            if entity is not None and self._key(event, entity) is None:
                continue
            if prop is None:
                totals[event.time_ms // self.r] += 1
            else:
                value = event.props.get(prop)
                if is_number(value):
                    totals[event.time_ms // self.r] += float(value)
        if not totals:
            return None
        if prop is None:
            return {"int": True, "b": [[b, int(v)] for b, v in totals.items()]}
        return {"int": False, "b": [[b, v] for b, v in totals.items() if v != 0]}

    def _sum_of_names(self, events: Sequence[Event], names: frozenset[str], prop: str | None) -> Payload | None:
        """``_sum`` when a name test is the whole filter and no entity is
        needed (the usual sum), inline: the same payload."""
        r = self.r
        if prop is None:
            counts: dict[int, int] = {}
            get = counts.get
            for event in events:
                if event.name in names:
                    b = event.time_ms // r
                    counts[b] = get(b, 0) + 1
            return {"int": True, "b": [[b, v] for b, v in counts.items()]} if counts else None
        totals: dict[int, float] = {}
        total = totals.get
        for event in events:
            if event.name in names:
                value: Any = event.props.get(prop)
                kind = value.__class__  # is_number, inline: bool is not int
                if kind is int or (kind is float and isfinite(value)):
                    b = event.time_ms // r
                    totals[b] = total(b, 0.0) + value
        return {"int": False, "b": [[b, v] for b, v in totals.items() if v != 0]} if totals else None

    def _hll(self, events: Sequence[Event], memo: Memo | None) -> Payload | None:
        match = self.matchers["f"]
        members: dict[int, set[str]] = defaultdict(set)
        for event in events:
            if match(event):
                key = self._entity_of(event)
                if key is not None:
                    members[event.time_ms // self.r].add(key)
        return {"b": [[b, sorted(keys)] for b, keys in members.items()]} if members else None

    def _entity_ops(self, events: Sequence[Event], memo: Memo | None) -> list[Any]:
        """[entity, n, bucket, count, ..., entity, n, ...] (``FLAT_FIXED``):
        shared through ``memo`` like the counts."""
        key = None if memo is None or self._counts_key is None else (
            "ops", id(events), self._per_day, *self._counts_key
        )
        if key is not None and memo is not None and key in memo:
            ops_: list[Any] = memo[key][1]
            return ops_
        ops: list[Any] = []
        append, extend = ops.append, ops.extend
        for entity, flat in self._entity_counts(events, memo).items():
            append(entity)
            append(len(flat))
            extend(flat)
        if key is not None and memo is not None:
            memo[key] = (events, ops)
        return ops

    def _entity(self, events: Sequence[Event], memo: Memo | None) -> Payload | None:
        ops = self._entity_ops(events, memo)
        group = self.unit.params["group"]
        groups = self._latest_groups(events, self.unit.params["entity"], group[0]) if group else []
        if not (ops or groups):
            return None
        return {"e": ops, "g": groups}

    def _retention(self, events: Sequence[Event], memo: Memo | None) -> Payload | None:
        ops = self._entity_ops(events, memo)
        return {"e": ops} if ops else None

    def _pair(self, events: Sequence[Event], memo: Memo | None) -> Payload | None:
        start, end = self.matchers["start"], self.matchers["end"]
        start_names, end_names = self._names["start"], self._names["end"]
        ref = self.unit.params["entity"]
        firsts: dict[str, int] = {}
        ends: dict[str, list[int]] = {}
        for event in events:
            name = event.name
            is_start = name in start_names if start_names is not None else start(event)
            is_end = name in end_names if end_names is not None else end(event)
            if not (is_start or is_end):
                continue
            key = event.user if ref == "user" else self._key(event, ref)
            if key is None:
                continue
            t = event.time_ms
            if is_start:
                first = firsts.get(key)
                if first is None or t < first:
                    firsts[key] = t
            if is_end:
                got = ends.get(key)
                if got is None:
                    ends[key] = [t]
                else:
                    got.append(t)
        keys = sorted(firsts.keys() | ends.keys())
        if not keys:
            return None
        flat: list[Any] = []
        append, extend = flat.append, flat.extend
        for k in keys:
            got = ends.get(k)
            append(k)
            append(firsts.get(k, False))  # no start: false (MessagePack has no null in an array)
            if got is None:
                append(0)
            else:
                append(len(got))
                extend(got)
        return {"e": flat}

    def _relational(self, events: Sequence[Event], memo: Memo | None) -> Payload | None:
        created, consumed = self.matchers["created_by"], self.matchers["consumed_by"]
        item_ref = self.unit.params["item"]
        shares: dict[str, tuple[int, str]] = {}
        views: dict[tuple[str, str], set[int]] = defaultdict(set)
        for event in events:
            is_created, is_consumed = created(event), consumed(event)
            if not (is_created or is_consumed):
                continue
            item = self._key(event, item_ref)
            if item is None:
                continue
            if is_created:
                seen = shares.get(item)
                if seen is None or (event.time_ms, event.user) < seen:
                    shares[item] = (event.time_ms, event.user)
            if is_consumed:
                views[(item, event.user)].add(event.time_ms // self.r)
        group = self.unit.params["group"]
        groups = self._latest_groups(events, "user", group[0]) if group else []
        if not (shares or views or groups):
            return None
        return {
            "s": [[item, t, user] for item, (t, user) in shares.items()],
            "v": [[item, viewer, sorted(bs)] for (item, viewer), bs in views.items()],
            "g": groups,
        }



def _add(flat: list[int], b: int) -> None:
    """One event in bucket ``b`` of a flat ``[b, c, ...]`` list."""
    for i in range(0, len(flat), 2):
        if flat[i] == b:
            flat[i + 1] += 1
            return
    flat += (b, 1)


def _by_day(counts: Counts, r: int) -> Counts:
    """Per-entity bucket counts as per entity-and-day counts (``"key\x1fday"``),
    for buckets that lie within one UTC day (``DAY_MS % r == 0``)."""
    out: Counts = {}
    for entity, flat in counts.items():
        for i in range(0, len(flat), 2):
            b = flat[i]
            key = f"{entity}\x1f{b * r // DAY_MS}"
            got = out.get(key)
            if got is None:
                out[key] = [b, flat[i + 1]]
            else:
                got += (b, flat[i + 1])
    return out
