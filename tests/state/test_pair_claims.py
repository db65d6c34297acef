"""The pair unit's claimable ends (layout 3, docs/state.md §3): a late,
earlier start claims the ends it keeps; repeats of one end time count apart
when k > 1; an entity with thousands of ends in one batch. Every value is
checked against the brute-force reference."""

from __future__ import annotations

import math

import orjson
import pytest
import redis

from streamer.engine import BatchApplier
from streamer.spec.model import Tree
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.windows.units import compile_tree, reader_units
from tests.reference import Reference, ingest
from tests.trees import example

pytestmark = pytest.mark.services

DAY = 86_400_000
T0 = 20_000 * DAY
ids = iter(range(10**9))


def _event(name: str, user: str, t: int) -> bytes:
    return orjson.dumps({"event_type": name, "user_id": user, "time": t, "insert_id": f"i{next(ids)}",
                         "event_properties": {"minutes": 5}})


def _replay_and_check(client: redis.Redis, tree: Tree, batches: list[list[bytes]], metric_name: str,
                      now: int, at: list[int]) -> Store:
    store = Store(client, namespace=f"claims-{tree.tree}")
    applier = BatchApplier(store, [tree])
    lines: list[bytes] = []
    for batch in batches:
        first = len(lines)
        lines += batch
        applier.apply("0", list(enumerate(lines))[first:], now)
    reference = Reference(tree, ingest(lines, tree, now).accepted)
    metric = next(m for _, m in tree.metrics() if m.name == metric_name)
    got = evaluate(store, compile_tree(tree), at)
    for t, values in zip(at, got, strict=True):
        want, have = reference.metric_value(metric, t), values[metric_name]
        assert want is not None and have is not None, f"@{t}: expected {want}, got {have}"
        assert math.isclose(want, have, rel_tol=1e-9), f"@{t}: expected {want}, got {have}"
    return store


def test_late_start_claims_repeated_ends(redis_client: redis.Redis) -> None:
    """Netflix: 3+ titles queued within 1 h of the membership start (k = 3).
    Ends arrive before their start; some share one millisecond."""
    tree = example("netflix")
    start = T0 + 2 * DAY
    same = start + 600_000
    batches = [
        [
            # "triple": three ends in one millisecond, then (late) its start -> converted
            *[_event("title_queued", "triple", same) for _ in range(3)],
            # "double": two ends in one millisecond, one more outside the hour -> not converted
            *[_event("title_queued", "double", same) for _ in range(2)],
            _event("title_queued", "double", start + 2 * 3_600_000),
            # "split": repeats of one time across batches
            _event("title_queued", "split", same),
            _event("title_queued", "early", start - 1_000),  # before its start: never claimed
        ],
        [
            _event("title_queued", "split", same),
            _event("title_queued", "split", same),
            _event("title_queued", "early", same),
            _event("title_queued", "early", same),
            _event("title_queued", "other", start + DAY),
        ],
        [
            _event("membership_started", user, start)
            for user in ("triple", "double", "split", "early")
        ],
    ]
    now = start + 3 * DAY
    at = [start + d * DAY for d in range(1, 4)]
    store = _replay_and_check(redis_client, tree, batches, "new_members_queueing_three_titles", now, at)
    # every claimed end left the claimable set; the one before its start stays,
    # and so does the end of "other", which has no start yet
    readers = compile_tree(tree).readers
    unit = next(reader_units(readers["new_members_queueing_three_titles"]))
    left = redis_client.zrange(store.keys.unit(unit, "pz"), 0, -1)
    assert [m[:7] for m in left] == [b"5:early", b"5:other"], left
    values = evaluate(store, compile_tree(tree), [start + DAY])[0]
    assert values["new_members_queueing_three_titles"] == pytest.approx(2 / 4)  # triple, split of 4


def test_thousands_of_ends_in_one_batch(redis_client: redis.Redis) -> None:
    """More ends for one entity in one batch than one ZADD call takes, then
    its start: the first end after it still counts."""
    tree = example("education")
    start = T0 + 5 * DAY
    heavy = [_event("lesson_completed", "heavy", start - 4_000 * 60_000 + i * 60_000) for i in range(4_500)]
    batches = [heavy, [_event("signed_up", "heavy", start)]]
    now = start + DAY
    store = _replay_and_check(redis_client, tree, batches, "time_to_first_lesson_p50_seconds", now, [start + DAY])
    unit = next(reader_units(compile_tree(tree).readers["time_to_first_lesson_p50_seconds"]))
    assert redis_client.zcard(store.keys.unit(unit, "pz")) == 4_001  # the ends <= the start
    assert redis_client.hget(store.keys.unit(unit, "p"), "heavy") == f"{start};{start + 60_000}".encode()
