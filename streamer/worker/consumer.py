"""The high-volume event path: aiokafka ``getmany`` batches -> engine -> dead
letters -> commit. faust's own stream path tops out near 5k events/s here;
``getmany`` reads ~330k/s (docs/performance.md), so the worker keeps faust for
its lifecycle and leader-elected timers and reads events with this loop.

Order per partition batch: apply to Redis (exactly-once by applied offsets),
then send dead letters (acknowledged), then commit the Kafka offset. A crash
anywhere re-delivers the batch: state changes nothing the second time; dead
letters may be written twice (at-least-once)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from aiokafka.errors import CommitFailedError

from streamer.engine import BatchApplier, BatchResult
from streamer.worker.deadletter import DeadLetters
from streamer.worker.metrics import WorkerMetrics

logger = logging.getLogger(__name__)


class BatchAbandoned(Exception):
    """Raised out of ``run()`` when the worker is stopped while Redis is
    unavailable: the batch in hand is dropped unwritten and uncommitted (the
    next owner of its partition reads it again)."""


def partition_id(topic: str, partition: int) -> str:
    """The partition's name in Redis bookkeeping (applied offsets, watermarks)."""
    return f"{topic}:{partition}"


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
        self.busy = asyncio.Lock()
        self.healthy = True
        self._stopping = False
        self._positions: dict[Any, int] = {}

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        """Fetch and apply batches until ``stop()``."""
        while not self._stopping:
            batches = await self.consumer.getmany(timeout_ms=self.timeout_ms, max_records=self.max_records)
            async with self.busy:
                for tp, records in batches.items():
                    if records:
                        await self.apply(tp, records)
            self._update_lag()

    def applier_for(self, topic: str) -> BatchApplier:
        appliers = self._appliers
        return appliers[topic] if isinstance(appliers, dict) else appliers

    async def apply(self, tp: Any, records: Sequence[Any]) -> BatchResult:
        started = time.perf_counter()
        raw = [(r.offset, r.value if r.value is not None else b"") for r in records]
        result = await self._apply_with_retry(
            self.applier_for(tp.topic), partition_id(tp.topic, tp.partition), raw
        )
        if result.rejected:
            by_offset = {r.offset: r for r in records}
            items = [(off, by_offset[off].key, raw_value(by_offset[off]), rej) for off, rej in result.rejected]
            self.metrics.dead_letters.inc(await self.dead_letters.send(tp.topic, tp.partition, items))
        try:
            await self.consumer.commit({tp: records[-1].offset + 1})
        except CommitFailedError:
            # rebalanced under us: the partition's new owner re-reads from the
            # last commit and the applied offsets in Redis make that a no-op
            logger.info("commit for %s:%d refused after a rebalance", tp.topic, tp.partition)
        self._positions[tp] = records[-1].offset + 1
        self.metrics.events.inc(len(records))
        self.metrics.batches.inc()
        self.metrics.batch_size.observe(len(records))
        self.metrics.record(dict(result.counts))
        self.metrics.latency.observe(time.perf_counter() - started)
        return result

    async def _apply_with_retry(
        self, applier: BatchApplier, partition: str, raw: list[tuple[int, bytes]]
    ) -> BatchResult:
        """Apply; while Redis is unreachable, back off (capped) and try again: no
        offset is committed for a batch that was not written. Stopped meanwhile:
        :class:`BatchAbandoned`, so that a SIGTERM does not wait for Redis."""
        delay = 0.1
        while True:
            try:
                now_ms = int(self.clock() * 1000)
                result = await asyncio.to_thread(applier.apply, partition, raw, now_ms)
                if not self.healthy:
                    logger.warning("Redis reachable again; resuming")
                self.healthy = True
                self.metrics.redis_up.set(1)
                return result
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                    redis.exceptions.BusyLoadingError, redis.exceptions.OutOfMemoryError) as exc:
                # OutOfMemoryError: maxmemory reached with noeviction; it refuses
                # writes until memory is freed or raised: wait, like for an outage
                if self.healthy:
                    logger.warning("Redis unavailable (%s); backing off, nothing committed", exc)
                self.healthy = False
                self.metrics.redis_up.set(0)
                if self._stopping:
                    raise BatchAbandoned(partition) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                if self._stopping:
                    raise BatchAbandoned(partition) from exc

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


def raw_value(record: Any) -> bytes:
    return bytes(record.value) if record.value is not None else b""
