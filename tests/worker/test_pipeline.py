"""The worker's batch pipeline (streamer/worker/consumer.py) against a real
Redis, with a scripted consumer in place of Kafka: per partition, verdicts,
applies and Kafka commits each run in offset order, a batch's apply after its
verdicts and its commit after its apply, at most two batches judged beyond
the one applying; batch k+1 is prepared and judged while batch k applies; a
drain (rebalance, stop) lets the applying batch finish and drops the others,
judged or not, and reading them again gives the serial state; the state
equals the serial ``BatchApplier.apply``; a lane runs in threads of its own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis

from streamer.engine import (
    Backfill,
    BatchApplier,
    BatchResult,
    EngineError,
    Judged,
    PreparedBatch,
    Progress,
)
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.worker.consumer import EventConsumer, partition_id
from streamer.worker.deadletter import DeadLetters
from streamer.worker.metrics import WorkerMetrics
from tests.trees import example

DAY = 86_400_000
T0 = 20_000 * DAY
NOW = T0 + 30 * DAY
TOPIC = "events"


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes | None
    value: bytes | None


def _lines(n: int, seed: int) -> list[bytes]:
    """Education events with duplicate insert ids, some late events and a few
    invalid records (dead letters)."""
    rng = random.Random(seed)
    names = ["lesson_completed", "lesson_abandoned", "signed_up", "subscription_purchased"]
    out = []
    for i in range(n):
        if rng.random() < 0.02:
            out.append(b"not json")
            continue
        late = rng.random() < 0.03
        out.append(orjson.dumps({
            "event_type": rng.choice(names),
            "user_id": f"u{rng.randrange(30)}",
            "time": T0 + (0 if late else i * 60_000) + rng.randrange(DAY),
            "insert_id": f"{seed}-{rng.randrange(n)}",  # duplicates, within a partition
            "event_properties": {"minutes": rng.randrange(1, 30)},
        }))
    return out


def _last_event(batch: Sequence[Record]) -> int:
    """The offset of the batch's last decodable event (what the verdicts see)."""
    return max(r.offset for r in batch if r.value != b"not json")


def _batches(lines: Sequence[bytes], size: int) -> list[list[Record]]:
    records = [Record(i, b"k", v) for i, v in enumerate(lines)]
    return [records[i : i + size] for i in range(0, len(records), size)]


class ScriptedConsumer:
    """``getmany`` hands out the scripted fetches, then nothing; ``commit`` is logged."""

    def __init__(self, fetches: list[dict[TP, list[Record]]], log: list[tuple[Any, ...]]) -> None:
        self.fetches = list(fetches)
        self.log = log
        self.commits: dict[TP, list[int]] = {}

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TP, list[Record]]:
        if self.fetches:
            return self.fetches.pop(0)
        await asyncio.sleep(0.01)
        return {}

    async def commit(self, offsets: dict[TP, int]) -> None:
        for tp, offset in offsets.items():
            self.log.append(("commit", partition_id(tp.topic, tp.partition), offset))
            self.commits.setdefault(tp, []).append(offset)

    def assignment(self) -> set[TP]:
        return set()

    def highwater(self, tp: TP) -> int | None:
        return None


class Producer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes | None, headers: Any) -> asyncio.Future[None]:
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class LoggingStore(Store):
    """Logs, in call order across threads, each verdict request (the batch's
    last offset) and each apply round trip once it returned."""

    def __init__(self, client: Any, namespace: str, log: list[tuple[Any, ...]]) -> None:
        super().__init__(client, namespace=namespace)
        self.log = log
        self.lock = threading.Lock()

    def first_round_trip(self, requests: Any, partition: str, units: Any, scripts: Any = (),
                         field: str | None = None) -> Any:
        last = max((events[-1] for _, _, _, events in requests if events), default=None)  # flat: the last offset
        with self.lock:
            self.log.append(("verdicts", partition, last))
        return super().first_round_trip(requests, partition, units, scripts, field)

    def apply(self, calls: Any, partition: str, watermarks: Any = (), **kwargs: Any) -> list[bool]:
        ok = super().apply(calls, partition, watermarks, **kwargs)
        with self.lock:
            self.log.append(("applied", partition, max((c[2] for c in calls), default=None)))
        return ok


def _consumer(consumer: Any, applier: BatchApplier, **kwargs: Any) -> EventConsumer:
    return EventConsumer(consumer, applier, DeadLetters(Producer(), "dead"), WorkerMetrics(),
                         max_records=10_000, timeout_ms=10, **kwargs)


async def _run_until_committed(events: EventConsumer, consumer: ScriptedConsumer,
                               ends: dict[TP, int]) -> None:
    runner = asyncio.create_task(events.run())
    try:
        for _ in range(3000):
            if all(consumer.commits.get(tp, [None])[-1] == end for tp, end in ends.items()):
                break
            if runner.done():
                runner.result()
            await asyncio.sleep(0.01)
    finally:
        events.stop()
        await runner
    assert all(consumer.commits.get(tp, [None])[-1] == end for tp, end in ends.items()), consumer.commits


def _values(store: Store, applier: BatchApplier) -> list[dict[str, Any]]:
    return evaluate(store, applier.plans[0], [T0 + d * DAY for d in (7, 14, 21, 28)])


def test_pipeline_orders_each_partition_and_equals_serial(redis_client: redis.Redis) -> None:
    tps = [TP(TOPIC, 0), TP(TOPIC, 1)]
    batches = {tp: _batches(_lines(900, seed=tp.partition), 150) for tp in tps}
    # fetches mix partitions like getmany does: several batches of a partition in a row
    fetches = [{tps[0]: batches[tps[0]][i], tps[1]: batches[tps[1]][i]} for i in range(6)]
    fetches.insert(2, {tps[0]: []})
    log: list[tuple[Any, ...]] = []
    store = LoggingStore(redis_client, "pipe", log)
    applier = BatchApplier(store, [example("education")])
    consumer = ScriptedConsumer(fetches, log)
    ends = {tp: batches[tp][-1][-1].offset + 1 for tp in tps}
    asyncio.run(_run_until_committed(_consumer(consumer, applier), consumer, ends))

    for tp in tps:
        part = partition_id(tp.topic, tp.partition)
        steps = [(kind, off) for kind, p, off in log if p == part]
        at = {step: i for i, step in enumerate(steps)}
        assert len(at) == len(steps) == 3 * len(batches[tp])  # each step once
        order = [[("verdicts", _last_event(b)), ("applied", b[-1].offset), ("commit", b[-1].offset + 1)]
                 for b in batches[tp]]
        for kind in range(3):  # verdicts, applies, commits: each in offset order
            assert [at[o[kind]] for o in order] == sorted(at[o[kind]] for o in order)
        for k, (verdicts, applied, commit) in enumerate(order):
            assert at[verdicts] < at[applied] < at[commit]
            if k >= 3:  # at most two batches judged beyond the one applying
                assert at[order[k - 3][1]] < at[verdicts]

    serial = BatchApplier(Store(redis_client, namespace="serial"), [example("education")])
    for tp in tps:
        for batch in batches[tp]:
            serial.apply(partition_id(tp.topic, tp.partition),
                         [(r.offset, r.value or b"") for r in batch], NOW)
    want = _values(serial.store, serial)
    assert _values(store, applier) == want
    assert any(v["weekly_learning_minutes"] for v in want)


class GatedApplier(BatchApplier):
    """The apply of the first batch waits (up to 10 s) for the second batch to
    be judged: it only goes on early when the next batch is prepared and
    judged while one applies."""

    def __init__(self, store: Store, trees: Any) -> None:
        super().__init__(store, trees)
        self.second_judged = threading.Event()
        self.overlapped: bool | None = None
        self.release = threading.Event()
        self.release.set()
        self.committing = threading.Event()

    def judge(self, partition: str, batch: PreparedBatch) -> Judged:
        judged = super().judge(partition, batch)
        if batch.first > 0:
            self.second_judged.set()
        return judged

    def apply_judged(self, partition: str, batch: PreparedBatch, judged: Judged,
                     progress: Progress | None = None) -> BatchResult:
        if batch.first == 0:
            self.committing.set()
            self.overlapped = self.second_judged.wait(10)
            self.release.wait(10)
        return super().apply_judged(partition, batch, judged, progress)


def test_next_batch_is_prepared_and_judged_while_one_applies(redis_client: redis.Redis) -> None:
    tp = TP(TOPIC, 0)
    batches = _batches(_lines(300, seed=5), 100)
    log: list[tuple[Any, ...]] = []
    applier = GatedApplier(LoggingStore(redis_client, "gated", log), [example("education")])
    consumer = ScriptedConsumer([{tp: b} for b in batches], log)
    asyncio.run(_run_until_committed(_consumer(consumer, applier), consumer, {tp: 300}))
    assert applier.overlapped is True
    assert consumer.commits[tp] == [100, 200, 300]
    # batch 2's verdicts were asked for before batch 1's apply, and the state is the serial one
    steps = [entry[0] for entry in log if entry[1] == "events:0"]
    assert steps[:2] == ["verdicts", "verdicts"] and steps.index("applied") >= 2
    serial = BatchApplier(Store(redis_client, namespace="gated-serial"), [example("education")])
    for batch in batches:
        serial.apply("events:0", [(r.offset, r.value or b"") for r in batch], NOW)
    assert _values(applier.store, applier) == _values(serial.store, serial)


def test_drain_finishes_the_applying_batch_and_drops_the_rest(redis_client: redis.Redis) -> None:
    """Batch 1 applies (held), batch 2 is judged meanwhile: the drain waits for
    batch 1, drops batch 2 (judged, not applied) and batch 3. Read again from
    the committed offset, as the partition's next owner does, batches 2 and 3
    get the verdicts they got and the state is the serial one."""
    tp = TP(TOPIC, 0)
    batches = _batches(_lines(300, seed=9), 100)
    log: list[tuple[Any, ...]] = []
    store = LoggingStore(redis_client, "drain", log)
    applier = GatedApplier(store, [example("education")])
    applier.release.clear()
    consumer = ScriptedConsumer([], log)

    async def scenario() -> None:
        events = _consumer(consumer, applier)
        for batch in batches:
            events.submit(tp, batch)
        deadline = time.monotonic() + 15
        while not (applier.committing.is_set() and applier.second_judged.is_set()):
            assert time.monotonic() < deadline, "batch 1 never applied while batch 2 was judged"
            await asyncio.sleep(0.005)
        drain = asyncio.create_task(events.drain())
        await asyncio.sleep(0.05)
        assert not drain.done()  # waits for the applying batch
        applier.release.set()
        await asyncio.wait_for(drain, 15)
        await events.close()
        assert events._inflight == 0

    asyncio.run(scenario())
    assert consumer.commits == {tp: [100]}
    assert [entry for entry in log if entry[0] == "applied"] == [("applied", "events:0", 99)]
    assert ("verdicts", "events:0", _last_event(batches[1])) in log  # judged, then dropped
    assert store.applied_offsets(applier.units, "events:0") == [99] * len(applier.units)

    # the next owner reads batches 2 and 3 again
    again = BatchApplier(store, [example("education")])
    consumer = ScriptedConsumer([{tp: b} for b in batches[1:]], log)
    asyncio.run(_run_until_committed(_consumer(consumer, again), consumer, {tp: 300}))
    serial = BatchApplier(Store(redis_client, namespace="drain-serial"), [example("education")])
    for batch in batches:
        serial.apply("events:0", [(r.offset, r.value or b"") for r in batch], NOW)
    assert _values(store, again) == _values(serial.store, serial)
    assert any(v["weekly_learning_minutes"] for v in _values(store, again))


class TimedApplier(BatchApplier):
    """Records when each prepare, judge and apply ran (perf_counter intervals)."""

    def __init__(self, store: Store, trees: Any) -> None:
        super().__init__(store, trees)
        self.spans: list[tuple[str, float, float]] = []
        self.lock = threading.Lock()

    def prepare(self, records: Sequence[tuple[int, bytes]], now_ms: int,
                backfill: Backfill | None = None) -> PreparedBatch:
        started = time.perf_counter()
        batch = super().prepare(records, now_ms, backfill)
        with self.lock:
            self.spans.append(("prepare", started, time.perf_counter()))
        return batch

    def judge(self, partition: str, batch: PreparedBatch) -> Judged:
        started = time.perf_counter()
        judged = super().judge(partition, batch)
        with self.lock:
            self.spans.append(("judge", started, time.perf_counter()))
        return judged

    def apply_judged(self, partition: str, batch: PreparedBatch, judged: Judged,
                     progress: Progress | None = None) -> BatchResult:
        started = time.perf_counter()
        result = super().apply_judged(partition, batch, judged, progress)
        with self.lock:
            self.spans.append(("apply", started, time.perf_counter()))
        return result


def test_inflight_of_one_batch_is_serial(redis_client: redis.Redis) -> None:
    """``max_inflight <= max_records``: one batch at a time, over every
    partition: no prepare runs while a batch is judged or applied; the one
    lane serves both partitions, whose offsets coincide, and the state is
    the serial ``BatchApplier.apply``'s (a lane's knowledge of its applies
    is per partition)."""
    tps = [TP(TOPIC, 0), TP(TOPIC, 1)]
    batches = {tp: _batches(_lines(400, seed=20 + tp.partition), 100) for tp in tps}
    fetches = [{tp: batches[tp][i] for tp in tps} for i in range(4)]
    log: list[tuple[Any, ...]] = []
    applier = TimedApplier(LoggingStore(redis_client, "serial-mode", log), [example("education")])
    consumer = ScriptedConsumer(fetches, log)
    events = _consumer(consumer, applier, max_inflight=10_000)
    assert events.serial
    asyncio.run(_run_until_committed(events, consumer, {tp: 400 for tp in tps}))
    spans = sorted(applier.spans, key=lambda span: span[1])
    assert [kind for kind, _, _ in spans] == ["prepare", "judge", "apply"] * 8
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(spans))  # never two at once
    serial = BatchApplier(Store(redis_client, namespace="serial-mode-ref"), [example("education")])
    for tp in tps:
        for batch in batches[tp]:
            serial.apply(partition_id(tp.topic, tp.partition), [(r.offset, r.value or b"") for r in batch], NOW)
    assert applier.store.applied_offsets(applier.units, "events:1") == [399] * len(applier.units)
    assert _values(applier.store, applier) == _values(serial.store, serial)


class FailingApplier(BatchApplier):
    def judge(self, partition: str, batch: PreparedBatch) -> Judged:
        raise EngineError("boom")


def test_a_lane_error_is_raised_from_run(redis_client: redis.Redis) -> None:
    tp = TP(TOPIC, 0)
    log: list[tuple[Any, ...]] = []
    applier = FailingApplier(Store(redis_client, namespace="failing"), [example("education")])
    consumer = ScriptedConsumer([{tp: b} for b in _batches(_lines(200, seed=3), 100)], log)
    events = _consumer(consumer, applier)

    async def scenario() -> None:
        with pytest.raises(EngineError, match="boom"):
            await asyncio.wait_for(events.run(), 30)

    asyncio.run(scenario())
    assert consumer.commits == {}


class OutageApplier(BatchApplier):
    """Partition 0's first apply is written to Redis, then returns only once
    the consumer saw partition 1's verdicts fail (Redis went away meanwhile);
    partition 1's retry waits for ``back``."""

    def __init__(self, store: Store, trees: Any) -> None:
        super().__init__(store, trees)
        self.written = threading.Event()
        self.back = threading.Event()
        self.events: EventConsumer | None = None
        self.calls_1 = 0

    def apply_judged(self, partition: str, batch: PreparedBatch, judged: Judged,
                     progress: Progress | None = None) -> BatchResult:
        result = super().apply_judged(partition, batch, judged, progress)
        if partition == partition_id(TOPIC, 0):
            self.written.set()
            deadline = time.monotonic() + 10
            while self.events is not None and self.events.healthy and time.monotonic() < deadline:
                time.sleep(0.005)
        return result

    def judge(self, partition: str, batch: PreparedBatch) -> Judged:
        if partition == partition_id(TOPIC, 1):
            self.calls_1 += 1
            if self.calls_1 == 1:
                self.written.wait(10)
                raise redis.exceptions.ConnectionError("Redis went away")
            self.back.wait(10)
        return super().judge(partition, batch)


def test_a_reply_from_before_an_outage_does_not_mark_redis_up(redis_client: redis.Redis) -> None:
    """One lane's commit answered just before Redis went, returning after
    another lane saw it gone, says nothing about Redis now: the worker stays
    unhealthy (``/readyz``, ``northstar_redis_up``) until a call made since
    succeeds. The batch itself is committed: its writes are in Redis."""
    tps = [TP(TOPIC, 0), TP(TOPIC, 1)]
    log: list[tuple[Any, ...]] = []
    applier = OutageApplier(Store(redis_client, namespace="outage"), [example("education")])
    consumer = ScriptedConsumer([], log)
    events = _consumer(consumer, applier)
    applier.events = events

    def redis_up() -> float | None:
        return events.metrics.registry.get_sample_value("northstar_redis_up")

    async def scenario() -> None:
        runner = asyncio.create_task(events.run())
        for tp in tps:
            events.submit(tp, _batches(_lines(100, seed=40 + tp.partition), 100)[0])
        deadline = time.monotonic() + 15
        while tps[0] not in consumer.commits:
            assert time.monotonic() < deadline, "partition 0's batch was never committed"
            await asyncio.sleep(0.005)
        assert consumer.commits[tps[0]] == [100]
        assert events.healthy is False and redis_up() == 0
        applier.back.set()
        while tps[1] not in consumer.commits:
            assert time.monotonic() < deadline, "partition 1's retry was never committed"
            await asyncio.sleep(0.005)
        assert events.healthy is True and redis_up() == 1
        events.stop()
        await asyncio.wait_for(runner, 15)

    asyncio.run(scenario())


class DownApplier(BatchApplier):
    """Redis is unreachable for every judge."""

    def __init__(self, store: Store, trees: Any) -> None:
        super().__init__(store, trees)
        self.tries = 0

    def judge(self, partition: str, batch: PreparedBatch) -> Judged:
        self.tries += 1
        raise redis.exceptions.ConnectionError("Redis went away")


def test_a_drain_during_an_outage_does_not_wait_for_the_batches_it_drops(redis_client: redis.Redis) -> None:
    """A rebalance while Redis is down: the batch whose judge is retrying was
    not applying yet, so the drain drops it and returns without waiting for
    Redis; nothing is committed and the lane is idle."""
    tp = TP(TOPIC, 0)
    applier = DownApplier(Store(redis_client, namespace="down"), [example("education")])
    consumer = ScriptedConsumer([], [])

    async def scenario() -> None:
        events = _consumer(consumer, applier, retry_max_s=0.2)
        events.submit(tp, _batches(_lines(100, seed=50), 100)[0])
        deadline = time.monotonic() + 15
        while applier.tries < 2:  # retrying
            assert time.monotonic() < deadline, "the judge was never retried"
            await asyncio.sleep(0.005)
        await asyncio.wait_for(events.drain(), 5)  # Redis is still down
        assert events._inflight == 0
        await events.close()

    asyncio.run(scenario())
    assert consumer.commits == {}


def test_lanes_run_in_threads_of_their_own(redis_client: redis.Redis) -> None:
    """Every thread of the loop's shared pool is blocked (what another lane or
    the evaluator holding a thread through a slow Redis round trip looked
    like): a lane still prepares, judges and applies, in its own threads."""
    tp = TP(TOPIC, 0)
    batches = _batches(_lines(300, seed=9), 100)
    applier = BatchApplier(Store(redis_client, namespace="own-threads"), [example("education")])
    consumer = ScriptedConsumer([{tp: b} for b in batches], [])
    seen: set[str] = set()
    original = applier.judge

    def judge(partition: str, prepared: PreparedBatch) -> Judged:
        seen.add(threading.current_thread().name)
        return original(partition, prepared)

    applier.judge = judge  # type: ignore[method-assign]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        release = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="shared")
        loop.set_default_executor(pool)
        blocked = [loop.run_in_executor(None, release.wait) for _ in range(2)]
        try:
            await asyncio.wait_for(_run_until_committed(_consumer(consumer, applier), consumer, {tp: 300}), 60)
        finally:
            release.set()
            await asyncio.gather(*blocked)

    asyncio.run(main())
    assert consumer.commits[tp] == [100, 200, 300]
    assert seen and all(name.startswith("lane ") for name in seen), seen
