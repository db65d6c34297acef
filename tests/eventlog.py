"""Randomized raw event logs for any tree, for the replay-vs-reference property tests.

The schema of the generated events is derived from the tree itself: event names
from its filters, numeric properties from ``property:``, values around every
``where:`` condition (some match, some do not), item/entity keys and group keys
from its field references. Cardinalities are small (a few dozen users, a handful
of items and organizations) so that distinct, threshold and relational logic is
exercised, and event time spans ~6 weeks so that windows, previous windows and
the lateness horizon all matter.

Mixed in, each with its own probability: local disorder, late events (older than
the lateness horizon relative to the running maximum, and exactly at it),
duplicates (same line re-sent; same insert id with a time shifted by exactly,
just beyond, or well within the dedupe horizon), events without an insert id,
future events, malformed lines, and numeric properties spelled as ints, floats,
strings, booleans and null.

Two entry points: :func:`generate` / :func:`random_log` (plain
``random.Random(seed)``) and the hypothesis strategy :func:`logs`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from hypothesis import strategies as st

from streamer.spec.horizon import lateness_horizon
from streamer.spec.model import (
    Condition,
    ConversionMeasure,
    DistinctMeasure,
    EntitiesMeasure,
    EventFilter,
    Measure,
    PercentileMeasure,
    PerEntityAverageMeasure,
    RelationalMeasure,
    RetentionMeasure,
    SumMeasure,
    Tree,
    walk_measures,
)

Shape = Literal["amplitude", "segment"]

MS_PER_DAY = 86_400_000
BASE_MS = 1_709_510_400_000  # 2024-03-04T00:00:00Z, a Monday
FIELD_PREFIXES = ("prop.", "group.", "user_prop.")
EXTRA_EVENT_NAMES = ("page_viewed",)  # read by no metric: still moves the watermark


def with_shape(tree: Tree, shape: Shape) -> Tree:
    """A copy of ``tree`` whose source has the given shape."""
    return tree.model_copy(update={"source": tree.source.model_copy(update={"shape": shape})})


def segment_variant(tree: Tree) -> Tree:
    """``tree`` reading Segment events. A Segment track call carries one group,
    ``context.groupId``, decoded as the group ``groupId``: every ``group.X``
    reference becomes ``group.groupId`` so group logic is still exercised."""

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [rewrite(v) for v in value]
        if isinstance(value, str) and value.startswith("group."):
            return "group.groupId"
        return value

    doc = rewrite(tree.model_dump(by_alias=True, exclude_none=True))
    doc["tree"] = f"{tree.tree}_segment"[:63]
    doc["source"]["shape"] = "segment"
    return Tree.model_validate(doc)


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Schema:
    """What the tree reads, so the generator produces events that matter."""

    names: tuple[str, ...]
    weights: tuple[int, ...]  # per name: 1 + how many filters read it
    numeric: tuple[str, ...]  # field refs read as numbers (sum / per-entity average)
    conditions: tuple[tuple[str, Condition], ...]  # field ref -> a condition on it
    keys: tuple[str, ...]  # field refs read as entity / item keys (not ``user``)
    group_keys: tuple[str, ...]  # field refs read as a user's/entity's group
    start_names: tuple[str, ...]  # start events of percentiles / conversions / relations
    consume_names: tuple[str, ...]  # consumed_by events of relations (most frequent)
    end_names: tuple[str, ...]  # end events of percentiles / conversions


def _as_ref(name: str) -> str:
    return name if name == "user" or name.startswith(FIELD_PREFIXES) else f"prop.{name}"


def _filters(measure: Measure) -> Iterator[EventFilter]:
    for m in walk_measures(measure):
        if isinstance(m, EventFilter):
            yield m
        for attr in ("start", "end", "created_by", "consumed_by"):
            sub = getattr(m, attr, None)
            if isinstance(sub, EventFilter):
                yield sub


def schema_of(tree: Tree) -> Schema:
    names: dict[str, int] = {}
    numeric: dict[str, None] = {}
    conditions: list[tuple[str, Condition]] = []
    keys: dict[str, None] = {}
    group_keys: dict[str, None] = {}
    starts: dict[str, None] = {}
    consumes: dict[str, None] = {}
    ends: dict[str, None] = {}
    for _, metric in tree.metrics():
        if metric.breakdown is not None:
            keys[metric.breakdown.property] = None
        for flt in _filters(metric.measure):
            for name in flt.event:
                names[name] = names.get(name, 1) + 1
            conditions.extend((_as_ref(k), c) for k, c in flt.where.items())
        for m in walk_measures(metric.measure):
            if isinstance(m, SumMeasure | PerEntityAverageMeasure) and m.property:
                numeric[_as_ref(m.property)] = None
            if isinstance(
                m,
                DistinctMeasure
                | EntitiesMeasure
                | PerEntityAverageMeasure
                | RetentionMeasure
                | PercentileMeasure
                | ConversionMeasure,
            ):
                keys[m.entity] = None
            if isinstance(m, EntitiesMeasure) and m.group is not None:
                group_keys[m.group.by] = None
            if isinstance(m, RelationalMeasure):
                keys[m.item] = None
                if m.group is not None:
                    group_keys[m.group.by] = None
                starts.update(dict.fromkeys(m.created_by.event))
                consumes.update(dict.fromkeys(m.consumed_by.event))
            if isinstance(m, PercentileMeasure | ConversionMeasure):
                starts.update(dict.fromkeys(m.start.event))
                ends.update(dict.fromkeys(m.end.event))
    keys.pop("user", None)
    for g in group_keys:
        keys.pop(g, None)
    group_keys.pop("user", None)
    return Schema(
        names=tuple(names) + EXTRA_EVENT_NAMES,
        weights=tuple(names.values()) + (1,) * len(EXTRA_EVENT_NAMES),
        numeric=tuple(numeric),
        conditions=tuple(conditions),
        keys=tuple(keys),
        group_keys=tuple(group_keys),
        start_names=tuple(starts),
        consume_names=tuple(consumes),
        end_names=tuple(ends),
    )


# --------------------------------------------------------------------------- knobs


@dataclass(frozen=True)
class LogKnobs:
    """Size and mischief of a generated log. Probabilities are per line."""

    n_events: int = 300
    n_users: int = 20
    n_items: int = 8
    n_orgs: int = 3
    span_days: int = 40
    base_ms: int = BASE_MS
    shape: Shape = "amplitude"
    p_disorder: float = 0.3  # swap with a neighbour up to 6 lines away
    p_late: float = 0.03
    p_duplicate: float = 0.08
    p_no_insert_id: float = 0.1
    p_malformed: float = 0.03
    p_future: float = 0.01  # in the last 10% of the lines
    p_same_time: float = 0.05  # reuse the previous event's time (ties)
    p_midnight: float = 0.05  # snap to a UTC midnight, or 1 ms before one
    p_group_change: float = 0.1
    p_session: float = 0.3  # same user again, minutes later (sessions, bursts)

    @property
    def now_ms(self) -> int:
        """The processing clock: one hour after the end of the span."""
        return self.base_ms + self.span_days * MS_PER_DAY + 3_600_000

    def __post_init__(self) -> None:
        if self.n_users < 1 or self.n_items < 1 or self.n_orgs < 1 or self.span_days < 1:
            raise ValueError("n_users, n_items, n_orgs and span_days must be positive")


@dataclass(frozen=True)
class GeneratedLog:
    lines: list[bytes]
    knobs: LogKnobs
    seed: int
    windows_days: tuple[int, ...] = (7,)  # the tree's metric windows

    @property
    def now_ms(self) -> int:
        return self.knobs.now_ms

    def midnights(self) -> list[int]:
        """UTC midnights at which to evaluate: early, 3 days past each window
        length (the previous window partly before the first event), middle,
        near the end, and the end of the span."""
        k = self.knobs
        candidates = (3, *(w + 3 for w in self.windows_days), k.span_days // 2, k.span_days - 2)
        days = sorted({d for d in candidates if d < k.span_days} | {k.span_days})
        return [k.base_ms + d * MS_PER_DAY for d in days]


# --------------------------------------------------------------------------- generation


@dataclass
class _Raw:
    """A not-yet-rendered event; ``time`` and ``user`` may be deliberately odd."""

    name: str | None
    user: Any
    time: Any
    insert_id: str | None
    time_as_text: bool = False  # Amplitude: "1709510400000" instead of a number
    props: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, Any] = field(default_factory=dict)
    user_props: dict[str, Any] = field(default_factory=dict)


class _Generator:
    def __init__(self, tree: Tree, seed: int, knobs: LogKnobs) -> None:
        self.tree = tree
        self.k = knobs
        self.rng = random.Random(seed)
        self.schema = schema_of(tree)
        self.horizon_ms = lateness_horizon(tree) * 1000
        self.dedupe_ms = tree.dedupe_horizon * 1000
        self.skew_ms = tree.source.future_skew * 1000
        self.users: list[Any] = [f"u{i}" for i in range(1, knobs.n_users + 1)]
        if knobs.n_users > 3:
            self.users[-1] = 1000 + knobs.n_users  # an integer user id
        self.user_weights = [1 / (i + 1) for i in range(knobs.n_users)]
        self.items: list[Any] = [f"item{i}" for i in range(1, knobs.n_items + 1)]
        if knobs.n_items > 2:
            self.items[-1] = 7  # integer key, read as "7"
        self.orgs = [f"org{chr(ord('a') + i)}" for i in range(knobs.n_orgs)]
        self.group_of: dict[tuple[str, Any], Any] = {}
        self.next_id = 0
        self.max_time: int | None = None
        self.sent: list[_Raw] = []

    # ----- values

    def _numeric(self) -> Any:
        roll = self.rng.random()
        if roll < 0.6:
            return self.rng.randint(0, 60)
        if roll < 0.75:
            return self.rng.randint(0, 240) / 4  # exact binary fractions
        if roll < 0.8:
            return round(self.rng.uniform(0, 50), 3)
        if roll < 0.86:
            return str(self.rng.randint(0, 60))  # a string is not a number
        if roll < 0.91:
            return self.rng.choice([True, False])  # nor is a boolean
        if roll < 0.94:
            return None
        return _MISSING

    def _condition_value(self, cond: Condition) -> Any:
        palette: list[Any] = []
        for v in (cond.eq, cond.ne):
            if v is not None:
                palette.append(v)
        for vs in (cond.in_, cond.not_in):
            if vs is not None:
                palette.extend(vs)
        for b in (cond.gt, cond.gte, cond.lt, cond.lte):
            if b is not None:
                palette.extend([b, b - 1, b + 1, b + 0.5, int(b), str(b)])
        if self.rng.random() < 0.6 and palette:
            v = self.rng.choice(palette)
            # same value, other type: 1 vs 1.0 vs "1" vs True
            if self.rng.random() < 0.15:
                v = self.rng.choice(_retyped(v))
            return v
        return self.rng.choice(["other", "", 0, 1, 1.0, True, False, None, _MISSING, {"x": 1}])

    def _key(self, time_ms: int) -> Any:
        """An item key: drawn from the items of the event's week (sometimes the
        week before), so each window sees a few items and owners change over time."""
        roll = self.rng.random()
        if roll < 0.9:
            week = (time_ms - self.k.base_ms) // (7 * MS_PER_DAY) - (self.rng.random() < 0.2)
            item = self.rng.choice(self.items)
            return item if isinstance(item, int) else f"w{week}-{item}"
        return self.rng.choice([_MISSING, "", None, 2.5, True, ["x"]])  # not keys

    def _group(self, ref: str, user: Any) -> Any:
        cur = self.group_of.get((ref, user))
        if cur is None or self.rng.random() < self.k.p_group_change:
            cur = self.rng.choice(self.orgs)
            self.group_of[(ref, user)] = cur
        roll = self.rng.random()
        if roll < 0.75:
            return cur
        if roll < 0.9:
            return _MISSING
        return self.rng.choice([self.rng.choice(self.orgs), "", None, 3.5])

    # ----- events

    def _insert_id(self) -> str | None:
        if self.rng.random() < self.k.p_no_insert_id:
            return None
        self.next_id += 1
        return f"iid-{self.next_id}"

    def _event(self, name: str, time_ms: int, user: Any = None) -> _Raw:
        if user is None:
            # a few heavy users, many light ones: thresholds and per-day counts matter
            user = self.rng.choices(self.users, weights=self.user_weights)[0]
        raw = _Raw(name=name, user=user, time=time_ms, insert_id=self._insert_id())
        raw.time_as_text = self.rng.random() < 0.05
        for ref in self.schema.numeric:
            _put(raw, ref, self._numeric())
        for ref, cond in self.schema.conditions:
            _put(raw, ref, self._condition_value(cond))
        for ref in self.schema.keys:
            _put(raw, ref, self._key(time_ms))
        for ref in self.schema.group_keys:
            _put(raw, ref, self._group(ref, user))
        return raw

    def _time(self, i: int, previous: int | None) -> int:
        k = self.k
        if previous is not None and self.rng.random() < k.p_same_time:
            return previous
        center = k.base_ms + (k.span_days * MS_PER_DAY * i) // max(k.n_events, 1)
        t = center + self.rng.randint(-MS_PER_DAY // 2, MS_PER_DAY // 2)
        if self.rng.random() < k.p_midnight:
            t = (t // MS_PER_DAY) * MS_PER_DAY - self.rng.choice([0, 1])
        return t

    def _name(self) -> str:
        # start events (sign-ups, shares) a little more often, so cohorts exist
        roll = self.rng.random()
        if self.schema.start_names and roll < 0.1:
            return self.rng.choice(self.schema.start_names)
        # consumptions dominate, so items reach min_consumers
        if self.schema.consume_names and roll < 0.5:
            return self.rng.choice(self.schema.consume_names)
        # the events most metrics read are the most frequent
        return self.rng.choices(self.schema.names, weights=self.schema.weights)[0]

    def raws(self) -> list[_Raw | bytes]:
        out: list[_Raw | bytes] = []
        previous: int | None = None
        for i in range(self.k.n_events):
            roll = self.rng.random()
            if roll < self.k.p_malformed:
                out.append(self._malformed())
                continue
            roll -= self.k.p_malformed
            if roll < self.k.p_duplicate and self.sent:
                out.append(self._duplicate())
                continue
            roll -= self.k.p_duplicate
            user: Any = None
            if roll < self.k.p_late and self.max_time is not None:
                t = (
                    self.max_time
                    - self.horizon_ms
                    - self.rng.choice([0, 1, self.rng.randint(1, 3 * MS_PER_DAY)])
                )
            elif roll - self.k.p_late < self.k.p_future and i >= 0.9 * self.k.n_events:
                # near the end only: an accepted event at now + skew moves the
                # watermark to the end of the span and makes the rest late
                t = self.k.now_ms + self.skew_ms + self.rng.choice([0, 1, MS_PER_DAY])
            elif self.sent and self.rng.random() < self._p_session(self.sent[-1]):
                # a session: the same user again minutes later, often doing what
                # a percentile or conversion waits for after its start event
                last = self.sent[-1]
                t, user = last.time + self.rng.randint(0, 20 * 60_000), last.user
            else:
                t = self._time(i, previous)
                previous = t
            ends = self.schema.end_names
            in_session = user is not None
            name = (
                self.rng.choice(ends) if in_session and ends and self.rng.random() < 0.6 else None
            )
            raw = self._event(name or self._name(), t, user)
            out.append(raw)
            self.sent.append(raw)
            self.max_time = t if self.max_time is None else max(self.max_time, t)
        self._disorder(out)
        return out

    def _p_session(self, last: _Raw) -> float:
        """Sessions that began with a start event (sign-up, membership) go on."""
        p = self.k.p_session
        starts = self.schema.start_names
        recent = self.sent[-4:]
        started = any(r.user == last.user and r.name in starts for r in recent)
        return max(p, 0.85) if p and started else p

    def _duplicate(self) -> _Raw:
        original = self.rng.choice(self.sent[-60:])
        roll = self.rng.random()
        if roll < 0.6 or not isinstance(original.time, int):
            return original  # the same line again
        shift = self.rng.choice(
            [
                self.dedupe_ms,
                self.dedupe_ms + 1,
                self.rng.randint(1, self.dedupe_ms),
                2 * self.dedupe_ms,
            ]
        ) * self.rng.choice([1, -1])
        copy = _Raw(
            name=original.name if roll < 0.85 else self._name(),
            user=original.user,
            time=original.time + shift,
            insert_id=original.insert_id,
            props=dict(original.props),
            groups=dict(original.groups),
            user_props=dict(original.user_props),
        )
        self.sent.append(copy)
        return copy

    def _disorder(self, out: list[_Raw | bytes]) -> None:
        for i in range(len(out)):
            if self.rng.random() < self.k.p_disorder:
                j = min(len(out) - 1, i + self.rng.randint(1, 6))
                out[i], out[j] = out[j], out[i]

    def _malformed(self) -> bytes | _Raw:
        t = self.k.base_ms + self.rng.randint(0, self.k.span_days * MS_PER_DAY)
        name = self.rng.choice(self.schema.names)
        user = self.rng.choice(self.users)
        kind = self.rng.randrange(12)
        if kind == 0:
            return b"this is not json {"
        if kind == 1:
            return b'[{"event_type": "x"}]'
        if kind == 2:
            return self.rng.choice([b'"a string"', b"42", b"null", b"true"])
        if kind == 3:
            return b"\xff\xfe{not utf-8"
        if kind == 4:
            return _Raw(name=None, user=user, time=t, insert_id=self._insert_id())
        if kind == 5:
            return _Raw(name=name, user=None, time=t, insert_id=self._insert_id())
        if kind == 6:
            return _Raw(name=name, user=user, time=None, insert_id=self._insert_id())
        if kind == 7:
            return _Raw(name=name, user=user, time="not a time", insert_id=self._insert_id())
        if kind == 8:
            big = "x" * (self.tree.source.max_event_bytes + 10)
            return _Raw(
                name=name, user=user, time=t, insert_id=self._insert_id(), props={"pad": big}
            )
        if kind == 9:
            return _Raw(name=name, user="", time=t, insert_id=self._insert_id())
        if kind == 10:  # Amplitude: an unreadable insert id; Segment: not a track call
            return _Raw(name=name, user=user, time=t, insert_id=_NOT_TRACK)
        return _Raw(name="", user=user, time=t, insert_id=self._insert_id())


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
_NOT_TRACK = "<not a track call>"


def _retyped(v: Any) -> list[Any]:
    if isinstance(v, bool):
        return [int(v), str(v).lower(), v]
    if isinstance(v, int | float):
        return [float(v), int(v), str(v), bool(v)]
    if isinstance(v, str):
        return [v, v.upper(), f" {v}"]
    return [v]


def _put(raw: _Raw, ref: str, value: Any) -> None:
    if value is _MISSING or ref == "user":
        return
    prefix, _, name = ref.partition(".")
    target = {"prop": raw.props, "group": raw.groups, "user_prop": raw.user_props}[prefix]
    target[name] = value


# --------------------------------------------------------------------------- rendering


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def render(raw: _Raw, shape: Shape) -> bytes:
    """One event as a JSON line in the source's wire shape (absent fields omitted)."""
    doc: dict[str, Any]
    if shape == "amplitude":
        time = str(raw.time) if raw.time_as_text and isinstance(raw.time, int) else raw.time
        doc = {
            "event_type": raw.name,
            "user_id": raw.user,
            "time": time,
            "insert_id": [raw.insert_id] if raw.insert_id == _NOT_TRACK else raw.insert_id,
        }
        doc |= {
            "event_properties": raw.props,
            "groups": raw.groups,
            "user_properties": raw.user_props,
        }
    else:
        time = _iso(raw.time) if isinstance(raw.time, int) else raw.time
        doc = {"type": "track", "event": raw.name, "userId": raw.user, "timestamp": time}
        if raw.insert_id == _NOT_TRACK:
            doc |= {"type": "identify"}
        else:
            doc |= {"messageId": raw.insert_id}
        doc |= {"properties": raw.props}
        doc |= {"context": {"groupId": raw.groups.get("groupId"), "traits": raw.user_props}}
    doc = {k: v for k, v in doc.items() if v is not None and v != {}}
    return json.dumps(doc, separators=(",", ":")).encode()


def generate(tree: Tree, seed: int, knobs: LogKnobs | None = None) -> GeneratedLog:
    """A random raw log for ``tree`` (deterministic in ``seed`` and ``knobs``)."""
    knobs = knobs or default_knobs(tree)
    lines = [
        r if isinstance(r, bytes) else render(r, knobs.shape)
        for r in _Generator(tree, seed, knobs).raws()
    ]
    windows = tuple(sorted({m.window // 86400 for _, m in tree.metrics()}))
    return GeneratedLog(lines=lines, knobs=knobs, seed=seed, windows_days=windows)


def random_log(tree: Tree, seed: int, knobs: LogKnobs | None = None) -> list[bytes]:
    """Just the lines of :func:`generate`."""
    return generate(tree, seed, knobs).lines


def _shape(tree: Tree) -> Shape:
    shape = tree.source.shape
    if shape == "generic":
        raise ValueError("no generator for the generic shape")
    return shape


# --------------------------------------------------------------------------- hypothesis


def span_range(tree: Tree) -> tuple[int, int]:
    """Days of event time to spread a log over: 4-6 weeks, or longer for long
    windows so that a window and its previous window both fit."""
    longest = max(m.window for _, m in tree.metrics()) // 86400
    return max(28, longest + 14), max(42, 2 * longest + 14)


def default_knobs(tree: Tree) -> LogKnobs:
    lo, hi = span_range(tree)
    span = (lo + hi) // 2
    return LogKnobs(n_events=min(1500, 8 * span), span_days=span, shape=_shape(tree))


def knobs_strategy(
    shape: Shape = "amplitude", span_days: tuple[int, int] = (28, 42)
) -> st.SearchStrategy[LogKnobs]:
    prob = st.sampled_from([0.0, 0.02, 0.05, 0.15])
    return st.builds(
        LogKnobs,
        n_events=st.integers(0, min(1500, 15 * span_days[1])),
        n_users=st.integers(1, 40),
        n_items=st.integers(1, 15),
        n_orgs=st.integers(1, 4),
        span_days=st.integers(*span_days),
        shape=st.just(shape),
        p_disorder=st.sampled_from([0.0, 0.1, 0.4]),
        p_late=prob,
        p_duplicate=prob,
        p_no_insert_id=st.sampled_from([0.0, 0.1, 0.5]),
        p_malformed=prob,
        p_future=st.sampled_from([0.0, 0.05, 0.2]),
        p_same_time=prob,
        p_midnight=prob,
        p_group_change=st.sampled_from([0.0, 0.1, 0.3]),
        p_session=st.sampled_from([0.0, 0.3, 0.6]),
    )


def logs(tree: Tree) -> st.SearchStrategy[GeneratedLog]:
    """Random logs for ``tree`` in its source's shape: a seed plus knobs, so
    hypothesis shrinks towards short, tame logs."""
    return st.builds(
        generate,
        st.just(tree),
        st.integers(0, 2**32 - 1),
        knobs_strategy(_shape(tree), span_range(tree)),
    )
