"""The hardware ceiling on this machine: what a Python process can do with the
same topic and the same Redis when it does nothing else.

- consumption: aiokafka ``getmany(max_records=10000)`` over every partition of
  the topic, each value decoded with orjson, nothing else;
- Redis: pipelined ``HINCRBY`` from one redis-py client (the per-command
  client cost is what limits it, not the server).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Consumption:
    records: int
    seconds: float
    last_offsets: dict[int, int]
    """Offset of the last record read, per partition (the topic's end)."""

    @property
    def events_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def consume_rate(bootstrap: str, topic: str, records: int, timeout: float = 300.0) -> Consumption:
    """Read ``records`` records of ``topic`` from the beginning with aiokafka
    batches and decode every value; timed from the first fetch to the last record."""
    return asyncio.run(_consume(bootstrap, topic, records, timeout))


async def _consume(bootstrap: str, topic: str, records: int, timeout: float) -> Consumption:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            raise RuntimeError(f"topic {topic!r} has no partitions")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last: dict[int, int] = {}
        seen = 0
        loads = orjson.loads
        started = time.perf_counter()
        deadline = started + timeout
        while seen < records:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"read {seen} of {records} records of {topic!r} in {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, batch in batches.items():
                for record in batch:
                    loads(record.value)
                seen += len(batch)
                if batch:
                    last[tp.partition] = batch[-1].offset
        return Consumption(seen, time.perf_counter() - started, last)
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class RedisWrites:
    commands: int
    seconds: float
    pipeline: int

    @property
    def commands_per_s(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0


def redis_pipeline_rate(client: Any, seconds: float = 2.0, pipeline: int = 10_000) -> RedisWrites:
    """Pipelined ``HINCRBY`` on random fields of a few hashes for about ``seconds``."""
    rng = random.Random(1)
    keys = [f"bench:ceiling:{i}" for i in range(16)]
    fields = [[rng.choice(keys), f"f{rng.randrange(100_000)}"] for _ in range(pipeline)]
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        pipe = client.pipeline(transaction=False)
        for key, field in fields:
            pipe.hincrby(key, field, 1)
        pipe.execute()
        done += pipeline
    elapsed = time.perf_counter() - started
    client.delete(*keys)
    return RedisWrites(done, elapsed, pipeline)
