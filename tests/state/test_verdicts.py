"""Dedupe verdicts with per-day insert-id lists (state layout 2): ids are
forgotten a whole UTC day at a time once the partition's stored watermark
passed the day by H + dedupe horizon, never earlier; a re-delivered batch
gets the same verdicts; ids of another partition follow its watermark."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis

from streamer.engine import BatchApplier
from streamer.replay import replay
from streamer.spec.horizon import lateness_horizon
from streamer.state.store import Store, verdict_events
from tests.reference import reference_counts
from tests.test_reference import D0, DAY, amp, make_tree

pytestmark = pytest.mark.services

NOW = D0 + 200 * DAY
TREE = make_tree({"n": {"kind": "count", "event": "a"}})  # H = 14d, dedupe 7d
H = lateness_horizon(TREE) * 1000
D = TREE.dedupe_horizon * 1000


def _ids(client: redis.Redis, namespace: str) -> set[str]:
    return {k.decode() for k in client.hkeys(Store(client, namespace).keys.insert_ids("t"))}


def _lists(client: redis.Redis, namespace: str) -> set[str]:
    keys = Store(client, namespace).keys
    prefix = keys.insert_id_days("t")
    return {k.decode()[len(prefix) + 1 :] for k in client.scan_iter(match=keys.insert_id_lists("t"))}


def test_ids_on_a_day_boundary(redis_client: redis.Redis) -> None:
    """A = last millisecond of day 0, B = first of day 1. When the watermark is
    exactly 1 day + H + D past day 0, day 0 lies wholly before it: A is
    forgotten. B is kept and still a duplicate target at exactly D."""
    lines = [
        amp("a", "u", D0 + DAY - 1, "A"),
        amp("a", "u", D0 + DAY, "B"),
        amp("a", "u", D0 + DAY + H + D),  # watermark: cutoff = D0 + DAY
        amp("a", "u", D0 + DAY + D, "B"),  # = watermark - H, exactly D from B: duplicate
        amp("a", "u", D0 + DAY + D),  # one more batch, so the last stored watermark is used
    ]
    day0 = (D0 + DAY - 1) // DAY
    replay(lines, [TREE], redis_client, at_ms=[NOW], now_ms=NOW, batch_size=1)
    assert _ids(redis_client, "replay") == {"B"}
    assert _lists(redis_client, "replay") == {f"replay:{day0 + 1}"}
    (result,) = replay(lines, [TREE], redis_client, at_ms=[NOW], now_ms=NOW, batch_size=1)
    assert {k: v for k, v in result.counts.items() if v} == reference_counts(lines, TREE, NOW)
    assert result.counts["duplicate"] == 1


def test_ids_are_forgotten_as_fast_as_they_arrive(redis_client: redis.Redis) -> None:
    """30 days of ids in batches of 50: at the end exactly the ids of the days
    not wholly before (stored watermark - H - D) remain, and their lists."""
    lines = [amp("a", "u", D0 + i * DAY // 100, f"i{i}") for i in range(3000)]
    lines.append(lines[-1].replace(b'"i2999"', b'"last"'))  # same time: runs GC with the final watermark
    replay(lines, [TREE], redis_client, at_ms=[NOW], now_ms=NOW, batch_size=50)
    cutoff_day = (D0 + 2999 * DAY // 100 - H - D) // DAY
    assert cutoff_day > D0 // DAY + 3  # several days were collected
    kept = {f"i{i}" for i in range(3000) if (D0 + i * DAY // 100) // DAY >= cutoff_day} | {"last"}
    assert _ids(redis_client, "replay") == kept
    days = {(D0 + i * DAY // 100) // DAY for i in range(3000)}
    assert _lists(redis_client, "replay") == {f"replay:{d}" for d in days if d >= cutoff_day}


def _verdicts(store: Store, batch: list[list[Any]]) -> str:
    verdicts, _ = store.verdicts_and_offsets([("t", H, D, verdict_events(batch))], "0", [])
    return verdicts[0][0]


def test_a_redelivered_batch_gets_the_same_verdicts(redis_client: redis.Redis) -> None:
    """Crash after the verdict round trip, before any unit applied: the batch
    comes again. Its events are not their own duplicates, a duplicate stays
    one even though a later event of the batch moves the watermark far enough
    to forget the id it matched (ids are forgotten by the stored watermark)."""
    store = Store(redis_client, namespace="crash")
    applier = BatchApplier(store, [TREE])
    first = [(0, amp("a", "u", D0, "X"))]
    assert applier.apply("0", first, NOW).counts["accepted:t"] == 1
    batch = [
        (1, amp("a", "u", D0 + D, "X")),  # d: exactly D from offset 0
        (2, amp("a", "u", D0 + 5 * DAY, "Y")),  # a
        (3, amp("a", "u", D0 + 2 * DAY + H + D)),  # a: X's day is now H + D behind
        (4, amp("a", "u", D0 + 5 * DAY, "Y")),  # l: more than H behind
        (5, amp("a", "u", D0 + 2 * DAY + H + D + 1, "Z")),  # a
        (6, amp("a", "u", D0 + 2 * DAY + H + D + 2, "Z")),  # d: 1 ms from offset 5
    ]
    rows = [[_iid(raw), orjson.loads(raw)["time"], off] for off, raw in batch]
    once = _verdicts(store, rows)  # the delivery that crashed before applying
    assert once == "daalad"
    assert _verdicts(store, rows) == once  # re-delivered: its own ids are no duplicates
    result = applier.apply("0", batch, NOW)  # delivered once more, and applied
    want = reference_counts([raw for _, raw in first + batch], TREE, NOW)
    got = {k.split(":")[0]: v for k, v in result.counts.items() if v}
    got["accepted"] += 1  # offset 0, applied before the crash
    assert got == want == {"accepted": 4, "duplicate": 2, "late": 1}


def _iid(raw: bytes) -> str:
    return str(orjson.loads(raw).get("insert_id", ""))


def test_an_id_of_another_partition_follows_that_partitions_watermark(redis_client: redis.Redis) -> None:
    """X accepted in partition 0; partition 1 (watermark far behind) sees X
    again within D. It is a duplicate while partition 0's stored watermark is
    at most H + D past X, and forgotten (accepted) once it is beyond."""
    for beyond, verdict in ((0, "d"), (1, "a")):
        store = Store(redis_client, namespace=f"cross{beyond}")
        applier = BatchApplier(store, [TREE])
        applier.apply("0", [(0, amp("a", "u", D0, "X"))], NOW)
        applier.apply("0", [(1, amp("a", "u", D0 + H + D + beyond))], NOW)
        result = applier.apply("1", [(0, amp("a", "v", D0 + D, "X"))], NOW)
        assert result.counts["duplicate:t" if verdict == "d" else "accepted:t"] == 1


def test_a_sparse_batch_judged_again_meets_its_own_verdicts(redis_client: redis.Redis) -> None:
    """A batch whose events are far apart in offsets (most of its records were
    no event) is remembered by offset, not as a run of one character per
    offset. Judged again (a retry after a Redis error, a re-delivery) once
    the judged watermark moved past it by more than the horizon (batches
    judged ahead), every event gets the verdict it got: accepted, not late."""
    store = Store(redis_client, namespace="sparse")
    tree = "t"

    def judge(rows: list[tuple[str, int, int]]) -> str:
        (verdicts,), _ = store.verdicts_and_offsets([(tree, H, D, verdict_events(rows))], "p", [])
        return verdicts[0]

    sparse = [("s1", D0, 0), ("s2", D0 + 1, 50_000)]  # two events 50,000 offsets apart
    assert judge(sparse) == "aa"
    assert judge([("far", D0 + 3 * H, 60_000)]) == "a"  # the judged watermark: far past D0 + H
    assert judge(sparse) == "aa"  # as it was, nothing written again
    assert judge([("s3", D0 + 2, 60_001)]) == "l"  # a new event that old is late
    log = [v.decode() for v in redis_client.lrange(store.verdict_keys.verdict_log(tree, "p"), 0, -1)]
    assert log[0] == "0,50000,~0=a;50000=a"
