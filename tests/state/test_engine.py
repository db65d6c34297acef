"""The batch write path against a real Redis: exactly-once effect on
re-delivery, and a bounded number of Redis commands per batch."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import redis

from streamer.engine import BatchApplier, Progress
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from tests.trees import example

DAY = 86_400_000
T0 = 20_000 * DAY


def _log(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    names = [
        "lesson_completed",
        "lesson_abandoned",
        "signed_up",
        "subscription_purchased",
        "refund_issued",
    ]
    lines = []
    for _ in range(n):
        lines.append(
            orjson.dumps(
                {
                    "event_type": rng.choice(names),
                    "user_id": f"u{rng.randrange(40)}",
                    "time": T0 + rng.randrange(20 * DAY),
                    "insert_id": f"i{rng.randrange(n)}",  # some duplicates
                    "event_properties": {"minutes": rng.randrange(1, 30)},
                }
            )
        )
    return lines


def _values(client: redis.Redis, applier: BatchApplier) -> list[dict[str, Any]]:
    return evaluate(applier.store, applier.plans[0], [T0 + d * DAY for d in (7, 14, 21)])


def test_redelivery_with_other_boundaries_changes_nothing(redis_client: redis.Redis) -> None:
    lines = _log(600)
    records = list(enumerate(lines))
    once = BatchApplier(Store(redis_client, namespace="once"), [example("education")])
    for start in range(0, len(records), 100):
        once.apply("0", records[start : start + 100], T0 + 30 * DAY)
    expected = _values(redis_client, once)

    again = BatchApplier(Store(redis_client, namespace="again"), [example("education")])
    # crash after applying 0..249, restart from an older committed offset with other batch sizes
    again.apply("0", records[:250], T0 + 30 * DAY)
    again.apply("0", records[:130], T0 + 30 * DAY)  # fully applied already: no-op
    for start in range(100, len(records), 77):
        again.apply("0", records[start : start + 77], T0 + 30 * DAY)
    assert _values(redis_client, again) == expected
    assert any(v["weekly_learning_minutes"] for v in expected)


def test_a_unit_behind_the_others_catches_up_alone(redis_client: redis.Redis) -> None:
    lines = _log(300, seed=3)
    records = list(enumerate(lines))
    reference = BatchApplier(Store(redis_client, namespace="ref"), [example("education")])
    reference.apply("0", records, T0 + 30 * DAY)
    applier = BatchApplier(Store(redis_client, namespace="partial"), [example("education")])
    applier.apply("0", records[:200], T0 + 30 * DAY)
    # simulate a crash that applied only the first unit of the next batch
    unit = applier.units[0]
    redis_client.hset(applier.store.keys.applied(unit), "0", "150")  # pretend it is behind
    applier.apply("0", records[150:], T0 + 30 * DAY)
    got, want = _values(redis_client, applier), _values(redis_client, reference)
    # the pretend-behind unit re-applied 151..199 once more: only it may differ
    differing = {k for g, w in zip(got, want, strict=True) for k in g if g[k] != w[k]}
    readers = applier.plans[0].readers
    assert differing, "re-applying part of a batch must be visible: the test lost its teeth"
    for name in differing:
        assert unit.fingerprint in repr(readers[name])


class _CountingClient:
    """Counts round trips: direct commands and pipeline executions."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self.round_trips = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name == "pipeline":

            def pipeline(*args: Any, **kwargs: Any) -> Any:
                pipe = attr(*args, **kwargs)
                execute = pipe.execute

                def counted() -> Any:
                    self.round_trips += 1
                    return execute()

                pipe.execute = counted
                return pipe

            return pipeline
        if callable(attr):

            def direct(*args: Any, **kwargs: Any) -> Any:
                self.round_trips += 1
                return attr(*args, **kwargs)

            return direct
        return attr


def test_commands_per_batch_do_not_grow_with_events(redis_client: redis.Redis) -> None:
    counting = _CountingClient(redis_client)
    applier = BatchApplier(Store(counting, namespace="cmd"), [example("education")])
    lines = _log(4000, seed=11)
    redis_client.config_resetstat()
    counting.round_trips = 0
    applier.apply("0", list(enumerate(lines)), T0 + 30 * DAY)
    assert counting.round_trips == 2  # verdicts + offsets, then every apply: for 4000 events
    stats = redis_client.info("commandstats")
    # one per unit + verdict + a label admission per breakdown + one per label that got events
    breakdowns = [bd for ts in applier.trees for bd in ts.breakdowns]
    assert breakdowns, "education has breakdowns: the count must cover them"
    fixed = len(applier.units) + 1 + len(breakdowns)
    labels = sum(bd.labeler.plan.max_values + 1 for bd in breakdowns)
    assert fixed < stats["cmdstat_evalsha"]["calls"] <= fixed + labels
    # a second batch: still two round trips, and the labels need no new admission
    counting.round_trips = 0
    applier.apply("0", [(4000 + i, line) for i, line in enumerate(_log(1000, seed=12))], T0 + 30 * DAY)
    assert counting.round_trips == 2


def test_the_apply_round_trip_is_one_block(redis_client: redis.Redis) -> None:
    """Round trip 2 runs as one MULTI/EXEC block on a standalone Redis (no
    other client's command between its scripts); round trip 1 does not."""
    applier = BatchApplier(Store(redis_client, namespace="block"), [example("education")])
    redis_client.config_resetstat()
    applier.apply("0", list(enumerate(_log(2000, seed=13))), T0 + 30 * DAY)
    stats = redis_client.info("commandstats")
    assert stats.get("cmdstat_multi", {}).get("calls") == 1, sorted(stats)
    assert stats.get("cmdstat_exec", {}).get("calls") == 1
    evalsha = stats["cmdstat_evalsha"]["calls"]
    # every unit's script ran inside it: none failed, and the state is there
    assert evalsha > len(applier.units)
    assert stats.get("cmdstat_evalsha", {}).get("failed_calls", 0) == 0
    assert Store(redis_client, namespace="block").applied_offsets(applier.units, "0") == [1999] * len(applier.units)


def test_the_apply_block_survives_a_lost_script_cache(redis_client: redis.Redis) -> None:
    """Redis loses its script cache between a batch's two round trips (a
    restart from its AOF): the block answers NOSCRIPT, the store reloads the
    scripts and runs the block again, and the state and counts are those of
    a batch that saw no restart."""
    records = list(enumerate(_log(1500, seed=21)))
    plain = BatchApplier(Store(redis_client, namespace="noflush"), [example("education")])
    flushed_store = Store(redis_client, namespace="flushed")
    flushed = BatchApplier(flushed_store, [example("education")])
    apply = flushed_store.apply
    flushes: list[int] = []

    def flush_then_apply(*args: Any, **kwargs: Any) -> Any:
        redis_client.script_flush()
        flushes.append(1)
        return apply(*args, **kwargs)

    flushed_store.apply = flush_then_apply  # type: ignore[method-assign]
    redis_client.config_resetstat()
    for start in range(0, 1500, 500):
        want = plain.apply("0", records[start : start + 500], T0 + 30 * DAY)
        got = flushed.apply("0", records[start : start + 500], T0 + 30 * DAY)
        assert got.counts == want.counts and got.rejected == want.rejected
    assert len(flushes) == 3
    # each flush made the block's scripts fail once before the reload
    assert redis_client.info("commandstats")["cmdstat_evalsha"]["failed_calls"] >= 3
    assert _values(redis_client, flushed) == _values(redis_client, plain)
    assert flushed_store.applied_offsets(flushed.units, "0") == [1499] * len(flushed.units)


def test_another_partitions_watermark_does_not_forget_insert_ids(redis_client: redis.Redis) -> None:
    """Insert ids are forgotten by the watermark of the partition that recorded
    them: a partition far ahead (another worker, a partition that was not
    stalled by a rebalance) must not make a slower partition accept a re-sent
    event as new."""
    applier = BatchApplier(Store(redis_client, namespace="forget"), [example("education")])
    plan = applier.plans[0]
    event = {"event_type": "lesson_completed", "user_id": "u1", "time": T0 + DAY,
             "insert_id": "dup-1", "event_properties": {"minutes": 10}}
    ahead = dict(event, user_id="u2", insert_id="far", time=T0 + DAY + plan.horizon_ms + plan.dedupe_ms + DAY)
    now = T0 + 90 * DAY
    first = applier.apply("slow:0", [(0, orjson.dumps(event))], now)
    assert first.counts["accepted:education"] == 1
    applier.apply("fast:0", [(0, orjson.dumps(ahead))], now)
    again = applier.apply("slow:0", [(1, orjson.dumps(event))], now)
    assert again.counts["duplicate:education"] == 1, again.counts
    assert again.counts["accepted:education"] == 0


def test_apply_is_commit_of_prepare(redis_client: redis.Redis) -> None:
    """``prepare`` does no I/O; ``commit`` of it (twice: a retried commit) does
    what ``apply`` does, counts included."""
    records = list(enumerate(_log(300, seed=3)))
    direct = BatchApplier(Store(redis_client, namespace="direct"), [example("education")])
    split = BatchApplier(Store(redis_client, namespace="split"), [example("education")])
    for start in range(0, 300, 100):
        want = direct.apply("0", records[start : start + 100], T0 + 30 * DAY)
        before = redis_client.dbsize()
        prepared = split.prepare(records[start : start + 100], T0 + 30 * DAY)
        assert redis_client.dbsize() == before
        committing = time.perf_counter()
        got = split.commit("0", prepared)
        # where the commit's time went: three stages, adding up to it
        assert sorted(got.stages) == ["aggregate", "apply", "verdicts"]
        assert all(s > 0 for s in got.stages.values()), got.stages
        assert sum(got.stages.values()) <= time.perf_counter() - committing
        assert split.commit("0", prepared).counts == got.counts  # again: a no-op, counted the same
        assert got.counts == want.counts and got.rejected == want.rejected
    assert _values(redis_client, split) == _values(redis_client, direct)


def test_a_batch_judged_before_the_previous_one_applied(redis_client: redis.Redis) -> None:
    """A worker's lane judges batch k+1 while batch k applies: its round trip 1
    reads the applied offsets and watermark from before k's apply. With the
    lane's ``Progress`` its apply still expects the offsets k set (no CAS
    conflict, no extra round trip) and the stored watermark never goes back,
    although k+1's events are older than k's."""
    plan_tree = example("education")
    store = Store(redis_client, namespace="ahead")
    applier = BatchApplier(store, [plan_tree])
    event = {"event_type": "lesson_completed", "user_id": "u1", "insert_id": "",
             "event_properties": {"minutes": 10}}
    newer = [(i, orjson.dumps(dict(event, user_id=f"u{i}", time=T0 + 5 * DAY + i))) for i in range(3)]
    older = [(3 + i, orjson.dumps(dict(event, user_id=f"v{i}", time=T0 + 4 * DAY + i))) for i in range(3)]
    now = T0 + 30 * DAY
    first, second = applier.prepare(newer, now), applier.prepare(older, now)
    progress = Progress()
    judged = [applier.judge("0", first), applier.judge("0", second)]
    rereads: list[Any] = []
    store.applied_offsets = lambda *a, **k: rereads.append(a) or Store.applied_offsets(store, *a, **k)  # type: ignore[method-assign]
    for batch, verdicts in zip((first, second), judged, strict=True):
        result = applier.apply_judged("0", batch, verdicts, progress)
        assert result.counts["accepted:education"] == 3
    assert rereads == []  # every apply expected the offset the one before it set
    assert store.applied_offsets(applier.units, "0") == [5] * len(applier.units)
    assert redis_client.hget(store.keys.watermark("education"), "0") == str(T0 + 5 * DAY + 2).encode()
    # without the lane's progress the second apply conflicts, re-reads and still applies
    again = BatchApplier(Store(redis_client, namespace="ahead-blind"), [plan_tree])
    first, second = again.prepare(newer, now), again.prepare(older, now)
    judged = [again.judge("0", first), again.judge("0", second)]
    for batch, verdicts in zip((first, second), judged, strict=True):
        again.apply_judged("0", batch, verdicts)
    assert _values(redis_client, again) == _values(redis_client, applier)



def test_a_backfill_admits_no_breakdown_labels(redis_client: redis.Redis) -> None:
    from streamer.engine import Backfill

    applier = BatchApplier(Store(redis_client, namespace="bf"), [example("education")])
    assert applier.trees[0].breakdowns  # education has broken-down metrics
    prepared = applier.prepare(list(enumerate(_log(10, seed=4))), T0, Backfill({0: 9}))
    assert prepared.admissions == [] and prepared.backfill == Backfill({0: 9})
    assert prepared.first == 0 and prepared.last == 9


def test_reads_select_by_names_in_log_order() -> None:
    """A unit reads the events its filters name, in log order, whichever way
    the set is found (one name: the by-name list; several: a pass); a set
    asked again is the same list, and so is its list of bare events."""
    from streamer.engine import _Reads
    from streamer.events.types import Event

    names = ["a", "b", "c", "a", "b", "a"]
    events = [(10 + i, Event(name=n, user=f"u{i}", time_ms=i)) for i, n in enumerate(names)]
    reads = _Reads(events)
    assert reads.select(None) is events
    for wanted in ({"a"}, {"b"}, {"a", "b"}, {"a", "c"}, {"a", "b", "c"}, {"a", "zzz"}, {"zzz"}, {"y", "zzz"}):
        got = reads.select(frozenset(wanted))
        assert got == [pair for pair in events if pair[1].name in wanted], wanted
        assert reads.select(frozenset(wanted)) is got
        assert reads.bare(got) == [ev for _, ev in got] and reads.bare(got) is reads.bare(got)


def test_a_bucket_with_more_distinct_keys_than_lua_can_unpack(redis_client: redis.Redis) -> None:
    """An approximate distinct count receiving 20,000 distinct users in one
    bucket in one batch: more values than Lua's unpack() takes at once (about
    8,000), so the script adds them in chunks; the count is within the
    HyperLogLog's error."""
    from streamer.bench.memory import distinct_tree

    tree = distinct_tree(example("education"), approximate=True)
    t = T0 + 3 * DAY + 3_600_000
    lines = [
        orjson.dumps({"event_type": "lesson_completed", "user_id": f"u{i}", "time": t + i,
                      "insert_id": f"i{i}", "event_properties": {"minutes": 1}})
        for i in range(20_000)
    ]
    store = Store(redis_client, namespace="hll")
    applier = BatchApplier(store, [tree])
    result = applier.apply("0", list(enumerate(lines)), T0 + 4 * DAY)
    assert result.counts["accepted:" + tree.tree] == 20_000
    value = evaluate(store, applier.plans[0], [T0 + 4 * DAY])[0]["weekly_active_learners"]
    assert abs(value - 20_000) <= 0.03 * 20_000, value
