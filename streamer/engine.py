"""The batch path shared by the Kafka worker and ``northstar replay``:
decode -> lateness/duplicate verdicts -> pre-aggregate per unit -> apply.

Two Redis round trips per batch whatever its size: one for verdicts and the
units' applied offsets, one for every unit's apply (plus the watermarks).
Each unit only receives events after its own applied offset, and its apply
checks that offset atomically, so a re-delivered batch changes nothing.

``BatchApplier.prepare`` (decode, verdict requests, breakdown values to
admit; CPU only), ``BatchApplier.judge`` (round trip 1) and
``BatchApplier.apply_judged`` (the pre-aggregation, which needs the
verdicts, and round trip 2) are separate steps, ``commit`` the last two in
a row: a worker's lane prepares batch k+2 and judges batch k+1 while batch
k applies (``Progress`` carries what its applies set); with a ``Courtesy``
(streamer/courtesy.py), ``prepare`` waits while a judge or an apply runs
its Python.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson

from streamer.courtesy import Courtesy
from streamer.events.decode import Decoder
from streamer.events.types import Event, Rejected
from streamer.spec.model import Tree
from streamer.state.expiry import Refresher
from streamer.state.store import Store, backfill_field
from streamer.windows.aggregate import Aggregator, Memo, reads_names
from streamer.windows.breakdown import REGISTRY, Labeler, compile_breakdowns
from streamer.windows.units import Plan, Unit, compile_tree, days_are_buckets, entity_mode

MAX_CAS_RETRIES = 5
PREPARE_CHUNK = 2_000
"""Records decoded between two ``Courtesy.defer`` calls of ``prepare``."""
PAIR_INLINE_ENDS = 16
"""A pair entity keeps up to this many claimable end times in its own hash
field; beyond, in the unit's sorted set (state.md §7)."""
PAIR_APPEND = True
"""The pair script appends the ends of an entity with no known start to its
field without parsing it when it can (state.md §7); False only in the test
that checks this path leaves the state the general one does."""
DAY_MS = 86_400_000  # the verdict script's insert-id lists are per UTC day


class EngineError(Exception):
    """Base of the engine's errors."""


@dataclass
class BatchResult:
    """What one batch did. ``counts`` keys: ``accepted:<tree>``, ``late:<tree>``,
    ``duplicate:<tree>`` and ``rejected:<reason>``."""

    counts: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[int, Rejected]] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds ``commit`` spent per stage: ``verdicts`` (round trip 1),
    ``aggregate`` (the Python between and around the round trips: verdicts
    read, pre-aggregation, the apply built) and ``apply`` (round trip 2, and
    any retry after a conflict)."""


def unit_params(unit: Unit, plan: Plan) -> dict[str, Any]:
    """The parameters a unit's Lua script needs (beyond its payload)."""
    p = unit.params
    if unit.kind == "entity":
        mode = entity_mode(unit, plan.resolution_ms)
        params = {"w": p["w"], "n": p["n"], "m": p["group"][1] if p["group"] else None, "mode": mode}
        if days_are_buckets(unit, plan.resolution_ms):
            params["split"] = 1  # "e" holds per-entity ops: the script appends the day
        return params
    if unit.kind == "retention":
        return {"w": p["w"], "days": 1} if p.get("days") else {"w": p["w"]}
    if unit.kind == "pair":
        return {"w": p["w"], "r": plan.resolution_ms, "mode": p["mode"], "k": p["k"], "within": p["within_ms"],
                "inline": PAIR_INLINE_ENDS, "append": PAIR_APPEND}
    if unit.kind == "relational":
        return {"w": p["w"], "m": p["min_consumers"], "gm": p["group"][1] if p["group"] else None}
    return {}


@dataclass(frozen=True)
class Backfill:
    """Apply a batch as a backfill (streamer/backfill.py): only to the units
    in ``limits`` (unit index -> last offset of the partition that is missing
    from it), each up to its limit, guarded by its own backfill offset
    instead of the live one. Breakdown labels are not backfilled."""

    limits: dict[int, int]


class _Reads:
    """A batch's events (one tree's, in log order) by the set of event names
    a reader reads, so that each unit's aggregator only walks the events it
    can read: one pass groups the batch by name, a set of one name is then a
    lookup, a larger set one more pass; each set's list is made once per
    batch, and so is its list of bare events."""

    def __init__(self, events: list[tuple[int, Event]]) -> None:
        self.events = events
        self._by_name: dict[str, list[tuple[int, Event]]] | None = None
        self._selected: dict[frozenset[str], list[tuple[int, Event]]] = {}
        self._bare: dict[int, list[Event]] = {}

    def select(self, names: frozenset[str] | None) -> list[tuple[int, Event]]:
        """The events named in ``names`` (all when None), in log order."""
        if names is None:
            return self.events
        selected = self._selected.get(names)
        if selected is None:
            by_name = self._by_name
            if by_name is None:
                by_name = self._by_name = {}
                get = by_name.get
                for pair in self.events:
                    name = pair[1].name
                    got = get(name)
                    if got is None:
                        by_name[name] = [pair]
                    else:
                        got.append(pair)
            present = [by_name[name] for name in names if name in by_name]
            if len(present) <= 1:
                selected = present[0] if present else []
            else:  # the names' lists merged back into log order (offsets are unique)
                selected = sorted(chain.from_iterable(present))
            self._selected[names] = selected
        return selected

    def bare(self, selected: list[tuple[int, Event]]) -> list[Event]:
        """``selected`` (a list ``select`` returned) without the offsets."""
        bare = self._bare.get(id(selected))
        if bare is None:
            bare = self._bare[id(selected)] = [ev for _, ev in selected]
        return bare


@dataclass
class _Target:
    """One unit (or one breakdown label's sub-unit) a batch may apply to."""

    unit: Unit
    aggregator: Aggregator
    params: dict[str, Any]
    events: list[tuple[int, Event]]
    offset: int
    end: int  # last offset this batch may apply to the target
    always: bool  # a whole unit records its offset even with nothing to add
    bare: list[Event] | None = None  # ``events`` without offsets, when shared

    def fresh(self) -> list[Event]:
        events = self.events
        if events and self.offset < events[0][0] and events[-1][0] <= self.end:
            # the usual case: the whole batch
            return self.bare if self.bare is not None else [ev for _, ev in events]
        return [ev for off, ev in events if self.offset < off <= self.end]

    def due(self) -> bool:
        return self.offset < self.end and (
            self.always or any(self.offset < off <= self.end for off, _ in self.events)
        )


class _Breakdown:
    """A broken-down metric's unit on the write path: its labeler and the
    aggregator shared by its label sub-units."""

    def __init__(self, labeler: Labeler, plan: Plan) -> None:
        self.labeler = labeler
        self.aggregator = Aggregator(labeler.plan.unit, plan.resolution_ms)
        self.params = unit_params(labeler.plan.unit, plan)


class _TreeState:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.decoder = Decoder(plan.tree.source)
        self.aggregators = [Aggregator(u, plan.resolution_ms) for u in plan.units]
        self.params = [unit_params(u, plan) for u in plan.units]
        unique = {b.unit.fingerprint: b for b in compile_breakdowns(plan).values()}
        self.breakdowns = [_Breakdown(Labeler(b), plan) for b in unique.values()]
        self.reads = tree_reads([*plan.units, *(b.unit for b in unique.values())])
        """The event names some unit of the tree reads (None: every name):
        the insert ids of other events are not checked nor recorded
        (docs/semantics.md §2)."""


def tree_reads(units: Sequence[Unit]) -> frozenset[str] | None:
    """The union of the units' ``reads_names`` (None when one reads every event)."""
    names: set[str] = set()
    for unit in units:
        got = reads_names(unit)
        if got is None:
            return None
        names |= got
    return frozenset(names)


@dataclass
class PreparedBatch:
    """A batch after ``BatchApplier.prepare``: what ``commit`` needs besides Redis."""

    first: int
    last: int
    decoded: list[list[tuple[int, Event]]]  # per tree: (offset, event)
    requests: list[tuple[str, int, int, list[Any]]]  # per tree: what the verdict script reads (flat events)
    admissions: list[tuple[_Breakdown, list[str]]]  # breakdown values to ask the registries about
    backfill: Backfill | None
    result: BatchResult  # the rejections


@dataclass
class Judged:
    """A prepared batch after round trip 1 (``BatchApplier.judge``): what its
    apply needs."""

    result: BatchResult  # counts and rejections; ``stages``: round trip 1 and its Python
    accepted: list[list[tuple[int, Event]]]  # per tree
    spans: list[tuple[int, int] | None]  # per tree: its accepted events' first and last time
    marks: list[tuple[str, int, int | None]]  # (tree, greatest accepted time, stored watermark read)
    floors: dict[str, int | None]  # per tree: the pair unit's floor
    offsets: list[int]  # per unit: its applied offset, as read
    label_offsets: dict[str, list[int]]  # per breakdown: its labels' applied offsets, as read


@dataclass
class Progress:
    """What one partition's applies left in Redis, as its lane knows it: each
    unit's applied offset and each tree's watermark after the lane's last
    successful apply. Batch k+1 is judged while batch k applies, so the
    offsets and watermark read with its verdicts may predate k's apply; the
    apply of k+1 takes the greater of both (a wrong guess only costs a CAS
    retry: every apply checks its unit's offset)."""

    offsets: dict[Unit, int] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)


class BatchApplier:
    """Applies batches of raw events for a set of trees to a Store.

    ``apply`` is ``commit(prepare(...))``: ``prepare`` is pure CPU, ``commit``
    does the Redis round trips, so that the worker prepares a batch while
    Redis applies the previous one (docs/worker.md, "The batch pipeline").
    ``prepare`` and ``commit`` may run in threads, one batch of a partition
    at a time in ``commit``, several partitions side by side."""

    def __init__(self, store: Store, trees: Sequence[Tree], *, refresher: Refresher | None = None) -> None:
        self.store = store
        self.trees = [_TreeState(compile_tree(t)) for t in trees]
        self.units = [u for ts in self.trees for u in ts.plan.units]
        self.refresher = refresher
        self.courtesy: Courtesy | None = None
        """When set, ``prepare`` defers to commits' Python (streamer/courtesy.py)."""

    @property
    def plans(self) -> list[Plan]:
        return [ts.plan for ts in self.trees]

    def apply(
        self,
        partition: str,
        records: Sequence[tuple[int, bytes]],
        now_ms: int,
        backfill: Backfill | None = None,
    ) -> BatchResult:
        """Apply ``records`` ((offset, raw event), offsets increasing) of ``partition``:
        ``commit(partition, prepare(records, now_ms, backfill))``.

        A unit that never applied in ``partition`` records where its history
        there starts (``born``), so that a backfill knows what it misses."""
        if not records:
            return BatchResult()
        return self.commit(partition, self.prepare(records, now_ms, backfill))

    def prepare(
        self,
        records: Sequence[tuple[int, bytes]],
        now_ms: int,
        backfill: Backfill | None = None,
    ) -> PreparedBatch:
        """The CPU-only part of a batch (``records`` non-empty, offsets
        increasing): decode for every tree, the verdict requests, the breakdown
        values to ask the registries about; no I/O, and nothing another
        partition's ``commit`` running meanwhile could invalidate."""
        result = BatchResult()
        decoded: list[list[tuple[int, Event]]] = []
        raws = [raw for _, raw in records]
        courtesy = self.courtesy
        for ts in self.trees:
            events: list[tuple[int, Event]] = []
            if courtesy is None:
                outs = ts.decoder.decode_batch(raws, now_ms)
            else:
                outs = []
                for start in range(0, len(raws), PREPARE_CHUNK):
                    courtesy.defer()
                    outs += ts.decoder.decode_batch(raws[start : start + PREPARE_CHUNK], now_ms)
                courtesy.defer()
            for (offset, _), out in zip(records, outs, strict=True):
                if type(out) is Event:
                    events.append((offset, out))
                elif ts is self.trees[0] and isinstance(out, Rejected):
                    result.counts["rejected:" + out.reason] += 1
                    result.rejected.append((offset, out))
            decoded.append(events)

        requests: list[tuple[str, int, int, list[Any]]] = []
        for ts, events in zip(self.trees, decoded, strict=True):
            flat: list[Any] = []  # store.verdict_events's layout, built in place
            names = ts.reads
            if names is None:
                for off, ev in events:
                    flat += (ev.insert_id or "", ev.time_ms, off)
            else:  # an event no unit reads is judged late or not, but never a duplicate
                for off, ev in events:
                    flat += (ev.insert_id or "" if ev.name in names else "", ev.time_ms, off)
            requests.append((ts.plan.tree.tree, ts.plan.horizon_ms, ts.plan.dedupe_ms, flat))
        # breakdowns: admit the batch's new values in the first round trip. A
        # value learnt meanwhile (by the previous batch's commit) is asked
        # again: the registry answers the same index
        admissions: list[tuple[_Breakdown, list[str]]] = []
        for ts, events in zip(self.trees, decoded, strict=True):
            reads = _Reads(events)
            for bd in ts.breakdowns if backfill is None else ():
                selected = reads.select(bd.aggregator.names)
                admissions.append((bd, bd.labeler.candidates(reads.bare(selected))))
        return PreparedBatch(records[0][0], records[-1][0], decoded, requests, admissions, backfill, result)

    def commit(self, partition: str, batch: PreparedBatch) -> BatchResult:
        """The Redis part of a prepared batch of ``partition``: ``judge`` (round
        trip 1) then ``apply_judged`` (round trip 2). Batches of one partition
        must be committed in offset order, one at a time; committing a batch
        again (after a Redis error, or re-delivered) is safe."""
        return self.apply_judged(partition, batch, self.judge(partition, batch))

    def judge(self, partition: str, batch: PreparedBatch) -> Judged:
        """Round trip 1 of a prepared batch: verdicts, applied offsets and label
        admissions; then the accepted events. Batch k+1 of a partition may be
        judged while batch k applies (``apply_judged``), after k was judged:
        the verdict script keeps the watermark it judges by itself, and the
        offsets and watermark read here may predate k's apply (``Progress``)."""
        # a copy: a commit retried after a Redis error must not count twice
        result = BatchResult(Counter(batch.result.counts), list(batch.result.rejected))
        started = time.perf_counter()
        decoded, admissions, backfill = batch.decoded, batch.admissions, batch.backfill
        scripts = [
            ("labels", self.store.keys.unit(bd.labeler.plan.unit, REGISTRY),
             [partition, bd.labeler.plan.max_values, orjson.dumps(values)])
            for bd, values in admissions
        ]
        field = backfill_field(partition) if backfill is not None else None
        verdicts, offsets, labelled = self.store.first_round_trip(
            batch.requests, partition, self.units, scripts, field
        )
        verdicts_done = time.perf_counter()
        urgent = self.courtesy
        if urgent is not None:
            urgent.enter()
        try:
            label_offsets: dict[str, list[int]] = {}
            for (bd, values), (indexes, size, stored) in zip(admissions, labelled, strict=True):
                bd.labeler.learn(values, [int(i) for i in indexes], int(size))
                label_offsets[bd.labeler.plan.unit.fingerprint] = [int(v) if v else -1 for v in stored]

            accepted: list[list[tuple[int, Event]]] = []
            spans: list[tuple[int, int] | None] = []  # per tree: its accepted events' first and last time
            marks: list[tuple[str, int, int | None]] = []
            floors: dict[str, int | None] = {}
            for ts, events, (text, stored_wm, lowest_wm) in zip(self.trees, decoded, verdicts, strict=True):
                name = ts.plan.tree.tree
                # no start earlier than this can be accepted any more, in any partition
                # with a watermark (a backfill's scratch watermarks do not bound the
                # live ones: it forgets nothing)
                floors[name] = None if lowest_wm is None or backfill is not None else lowest_wm - ts.plan.horizon_ms
                if len(text) != len(events):
                    raise EngineError(f"{len(text)} verdicts for {len(events)} events in partition {partition}")
                late, duplicates = text.count("l"), text.count("d")
                if late or duplicates:
                    kept = [pair for pair, v in zip(events, text, strict=True) if v == "a"]
                else:
                    kept = events  # the usual batch: every event accepted
                result.counts["accepted:" + name] += len(kept)
                result.counts["late:" + name] += late
                result.counts["duplicate:" + name] += duplicates
                accepted.append(kept)
                times = [ev.time_ms for _, ev in kept]
                if not times:
                    spans.append(None)
                    continue
                wm = max(times)
                spans.append((min(times), wm))
                marks.append((name, wm, stored_wm))
        finally:
            if urgent is not None:
                urgent.leave()
        result.stages = {"verdicts": verdicts_done - started, "aggregate": time.perf_counter() - verdicts_done}
        return Judged(result, accepted, spans, marks, floors, offsets, label_offsets)

    def apply_judged(
        self, partition: str, batch: PreparedBatch, judged: Judged, progress: Progress | None = None
    ) -> BatchResult:
        """Round trip 2 of a judged batch: every unit's apply (with the
        watermarks), after the pre-aggregation; more round trips only on CAS
        conflicts. ``progress``: what this partition's previous applies left
        (the lane's), when the batch was judged before they returned."""
        result = judged.result
        started = time.perf_counter()
        waited = 0.0  # in round trips
        backfill = batch.backfill
        field = backfill_field(partition) if backfill is not None else None
        # the Python from here until the apply is sent is the lane's chain: it goes first
        urgent = self.courtesy
        if urgent is not None:
            urgent.enter()
        try:
            known = progress.offsets if progress is not None else {}
            watermarks: list[tuple[str, int]] = []
            for name, wm, stored_wm in judged.marks:
                before = progress.watermarks.get(name) if progress is not None else None
                if before is None or (stored_wm is not None and stored_wm > before):
                    before = stored_wm
                if before is None or wm > before:
                    watermarks.append((name, wm))
            last = batch.last
            targets = self._targets(judged.accepted, judged.offsets, judged.label_offsets, last, backfill, known)
            extra = self._refresh_extra(partition, judged.spans, batch.admissions, backfill)
            pending = [t for t in targets if t.due()]
            applied: list[_Target] = []  # over every round
            for _ in range(MAX_CAS_RETRIES):
                calls = []
                memo: Memo = {}  # units over the same events share their counts
                for t in pending:
                    payload = t.aggregator.payload(t.fresh(), memo) or {}
                    params = t.params if t.unit.kind != "pair" else {**t.params, "floor": judged.floors[t.unit.tree]}
                    calls.append((t.unit, t.offset, t.end, _complete(t.unit, payload), params))
                born = [] if backfill is not None else [
                    (t.unit, batch.first - 1) for t in pending if t.always and t.offset == -1
                ]
                expire = self.refresher.due(((c[0], c[3]) for c in calls), extra) if self.refresher else []
                if urgent is not None:
                    urgent.leave()
                    urgent = None
                sent = time.perf_counter()
                ok = self.store.apply(calls, partition, watermarks, field=field, born=born, expire=expire)
                waited += time.perf_counter() - sent
                failed = [t for t, good in zip(pending, ok, strict=True) if not good]
                applied += [t for t, good in zip(pending, ok, strict=True) if good]
                if not failed:
                    if progress is not None:
                        for t in applied:
                            known[t.unit] = t.end
                        progress.watermarks.update(watermarks)
                    done = time.perf_counter()
                    result.stages = {
                        "verdicts": judged.result.stages.get("verdicts", 0.0),
                        "aggregate": judged.result.stages.get("aggregate", 0.0) + done - started - waited,
                        "apply": waited,
                    }
                    return result
                sent = time.perf_counter()
                fresh = self.store.applied_offsets([t.unit for t in failed], partition, field)
                waited += time.perf_counter() - sent
                for t, off in zip(failed, fresh, strict=True):
                    t.offset = off
                pending = [t for t in failed if t.due()]
            names = [t.unit.tag + t.unit.part for t in pending]
            raise EngineError(f"units kept changing under us in partition {partition}: {names}")
        finally:
            if urgent is not None:
                urgent.leave()

    def _targets(
        self,
        accepted: list[list[tuple[int, Event]]],
        offsets: list[int],
        label_offsets: dict[str, list[int]],
        last: int,
        backfill: Backfill | None,
        known: dict[Unit, int],
    ) -> list[_Target]:
        """Every unit (live: all; backfill: those it fills, up to their limits)
        and every breakdown label that received events (live only). A unit's
        offset is the greater of the one read and the one ``known`` (what the
        lane's previous apply set: the read may predate it)."""
        targets: list[_Target] = []
        index = 0
        get = known.get
        for ts, kept in zip(self.trees, accepted, strict=True):
            reads = _Reads(kept)
            for agg, params in zip(ts.aggregators, ts.params, strict=True):
                selected = reads.select(agg.names)
                bare = reads.bare(selected)
                offset = max(offsets[index], get(agg.unit, -1))
                if backfill is None:
                    targets.append(_Target(agg.unit, agg, params, selected, offset, last, True, bare))
                elif index in backfill.limits:
                    end = min(last, backfill.limits[index])
                    targets.append(_Target(agg.unit, agg, params, selected, offset, end, True, bare))
                index += 1
            for bd in ts.breakdowns if backfill is None else ():
                stored_offsets = label_offsets[bd.labeler.plan.unit.fingerprint]
                selected = reads.select(bd.aggregator.names)
                for label, events in sorted(bd.labeler.split(selected).items()):
                    unit = bd.labeler.plan.label_unit(label)
                    offset = max(stored_offsets[label], get(unit, -1))
                    targets.append(_Target(unit, bd.aggregator, bd.params, events, offset, last, False))
        return targets

    def _refresh_extra(
        self,
        partition: str,
        spans: list[tuple[int, int] | None],
        admissions: list[tuple[_Breakdown, list[str]]],
        backfill: Backfill | None,
    ) -> list[tuple[str, str]]:
        """(tree, key) the apply path refreshes besides the units' own keys:
        breakdown registries, and the lists the verdict script keeps per
        partition (recent verdicts, the days of the insert ids to forget:
        every day from the first to the last accepted event's, ``spans``, a
        superset of those with an id list; a key that is not there is not
        refreshed, PEXPIRE does nothing)."""
        extra = [(bd.labeler.plan.unit.tree, self.store.keys.unit(bd.labeler.plan.unit, REGISTRY)) for bd, _ in admissions]
        if self.refresher is None or backfill is not None:
            return extra
        vk = self.store.verdict_keys
        for ts, span in zip(self.trees, spans, strict=True):
            name = ts.plan.tree.tree
            extra.append((name, vk.verdict_log(name, partition)))
            if span is not None:
                days = range(span[0] // DAY_MS, span[1] // DAY_MS + 1)
                extra += [(name, f"{vk.insert_id_days(name)}:{partition}:{day}") for day in days]
        return extra


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
