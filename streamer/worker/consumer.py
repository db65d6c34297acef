"""The high-volume event path: aiokafka ``getmany`` batches -> engine -> dead
letters -> commit. faust's own stream path tops out near 5k events/s here;
``getmany`` reads ~330k/s (docs/performance.md), so the worker keeps faust for
its lifecycle and leader election and reads events with this loop.

Order per partition batch: apply to Redis (exactly-once by applied offsets),
then send dead letters (acknowledged), then commit the Kafka offset. A crash
anywhere re-delivers the batch: state changes nothing the second time; dead
letters may be written twice (at-least-once).

The batch pipeline (docs/worker.md): every assigned partition has a lane of
three stages, each running its work in a thread: *prepare* (decode, verdict
requests: CPU only), *judge* (round trip 1: the verdicts and the units'
applied offsets) and *apply* (the pre-aggregation, round trip 2, dead
letters, the Kafka commit). A lane prepares batch k+2 and judges batch k+1
while it applies batch k, and lanes of different partitions run side by
side, so the worker's Python work overlaps Redis's and Redis always has the
next request of a lane. Within a lane each stage takes the batches in
offset order, one at a time: the verdict script keeps the watermark it
judges by, and the lane's ``Progress`` what its applies set, so judging
ahead gives the serial worker's verdicts and state. At most
``max_inflight`` records are fetched and not committed yet;
``max_inflight <= max_records`` makes the worker serial (one lane for every
partition, each batch prepared once the previous one is committed). A
revocation or a stop drops the batches not applying yet, judged or not (the
partition's next owner re-reads them from the committed offset and gets the
same verdicts) and waits for the ones in a round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from aiokafka.errors import CommitFailedError, IllegalStateError

from streamer.engine import BatchApplier, BatchResult, Judged, PreparedBatch, Progress
from streamer.worker.deadletter import DeadLetters
from streamer.worker.metrics import WorkerMetrics
from streamer.worker.threads import run_in

logger = logging.getLogger(__name__)
T = TypeVar("T")


class _Dropped(Exception):
    """A batch dropped by a drain while its judge waited for Redis: it stops
    retrying (the partition's next owner reads it again)."""


class BatchAbandoned(Exception):
    """Raised out of ``run()`` when the worker is stopped while Redis is
    unavailable: the batch in hand is dropped unwritten and uncommitted (the
    next owner of its partition reads it again)."""


def partition_id(topic: str, partition: int) -> str:
    """The partition's name in Redis bookkeeping (applied offsets, watermarks)."""
    return f"{topic}:{partition}"


_REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    # maxmemory reached with noeviction: it refuses writes until memory is
    # freed or raised: wait, like for an outage
    redis.exceptions.OutOfMemoryError,
)


@dataclass(eq=False)
class _Batch:
    """One partition's records from one ``getmany``, on their way through a lane."""

    tp: Any
    records: Sequence[Any]
    """Let go once applied (``_apply_batch``): ``size`` and ``end`` stay."""
    fetched: float
    prepared: PreparedBatch | None = None
    judged: Judged | None = None
    dropped: bool = False
    dead: list[tuple[int, Any, bytes, Any]] = field(default_factory=list)
    """Once applied: the dead letters (offset, key, value, rejection)."""

    def __post_init__(self) -> None:
        self.size = len(self.records)
        self.end = self.records[-1].offset + 1  # the offset to commit


@dataclass(eq=False)
class _Lane:
    """``inbox`` -> prepare -> ``ready`` (one slot) -> judge -> ``judged`` (one
    slot) -> apply. A serial lane (every partition's) judges and applies each
    batch itself before preparing the next."""

    serial: bool
    inbox: asyncio.Queue[_Batch] = field(default_factory=asyncio.Queue)
    ready: asyncio.Queue[_Batch] = field(default_factory=lambda: asyncio.Queue(maxsize=1))
    judged: asyncio.Queue[_Batch] = field(default_factory=lambda: asyncio.Queue(maxsize=1))
    pending: set[_Batch] = field(default_factory=set)
    """Batches fetched and not applying yet: what a drain drops."""
    busy: int = 0
    """Batches of this lane in a Redis step (judged or applied) now."""
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while ``busy`` is 0."""
    progress: dict[Any, Progress] = field(default_factory=dict)
    """Per partition, what its applies left (its batch k+1 is judged while k
    applies); a serial lane serves every partition, and offsets and
    watermarks are per partition."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    executor: ThreadPoolExecutor | None = None
    """The lane's own threads, one per stage: a stage never waits for a
    thread another lane (or the evaluator) holds through a Redis round trip."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in one of the lane's threads."""
        assert self.executor is not None
        return await run_in(self.executor, fn, *args)


class EventConsumer:
    """Applies every fetched partition batch with the applier of its topic:
    ``applier`` is one BatchApplier for every topic, or ``{topic: applier}``
    so that a tree only ever sees the records of its own ``source.topic``."""

    def __init__(
        self,
        consumer: Any,
        applier: BatchApplier | Mapping[str, BatchApplier],
        dead_letters: DeadLetters,
        metrics: WorkerMetrics,
        *,
        max_records: int = 10_000,
        timeout_ms: int = 200,
        retry_max_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        max_inflight: int | None = None,
    ) -> None:
        self.consumer = consumer
        self.applier = applier
        self._appliers = dict(applier) if isinstance(applier, Mapping) else applier
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.max_records = max_records
        self.timeout_ms = timeout_ms
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.max_inflight = max_inflight if max_inflight is not None else 3 * max_records
        """Fetch again only while fewer records than this are fetched and not committed."""
        self.serial = self.max_inflight <= max_records
        self.healthy = True
        self._outages = 0
        """Redis failures seen so far, by any lane: a success counts as Redis
        being back only when none was seen since its call began."""
        self._stopping = False
        self._positions: dict[Any, int] = {}
        self._lanes: dict[Any, _Lane] = {}
        self._inflight = 0
        self._room = asyncio.Event()
        self._failure: BaseException | None = None

    def stop(self) -> None:
        self._stopping = True
        self._room.set()

    async def run(self) -> None:
        """Fetch batches and hand them to the partitions' lanes until ``stop()``;
        then drop what is not committing yet and wait for the rest. A lane's
        error (:class:`BatchAbandoned` included) is raised from here."""
        try:
            while not self._stopping and self._failure is None:
                if self._inflight >= (1 if self.serial else self.max_inflight):
                    self._room.clear()
                    await self._room.wait()
                    continue
                batches = await self.consumer.getmany(timeout_ms=self.timeout_ms, max_records=self.max_records)
                fetched = time.perf_counter()
                for tp, records in batches.items():
                    if records and not self._stopping:  # stopping: the next owner reads them
                        self.submit(tp, records, fetched)
                self._update_lag()
        finally:
            await self.drain()
            await self.close()
        if self._failure is not None:
            raise self._failure

    def submit(self, tp: Any, records: Sequence[Any], fetched: float | None = None) -> None:
        """Queue one partition's records (offsets increasing) on its lane."""
        key = None if self.serial else tp
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(self.serial)
            lane.executor = ThreadPoolExecutor(1 if lane.serial else 3, thread_name_prefix=f"lane {key}")
            lane.idle.set()
            lane.tasks = [asyncio.create_task(self._prepare_stage(lane), name=f"prepare {key}")]
            if not lane.serial:
                lane.tasks.append(asyncio.create_task(self._judge_stage(lane), name=f"judge {key}"))
                lane.tasks.append(asyncio.create_task(self._apply_stage(lane), name=f"apply {key}"))
            for task in lane.tasks:
                task.add_done_callback(self._on_stage_done)
        batch = _Batch(tp, records, time.perf_counter() if fetched is None else fetched)
        self._inflight += len(records)
        lane.pending.add(batch)
        lane.inbox.put_nowait(batch)

    async def drain(self) -> None:
        """Drop every batch not committing yet and wait for the committing ones:
        before partitions move (a rebalance) and when stopping."""
        for lane in self._lanes.values():
            for batch in lane.pending:
                batch.dropped = True
            lane.pending.clear()
        await asyncio.gather(*(lane.idle.wait() for lane in self._lanes.values()))

    async def close(self) -> None:
        """End every lane (after ``drain``): the next batch of a partition starts a new one."""
        tasks = [t for lane in self._lanes.values() for t in lane.tasks]
        for lane in self._lanes.values():
            if lane.executor is not None:  # a thread still in a call ends it and exits
                lane.executor.shutdown(wait=False)
        self._lanes.clear()
        self._inflight = 0
        self._room.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def applier_for(self, topic: str) -> BatchApplier:
        appliers = self._appliers
        return appliers[topic] if isinstance(appliers, dict) else appliers

    # ------------------------------------------------------------------ stages
    async def _prepare_stage(self, lane: _Lane) -> None:
        while True:
            batch = await lane.inbox.get()
            if not batch.dropped:
                batch.prepared = await self._prepare(lane, batch)
            if batch.dropped:  # maybe while it was being prepared
                self._release(batch)
            elif lane.serial:
                await self._judge_in_lane(lane, batch)
                if batch.dropped:
                    self._release(batch)
                else:
                    await self._apply_in_lane(lane, batch)
            else:
                await lane.ready.put(batch)

    async def _judge_stage(self, lane: _Lane) -> None:
        while True:
            batch = await lane.ready.get()
            if not batch.dropped:
                await self._judge_in_lane(lane, batch)
            if batch.dropped:  # maybe while it was being judged
                self._release(batch)
            else:
                await lane.judged.put(batch)

    async def _apply_stage(self, lane: _Lane) -> None:
        while True:
            batch = await lane.judged.get()
            if batch.dropped:
                self._release(batch)
            else:
                await self._apply_in_lane(lane, batch)

    async def _judge_in_lane(self, lane: _Lane, batch: _Batch) -> None:
        # a drain meanwhile waits for the round trip, then drops the batch:
        # judged and not applied, it is judged the same again by the next reader
        self._busy(lane, +1)
        try:
            await self._with_retry(batch, lambda: self._judge(lane, batch))
        except _Dropped:
            pass
        finally:
            self._busy(lane, -1)

    async def _apply_in_lane(self, lane: _Lane, batch: _Batch) -> None:
        # no await between the caller's ``dropped`` check and these two lines:
        # a drain either dropped this batch or waits for its apply and commit
        lane.pending.discard(batch)
        self._busy(lane, +1)
        try:
            await self._commit(lane, batch, lane.progress.setdefault(batch.tp, Progress()))
        finally:
            self._busy(lane, -1)
            self._release(batch)

    @staticmethod
    def _busy(lane: _Lane, change: int) -> None:
        lane.busy += change
        if lane.busy:
            lane.idle.clear()
        else:
            lane.idle.set()

    def _on_stage_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
            self._room.set()

    def _release(self, batch: _Batch) -> None:
        self._inflight -= batch.size
        self._room.set()

    async def _prepare(self, lane: _Lane, batch: _Batch) -> PreparedBatch:
        now_ms = int(self.clock() * 1000)
        applier = self.applier_for(batch.tp.topic)
        started = time.perf_counter()
        prepared = await lane.run(_prepare_records, applier, batch.records, now_ms)
        self.metrics.stage.labels("prepare").observe(time.perf_counter() - started)
        return prepared

    async def _commit(self, lane: _Lane, batch: _Batch, progress: Progress) -> BatchResult:
        """Apply a judged batch (judging it again after a Redis outage), send its
        dead letters, commit its offset."""
        tp = batch.tp
        result = await self._with_retry(batch, lambda: self._apply(lane, batch, progress))
        if batch.dead:
            self.metrics.dead_letters.inc(await self.dead_letters.send(tp.topic, tp.partition, batch.dead))
        try:
            await self.consumer.commit({tp: batch.end})
        except (CommitFailedError, IllegalStateError):
            # rebalanced under us: the partition's new owner re-reads from the
            # last commit and the applied offsets in Redis make that a no-op
            logger.info("commit for %s:%d refused after a rebalance", tp.topic, tp.partition)
        self._positions[tp] = batch.end
        self.metrics.events.inc(batch.size)
        self.metrics.batches.inc()
        self.metrics.batch_size.observe(batch.size)
        self.metrics.record(dict(result.counts))
        for stage, seconds in result.stages.items():
            self.metrics.stage.labels(stage).observe(seconds)
        self.metrics.latency.observe(time.perf_counter() - batch.fetched)
        return result

    async def _judge(self, lane: _Lane, batch: _Batch) -> Judged:
        if batch.prepared is None:  # again, after an outage: with the clock of now
            batch.prepared = await self._prepare(lane, batch)
        applier = self.applier_for(batch.tp.topic)
        partition = partition_id(batch.tp.topic, batch.tp.partition)
        batch.judged = await lane.run(applier.judge, partition, batch.prepared)
        return batch.judged

    async def _apply(self, lane: _Lane, batch: _Batch, progress: Progress) -> BatchResult:
        if batch.judged is None:
            await self._judge(lane, batch)
        applier = self.applier_for(batch.tp.topic)
        partition = partition_id(batch.tp.topic, batch.tp.partition)
        # no reference to the batch's contents here: they are freed in the thread
        return await lane.run(_apply_batch, applier, partition, batch, progress)

    async def _with_retry(self, batch: _Batch, step: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis step of ``batch``; while Redis is unreachable, back off
        (capped) and run it again, from a new preparation (no offset is
        committed for a batch that was not written). Stopped meanwhile:
        :class:`BatchAbandoned`, so that a SIGTERM does not wait for Redis."""
        partition = partition_id(batch.tp.topic, batch.tp.partition)
        delay = 0.1
        while True:
            outages = self._outages
            try:
                result = await step()
                # a call that began before another lane saw Redis fail may
                # have been answered before Redis went: it says nothing of now
                if self._outages == outages:
                    if not self.healthy:
                        logger.warning("Redis reachable again; resuming")
                    self.healthy = True
                    self.metrics.redis_up.set(1)
                return result
            except _REDIS_DOWN as exc:
                self._outages += 1
                if self.healthy:
                    logger.warning("Redis unavailable (%s); backing off, nothing committed", exc)
                self.healthy = False
                self.metrics.redis_up.set(0)
                batch.prepared = batch.judged = None
                if self._stopping:
                    raise BatchAbandoned(partition) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                if self._stopping:
                    raise BatchAbandoned(partition) from exc
                if batch.dropped:  # only a batch not applying yet can be: a drain waits for none
                    raise _Dropped(partition) from exc

    def _update_lag(self) -> None:
        """Lag from the fetch high watermarks (Tansu reports these low: see
        docs/operating.md; Apache Kafka reports them exactly)."""
        lag = 0
        assignment = self.consumer.assignment()
        for tp in assignment:
            high = self.consumer.highwater(tp)
            position = self._positions.get(tp)
            if high is not None and position is not None:
                lag += max(0, high - position)
        self.metrics.lag.set(lag)
        self.metrics.assigned.set(len(assignment))


def _prepare_records(applier: BatchApplier, records: Sequence[Any], now_ms: int) -> PreparedBatch:
    """``applier.prepare`` of Kafka records, in the prepare thread: the event
    loop, which every lane's next step waits on, does no per-record work."""
    return applier.prepare([(r.offset, r.value or b"") for r in records], now_ms)  # a tombstone as b""


def _apply_batch(applier: BatchApplier, partition: str, batch: _Batch, progress: Progress) -> BatchResult:
    """``apply_judged`` in the apply thread; then the dead letters are picked
    out and the batch lets go of its records and decoded events, so that
    their ~10^5 objects are freed in this thread, not in the event loop,
    which every lane's next step waits on (a batch applied again after a
    Redis error keeps them)."""
    assert batch.prepared is not None and batch.judged is not None
    result = applier.apply_judged(partition, batch.prepared, batch.judged, progress)
    if result.rejected:
        by_offset = {r.offset: r for r in batch.records}
        batch.dead = [(off, by_offset[off].key, raw_value(by_offset[off]), rej) for off, rej in result.rejected]
    batch.prepared = batch.judged = None
    batch.records = ()
    return result


def raw_value(record: Any) -> bytes:
    return bytes(record.value) if record.value is not None else b""
