"""Backfill from a topic's retention: read each partition from its earliest
record up to the last offset a unit misses (streamer/backfill.py).

Partitions are assigned by hand (no consumer group: nothing is committed,
no rebalance, no wait for a group join) and read one at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from streamer.backfill import Backfiller, PartitionReport
from streamer.kafka.lean import lean
from streamer.spec.model import Tree
from streamer.worker.consumer import partition_id


class BackfillError(Exception):
    """The topic does not hold what a unit misses."""


def backfill_topics(
    client: Any,
    trees: Sequence[Tree],
    kafka: dict[str, Any],
    *,
    namespace: str,
    batch_size: int = 10_000,
    idle_timeout_s: float = 30.0,
    now_ms: Callable[[], int] | None = None,
) -> list[PartitionReport]:
    """Backfill every tree from its ``source.topic`` (trees that share a topic
    are backfilled together, like the worker applies them). The processing
    clock (future-skew checks) is ``now_ms``, else each batch's greatest
    record timestamp (about when the workers decoded it)."""
    reports: list[PartitionReport] = []
    explicit_now = now_ms is not None
    for topic in sorted({t.source.topic for t in trees}):
        group = [t for t in trees if t.source.topic == topic]
        backfiller = Backfiller(client, group, namespace, now_ms)
        backfiller.clear_scratch()
        try:
            reports += asyncio.run(_topic(backfiller, kafka, topic, batch_size, idle_timeout_s, explicit_now))
        finally:
            backfiller.clear_scratch()
    return reports


async def _topic(
    backfiller: Backfiller, kafka: dict[str, Any], topic: str, batch_size: int, idle_timeout_s: float,
    explicit_now: bool,
) -> list[PartitionReport]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    lean(consumer)  # offset, value and timestamp are all it reads
    reports: list[PartitionReport] = []
    try:
        await consumer.topics()
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            raise BackfillError(f"topic {topic!r} does not exist or has no partitions")
        for p in partitions:
            run = backfiller.start(partition_id(topic, p))
            if run.finished:
                reports.append(run.report)
                continue
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            idle_since = time.monotonic()
            while not run.finished:
                batches = await consumer.getmany(tp, timeout_ms=500, max_records=batch_size)
                records = batches.get(tp, [])
                if not records:
                    if time.monotonic() - idle_since > idle_timeout_s:
                        raise BackfillError(
                            f"{topic}:{p}: no record for {idle_timeout_s:.0f}s after reading "
                            f"{run.report.records}; units miss offsets up to {run.target}"
                        )
                    continue
                idle_since = time.monotonic()
                raw = [(r.offset, r.value if r.value is not None else b"") for r in records]
                # the clock the worker decoded with was about the records' append time
                stamp = max((r.timestamp for r in records if r.timestamp and r.timestamp > 0), default=None)
                await asyncio.to_thread(run.feed, raw, None if explicit_now else stamp)
            reports.append(run.report)
    finally:
        await consumer.stop()
    return reports
