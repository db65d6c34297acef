"""Fast bulk producing with aiokafka's batch API (kafka-python manages ~9k/s
here, per-message ``send`` ~40k/s, batches ~300k/s+).

Records are keyed by the event's user and partitioned by CRC32 of that key
(C speed; Kafka's murmur2 in Python costs more than the send), so one user's
events, and the retries of one event, stay in one partition, in order."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable
from typing import Any

import orjson


def event_key(line: bytes) -> bytes | None:
    """The user id of a JSON event (Amplitude or Segment), or None."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    for name in ("user_id", "userId", "device_id", "anonymousId"):
        value = obj.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return str(value).encode()
    return None


def new_producer(client: dict[str, Any]) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**client, acks=1, max_batch_size=1 << 20, linger_ms=5)


async def send_lines(producer: Any, lines: Iterable[bytes], topic: str, *, linger_batches: int = 64) -> int:
    """Send every line to ``topic`` with a started producer; returns how many."""
    sent = 0
    partitions = sorted(await producer.partitions_for(topic))
    batches: dict[int, Any] = {}
    futures: list[asyncio.Future[Any]] = []
    for line in lines:
        key = event_key(line)
        p = partitions[(zlib.crc32(key) if key else sent) % len(partitions)]
        batch = batches.get(p)
        if batch is None:
            batch = batches[p] = producer.create_batch()
        if batch.append(key=key, value=line, timestamp=None) is None:
            futures.append(await producer.send_batch(batch, topic, partition=p))
            batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=line, timestamp=None) is None:
                raise ValueError(f"a record of {len(line)} bytes does not fit an empty batch")
        sent += 1
        if len(futures) >= linger_batches:
            await asyncio.gather(*futures)
            futures.clear()
    for p, batch in batches.items():
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=p))
    await asyncio.gather(*futures)
    return sent


async def produce(lines: Iterable[bytes], topic: str, client: dict[str, Any]) -> int:
    """Send every line to ``topic`` with a producer of its own; returns how many."""
    producer = new_producer(client)
    try:
        await producer.start()  # inside: a failed start (e.g. a refused login) still closes it
        return await send_lines(producer, lines, topic)
    finally:
        await producer.stop()


def produce_sync(lines: Iterable[bytes], topic: str, client: dict[str, Any]) -> int:
    return asyncio.run(produce(lines, topic, client))
