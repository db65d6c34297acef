"""Lean records (streamer/kafka/lean.py) against a real broker: the same
offsets, keys, values, timestamps and headers as aiokafka's ConsumerRecords,
and the same positions afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from streamer.kafka.lean import lean
from streamer.testing import create_topic

RECORDS = 3_000


async def _produce(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent = []
        for i in range(RECORDS):
            key = None if i % 7 == 0 else f"k{i}".encode()
            value = None if i % 11 == 0 and key else b'{"n": %d}' % i  # None: a tombstone
            headers = [("h", b"%d" % i)] if i % 5 == 0 else None
            sent.append(await producer.send(topic, value, key=key, partition=i % 2, headers=headers))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _read(bootstrap: str, topic: str, lean_records: bool, **kwargs: Any) -> tuple[list[Any], dict[int, int], bool]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **kwargs
    )
    await consumer.start()
    try:
        hooked = lean(consumer) if lean_records else False
        tps = [TopicPartition(topic, p) for p in (0, 1)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen: list[Any] = []
        while len(seen) < RECORDS:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=200, max_records=500), 30)
            for tp, records in batches.items():
                seen += [(tp.partition, r) for r in records]
        positions = {tp.partition: await consumer.position(tp) for tp in tps}
        return seen, positions, hooked
    finally:
        await consumer.stop()


def _fields(partition: int, record: Any) -> tuple[Any, ...]:
    return (partition, record.offset, record.key, record.value, record.timestamp, tuple(record.headers))


def test_lean_records_carry_what_consumer_records_do(kafka_broker: Any, unique_topic: str) -> None:
    create_topic(kafka_broker.bootstrap, unique_topic, 2)
    asyncio.run(_produce(kafka_broker.bootstrap, unique_topic))
    plain, plain_positions, _ = asyncio.run(_read(kafka_broker.bootstrap, unique_topic, False))
    wire, wire_positions, hooked = asyncio.run(_read(kafka_broker.bootstrap, unique_topic, True))

    assert hooked
    assert all(isinstance(r, ConsumerRecord) for _, r in plain)
    assert not any(isinstance(r, ConsumerRecord) for _, r in wire)  # the hook took effect
    assert sorted(_fields(p, r) for p, r in wire) == sorted(_fields(p, r) for p, r in plain)
    assert len(plain) == RECORDS
    assert any(r.value is None for _, r in wire) and any(r.headers for _, r in wire)
    assert wire_positions == plain_positions == {0: RECORDS // 2, 1: RECORDS // 2}


def test_a_consumer_with_a_deserializer_keeps_its_records(kafka_broker: Any, unique_topic: str) -> None:
    create_topic(kafka_broker.bootstrap, unique_topic, 2)
    asyncio.run(_produce(kafka_broker.bootstrap, unique_topic))
    read, _, hooked = asyncio.run(
        _read(kafka_broker.bootstrap, unique_topic, True, value_deserializer=lambda v: v and v.upper())
    )
    assert not hooked
    assert all(isinstance(r, ConsumerRecord) for _, r in read)
    assert any(r.value == b'{"N": 1}' for _, r in read)  # deserialized, as asked


def test_lean_needs_a_started_consumer() -> None:
    async def check() -> bool:
        return lean(AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1"))

    assert asyncio.run(check()) is False
