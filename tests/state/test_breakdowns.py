"""Breakdowns (docs/semantics.md §5) against the brute-force reference, on
randomized logs (tests/eventlog.py: late, duplicate, disordered, malformed
events) replayed through the real batch path into a real Redis."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
import redis

from streamer.engine import BatchApplier
from streamer.spec.model import Tree
from streamer.state.breakdowns import admitted, breakdown_values
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.testing.services import RedisClusterService
from streamer.windows.breakdown import compile_breakdowns
from tests.eventlog import MS_PER_DAY, GeneratedLog, LogKnobs, default_knobs, generate
from tests.reference import (
    breakdown_values as reference_breakdown,
)
from tests.reference import (
    first_values,
    ingest,
    seen_events,
)
from tests.trees import example

pytestmark = pytest.mark.services

HLL_REL_TOL = 0.05
PALETTE: tuple[Any, ...] = ("ios", "android", "web", 7, "other", None, True, 2.5, "", "MISSING")
"""Breakdown values of the small-cardinality logs: labels ios, android, web,
"7", (none) (missing, null, bool, float, empty) and the literal ``other``."""


def _tree(max_values: int) -> Tree:
    """The education tree with breakdowns on every kind that allows one:
    sum, count, distinct, per-day distinct and approximate distinct."""
    doc = example("education").model_dump(by_alias=True, exclude_none=True)
    bd = {"property": "prop.platform", "max_values": max_values}
    doc["north_star"]["breakdown"] = bd  # sum of minutes
    doc["inputs"][0]["breakdown"] = bd  # distinct learners
    doc["kpi"]["breakdown"] = bd  # count of purchases
    base = {"description": "d", "unit": "users", "window": "7d", "breakdown": bd}
    doc["supporting"] = [
        {**base, "name": "learning_days", "title": "Learning days",
         "measure": {"kind": "distinct", "event": "lesson_completed", "per_day": True}},
        {**base, "name": "approx_learners", "title": "Approximate learners",
         "measure": {"kind": "distinct", "event": ["lesson_completed", "lesson_abandoned"], "approximate": True}},
        {**base, "name": "long_lessons", "title": "Long lessons", "breakdown": {**bd, "property": "user_prop.plan"},
         "measure": {"kind": "count", "event": "lesson_completed", "where": {"minutes": {"gte": 20}}}},
    ]
    return Tree.model_validate(doc)


def _few_values(log: GeneratedLog, seed: int) -> list[bytes]:
    """``log`` with every event's breakdown fields drawn from PALETTE."""
    rng = random.Random(seed)
    out = []
    for line in log.lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.append(line)
            continue
        if isinstance(doc, dict):
            for section in ("event_properties", "user_properties"):
                props = doc.setdefault(section, {})
                value = rng.choice(PALETTE)
                props.pop("platform", None)
                props.pop("plan", None)
                if value != "MISSING":
                    props["platform" if section == "event_properties" else "plan"] = value
        out.append(orjson.dumps(doc))
    return out


def _apply(applier: BatchApplier, lines: Sequence[bytes], batch: int, now_ms: int, partition: str = "0") -> None:
    records = list(enumerate(lines))
    for start in range(0, len(records), batch):
        applier.apply(partition, records[start : start + batch], now_ms)


def _close(want: float | None, got: float | None, approximate: bool) -> bool:
    if want is None or got is None:
        return want is got
    if approximate:
        return math.isclose(want, got, rel_tol=HLL_REL_TOL, abs_tol=1.0)
    return math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-9)


def _compare(applier: BatchApplier, tree: Tree, lines: Sequence[bytes], now_ms: int, times: Sequence[int],
             admitted_sets: dict[str, list[str]] | None = None) -> list[str]:
    """Differences between the engine's per-label values and the reference's.
    The admitted values are the reference's own (first seen in log order)
    unless ``admitted_sets`` gives them."""
    plan = applier.plans[0]
    accepted = ingest(lines, tree, now_ms).accepted
    seen = seen_events(lines, tree, now_ms)
    problems = []
    for at, row in zip(times, breakdown_values(applier.store, plan, times), strict=True):
        for name, labels in row.items():
            metric = tree.metric(name)
            chosen = first_values(metric, seen) if admitted_sets is None else admitted_sets[name]
            want = reference_breakdown(tree, metric, accepted, chosen, at)
            got = [(lv.label, lv.value) for lv in labels]
            approximate = getattr(metric.measure, "approximate", False)
            if [w[0] for w in want] != [g[0] for g in got] or not all(
                _close(w[1], g[1], approximate) for w, g in zip(want, got, strict=True)
            ):
                problems.append(f"{name} @ {at}: expected {want}, got {got}")
    return problems


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_few_values_equal_reference_and_add_up(redis_client: redis.Redis, seed: int) -> None:
    tree = _tree(max_values=6)
    log = generate(tree, seed, default_knobs(tree))
    lines = _few_values(log, seed)
    applier = BatchApplier(Store(redis_client, namespace=f"few{seed}"), [tree])
    _apply(applier, lines, batch=[7, 5000, 40, 1][seed - 1], now_ms=log.now_ms)
    times = [*log.midnights(), log.knobs.base_ms + 17 * MS_PER_DAY + 5 * 3_600_000 + 1]
    assert not _compare(applier, tree, lines, log.now_ms, times)

    plan = applier.plans[0]
    totals = evaluate(applier.store, plan, times)
    rows = breakdown_values(applier.store, plan, times)
    seen_other = False
    for whole, row in zip(totals, rows, strict=True):
        for name in ("weekly_learning_minutes", "paid_conversions", "long_lessons"):
            parts = row[name]
            assert len(parts) <= 6 + 1
            assert math.isclose(sum(p.value or 0.0 for p in parts), whole[name] or 0.0, abs_tol=1e-9), name
        learners = {p.label: p.value or 0.0 for p in row["weekly_active_learners"]}
        assert sum(learners.values()) >= (whole["weekly_active_learners"] or 0.0)
        assert max(learners.values()) <= (whole["weekly_active_learners"] or 0.0)
        seen_other |= any(p.label == "other" and p.value for p in row["weekly_learning_minutes"])
    # the literal value "other" lands in the other bucket: the check had something to add up
    assert seen_other
    assert {"ios", "(none)", "7"} <= {v for _, v in admitted(applier.store, [compile_breakdowns(plan)["paid_conversions"]])[0]}


def test_more_values_than_the_cap(redis_client: redis.Redis) -> None:
    tree = _tree(max_values=5)
    log = generate(tree, 11, default_knobs(tree))  # ~50 item-like platform values
    applier = BatchApplier(Store(redis_client, namespace="many"), [tree])
    _apply(applier, log.lines, batch=97, now_ms=log.now_ms)
    plan = applier.plans[0]
    breakdowns = compile_breakdowns(plan)
    stored = dict(zip(breakdowns, admitted(applier.store, list(breakdowns.values())), strict=True))
    seen = seen_events(log.lines, tree, log.now_ms)
    for name, values in stored.items():
        assert [i for i, _ in values] == [1, 2, 3, 4, 5], name
        # one partition: the registry holds exactly the first values seen in log order
        assert [v for _, v in values] == first_values(tree.metric(name), seen), name
    times = log.midnights()
    rows = breakdown_values(applier.store, plan, times)
    assert all(len(labels) == 5 + 1 for row in rows for labels in row.values())
    assert any(lv.label == "other" and lv.value for row in rows for lv in row["weekly_learning_minutes"])
    sets = {name: [v for _, v in values] for name, values in stored.items()}
    assert not _compare(applier, tree, log.lines, log.now_ms, times, sets)


def test_two_partitions_use_the_registry_they_share(redis_client: redis.Redis) -> None:
    """Interleaved partitions admit in processing order: the reference, given
    the admitted set read back from Redis, still agrees exactly."""
    tree = _tree(max_values=4)
    knobs = LogKnobs(n_events=900, span_days=35, p_late=0, p_duplicate=0, p_future=0, p_malformed=0)
    log = generate(tree, 5, knobs)
    applier = BatchApplier(Store(redis_client, namespace="parts"), [tree])
    halves = {p: [(o, line) for o, line in enumerate(log.lines) if o % 2 == int(p)] for p in ("0", "1")}
    for start in range(0, len(log.lines), 60):
        for p in ("1", "0"):
            batch = [r for r in halves[p] if start <= r[0] < start + 60]
            if batch:
                applier.apply(p, batch, log.now_ms)
    plan = applier.plans[0]
    breakdowns = compile_breakdowns(plan)
    stored = dict(zip(breakdowns, admitted(applier.store, list(breakdowns.values())), strict=True))
    sets = {name: [v for _, v in values] for name, values in stored.items()}
    assert all(len(v) == 4 for v in sets.values())
    # the reference's ingestion is per log: with neither late events nor
    # duplicates, both partitions accept every decoded event, as it does
    assert ingest(log.lines, tree, log.now_ms).counts.get("late", 0) == 0
    assert not _compare(applier, tree, log.lines, log.now_ms, log.midnights(), sets)


_DEDUPE_GC = re.compile(r"^[^:]+:\{[^:}]+\}:(idg|idd:.*|vl:.*)$")
"""The verdict script's bookkeeping (which days of insert ids are left to
forget, recent verdicts): it moves on with the stored watermark, whoever
calls, without changing any verdict."""


def _dump(client: redis.Redis, namespace: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in client.scan_iter(match=f"{namespace}:*"):
        if _DEDUPE_GC.match(key.decode()):
            continue
        kind = client.type(key)
        out[key.decode()] = client.hgetall(key) if kind == b"hash" else client.dump(key)
    return out


def test_redelivery_changes_nothing(redis_client: redis.Redis) -> None:
    tree = _tree(max_values=3)
    log = generate(tree, 21, LogKnobs(n_events=600, span_days=30))
    records = list(enumerate(log.lines))
    applier = BatchApplier(Store(redis_client, namespace="again"), [tree])
    for start in range(0, 400, 100):
        applier.apply("0", records[start : start + 100], log.now_ms)
    before = _dump(redis_client, "again")
    assert any(":b0:" in k for k in before) and any(":labels" in k for k in before)
    applier.apply("0", records[300:400], log.now_ms)  # the last batch again
    applier.apply("0", records[150:350], log.now_ms)  # other boundaries, all applied
    fresh = BatchApplier(Store(redis_client, namespace="again"), [tree])  # a restarted worker
    fresh.apply("0", records[0:400], log.now_ms)
    assert _dump(redis_client, "again") == before
    # and continuing from an older offset with other sizes ends where one pass does
    for start in range(250, len(records), 77):
        fresh.apply("0", records[start : start + 77], log.now_ms)
    once = BatchApplier(Store(redis_client, namespace="once"), [tree])
    _apply(once, log.lines, batch=100, now_ms=log.now_ms)
    times = log.midnights()
    assert breakdown_values(fresh.store, fresh.plans[0], times) == breakdown_values(once.store, once.plans[0], times)


def test_a_label_behind_the_others_catches_up_alone(redis_client: redis.Redis) -> None:
    """A crash between label applies leaves one label's offset behind: the
    next delivery applies that label's events once, the others' not again."""
    tree = _tree(max_values=3)
    log = generate(tree, 8, LogKnobs(n_events=500, span_days=30))
    records = list(enumerate(log.lines))
    once = BatchApplier(Store(redis_client, namespace="ref"), [tree])
    once.apply("0", records, log.now_ms)
    applier = BatchApplier(Store(redis_client, namespace="behind"), [tree])
    applier.apply("0", records[:300], log.now_ms)
    bd = compile_breakdowns(applier.plans[0])["weekly_learning_minutes"]
    stored = applier.store.keys.applied(bd.label_unit(1))
    assert redis_client.hget(stored, "0") is not None
    # undo label 1's share of 250..299, as if its apply had not happened
    redis_client.delete(applier.store.keys.unit(bd.label_unit(1), "s"))
    redis_client.hdel(stored, "0")
    partial = BatchApplier(Store(redis_client, namespace="behind2"), [tree])
    partial.apply("0", records[:250], log.now_ms)
    for key in redis_client.scan_iter(match=f"behind2:{bd.unit.tag}:b1:*"):
        suffix = key.decode().split(":b1:", 1)[1]
        redis_client.copy(key, applier.store.keys.unit(bd.label_unit(1), suffix), replace=True)
    applier.apply("0", records[250:], log.now_ms)
    times = log.midnights()
    assert breakdown_values(applier.store, applier.plans[0], times) == breakdown_values(
        once.store, once.plans[0], times
    )


def test_cluster_equals_standalone_within_one_slot(redis_cluster: RedisClusterService,
                                                    redis_client: redis.Redis) -> None:
    tree = _tree(max_values=4)
    log = generate(tree, 3, LogKnobs(n_events=500, span_days=30))
    cluster = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        namespace = f"bd{random.randrange(10**9)}"
        on_cluster = BatchApplier(Store(cluster, namespace=namespace), [tree])
        _apply(on_cluster, log.lines, batch=111, now_ms=log.now_ms)
        alone = BatchApplier(Store(redis_client, namespace="alone"), [tree])
        _apply(alone, log.lines, batch=111, now_ms=log.now_ms)
        times = log.midnights()
        assert breakdown_values(on_cluster.store, on_cluster.plans[0], times) == breakdown_values(
            alone.store, alone.plans[0], times
        )
        for bd in compile_breakdowns(on_cluster.plans[0]).values():
            keys = [k.decode() for k in cluster.scan_iter(match=f"{namespace}:{bd.unit.tag}:*")]
            assert len(keys) > 2
            assert len({cluster.keyslot(k) for k in keys}) == 1
    finally:
        cluster.close()
