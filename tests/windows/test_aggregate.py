"""Pre-aggregation: units sharing work through a batch's memo build the
payloads they build alone; flat payload lists read back as records."""

from __future__ import annotations

from typing import Any

import pytest

from streamer.events.decode import Decoder
from streamer.events.types import Event
from streamer.spec.model import Tree
from streamer.windows import aggregate
from streamer.windows.aggregate import FLAT_FIXED, Aggregator, Memo, unflatten
from streamer.windows.units import compile_tree
from tests.eventlog import generate
from tests.trees import example

TREES = ["education", "learning_users", "b2b_collaboration", "publisher"]


def canonical(kind: str, payload: dict[str, Any] | None) -> Any:
    """A payload with its entity ops in key order: ops of different keys
    commute in every script (one key per op), and per-day counts derived from
    per-user ones list them user by user instead of as first seen."""
    if payload is None or "e" not in payload:
        return payload
    return {**payload, "e": sorted(unflatten(payload["e"], FLAT_FIXED[kind]), key=lambda op: str(op[0]))}


def events_of(tree: Any, seed: int) -> list[Event]:
    log = generate(tree, seed)
    decoder = Decoder(tree.source)
    now = log.knobs.now_ms
    return [e for e in decoder.decode_batch(log.lines, now) if isinstance(e, Event)]


@pytest.mark.parametrize("resolution", [86_400, 3_600, 2 * 86_400])
@pytest.mark.parametrize("name", TREES)
def test_payloads_with_a_shared_memo_are_the_payloads_alone(name: str, resolution: int) -> None:
    tree = example(name).model_copy(update={"resolution": resolution})
    plan = compile_tree(tree)
    aggregators = [Aggregator(u, plan.resolution_ms) for u in plan.units]
    for seed in range(3):
        events = events_of(tree, seed)
        alone = [canonical(a.unit.kind, a.payload(events)) for a in aggregators]
        for order in (aggregators, aggregators[::-1]):
            memo: Memo = {}
            shared = {id(a): a.payload(events, memo) for a in order}
            assert [canonical(a.unit.kind, shared[id(a)]) for a in aggregators] == alone


def per_day_apart(resolution: int = 86_400) -> Any:
    """The education tree with a 14-day retention: its per-day count of
    lesson_completed keeps an entity unit of its own (with a 7-day retention
    it reads the retention's unit, units.py ``_per_day_sibling``)."""
    data = example("education").model_dump(by_alias=True, mode="json")
    data["resolution"] = resolution
    for guard in data["guardrails"]:
        if guard["measure"]["kind"] == "retention":
            guard["window"] = "14d"
    return Tree.model_validate(data)


def test_units_over_the_same_events_count_them_once(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = per_day_apart()  # a per-day count and a retention of lesson_completed
    plan = compile_tree(tree)
    users = [a for a in (Aggregator(u, plan.resolution_ms) for u in plan.units) if a.unit.kind in ("entity", "retention")]
    # the per-day count, the active learners (no 7-day retention to read) and the retention
    assert sorted(a.unit.kind for a in users) == ["entity", "entity", "retention"]
    calls: list[bool] = []
    count = Aggregator._count

    def counting(self: Aggregator, events: Any, per_day: bool) -> Any:
        calls.append(per_day)
        return count(self, events, per_day)

    monkeypatch.setattr(aggregate.Aggregator, "_count", counting)
    events = events_of(tree, 1)
    memo: Memo = {}
    payloads = [a.payload(events, memo) for a in users]
    assert calls == [False]  # the per-day counts derived from the per-user ones
    assert all(p and p["e"] for p in payloads)
    # another list of the same events is not the same key
    copy = list(events)
    assert [a.payload(copy, memo) for a in users] == payloads
    assert calls == [False, False]


@pytest.mark.parametrize("resolution", [86_400, 3_600])
def test_a_per_day_count_at_daily_resolution_sends_the_distinct_counts_ops(resolution: int) -> None:
    """At a resolution of one day a bucket is a day: the per-day unit sends the
    very ops list of the retention over the same events (its script appends
    the day, ``split``); at finer resolutions its entities are ``user\\x1fday``."""
    from streamer.engine import unit_params

    tree = per_day_apart(resolution)
    plan = compile_tree(tree)
    aggregators = [Aggregator(u, plan.resolution_ms) for u in plan.units]
    per_day = next(a for a in aggregators if a.unit.kind == "entity" and a.unit.params["per_day"])
    retention = next(a for a in aggregators if a.unit.kind == "retention")
    assert per_day.unit.params["per_day"]
    events = events_of(tree, 2)
    memo: Memo = {}
    day_ops = per_day.payload(events, memo)["e"]  # type: ignore[index]
    user_ops = retention.payload(events, memo)["e"]  # type: ignore[index]
    params = unit_params(per_day.unit, plan)
    if resolution == 86_400:
        assert params["split"] == 1 and params["mode"] == "day"
        assert day_ops is user_ops
        assert all("\x1f" not in op[0] for op in unflatten(day_ops))
    else:
        assert "split" not in params
        assert day_ops is not user_ops
        days = {int(op[0].rsplit("\x1f", 1)[1]) for op in unflatten(day_ops)}
        assert days == {e.time_ms // 86_400_000 for e in events if e.name == "lesson_completed"}


def test_flat_payload_lists_read_back_as_records() -> None:
    tree = example("education")
    plan = compile_tree(tree)
    events = events_of(tree, 3)
    seen = set()
    for unit in plan.units:
        if unit.kind not in FLAT_FIXED:
            continue
        payload = Aggregator(unit, plan.resolution_ms).payload(events)
        assert payload is not None
        records = unflatten(payload["e"], FLAT_FIXED[unit.kind])
        assert len({r[0] for r in records}) == len(records)  # one record per entity
        assert all(isinstance(r[0], str) and isinstance(r[-1], list) for r in records)
        if unit.kind == "pair":  # [entity, first start or False, [end times]]
            ends = sorted(t for r in records for t in r[-1])
            assert ends == sorted(e.time_ms for e in events if e.name == "lesson_completed")
            assert all(r[1] is False or isinstance(r[1], int) for r in records)  # never None: see store.pack
            starts = {r[0]: r[1] for r in records if r[1] is not False}
            firsts: dict[str, int] = {}
            for e in events:
                if e.name == "signed_up":
                    firsts[e.user] = min(firsts.get(e.user, e.time_ms), e.time_ms)
            assert starts == firsts
        else:  # [entity, [bucket, events, ...]]: every matching event counted once
            assert sum(c for r in records for c in r[-1][1::2]) == sum(1 for e in events if e.name == "lesson_completed")
        seen.add(unit.kind)
    assert seen == {"retention", "pair"}


@pytest.mark.parametrize("prop", [None, "minutes"])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_inline_sum_of_names_is_the_general_sum(prop: str | None, seed: int) -> None:
    """``_sum`` by a name test alone (the inline loop) gives the payload of
    the general loop (the filter's predicate, ``is_number``), over values of
    every kind: ints, floats, NaN and infinities, booleans, strings, null,
    missing, and events of other names."""
    import random

    from streamer.windows.units import Unit

    rng = random.Random(seed)
    kinds = [3, 2.5, -1, 0, 0.0, float("nan"), float("inf"), True, False, "7", None, [1], {"a": 1}]
    events = []
    for i in range(2_000):
        props = {} if rng.random() < 0.1 else {"minutes": rng.choice(kinds)}
        name = rng.choice(["lesson_completed", "lesson_abandoned", "signed_up"])
        events.append(Event(name=name, user=f"u{i % 50}", time_ms=rng.randrange(10 * 86_400_000), props=props))
    flt = {"event": ["lesson_completed", "lesson_abandoned"], "where": {}}
    tree = example("education")
    template = next(u for u in compile_tree(tree).units if u.kind == "sum")
    unit = Unit("sum", "t", {"filter": flt, "value": prop}, "f" + str(prop),
                {"f": template.filters["f"].model_copy(update={"event": tuple(flt["event"])})})
    inline = Aggregator(unit, 3_600_000)
    general = Aggregator(unit, 3_600_000)
    general._names = {"f": None}  # force the predicate loop
    want = general.payload(events)
    got = inline.payload(events)
    assert want is not None and len(want["b"]) > 10
    assert got == want
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}
    assert [type(v) for _, v in got["b"]] == [type(v) for _, v in want["b"]]


def _nulls(value: Any, path: str = "") -> list[str]:
    """Where ``value`` holds a None inside a list or a dict."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in ([f"{path}.{k}"] if v is None else _nulls(v, f"{path}.{k}"))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in ([f"{path}[{i}]"] if v is None else _nulls(v, f"{path}[{i}]"))]
    return []


@pytest.mark.parametrize("name", [*TREES, "instacart", "netflix"])
def test_payloads_carry_no_null(name: str) -> None:
    """Payloads travel as MessagePack (``store.pack``), which has no null in
    an array: the script's array would have a hole, and ``#`` would end it
    there. Every unit kind of every example tree, over random logs with late,
    duplicate and malformed events, sends ``False`` where it means none."""
    tree = example(name)
    plan = compile_tree(tree)
    kinds = set()
    for seed in range(3):
        events = events_of(tree, seed)
        memo: Memo = {}
        for unit in plan.units:
            payload = Aggregator(unit, plan.resolution_ms).payload(events, memo)
            if payload is not None:
                kinds.add(unit.kind)
                assert _nulls(payload) == [], (unit.kind, _nulls(payload)[:5])
    assert kinds  # the trees' logs gave every unit something to send
