"""Each service fixture really serves: a write and a read through its real protocol."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.cluster import RedisCluster

from streamer.testing import Alertmanager, Prometheus, create_topic, wait_until
from streamer.testing.services import KafkaService, RedisClusterService

pytestmark = pytest.mark.services


def test_redis_set_get(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0  # flushed for this test
    redis_client.set("northstar:smoke", "42")
    assert redis_client.get("northstar:smoke") == b"42"


def test_redis_cluster_keys_in_different_slots(redis_cluster: RedisClusterService) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    keys = [f"northstar:smoke:{i}" for i in range(20)]
    try:
        assert len(client.get_primaries()) >= 3
        owners = {client.get_node_from_key(key).name for key in keys}
        assert len({client.keyslot(key) for key in keys}) > 1
        assert len(owners) >= 2, "all keys landed on one master"
        for i, key in enumerate(keys):
            client.set(key, str(i))
        assert [client.get(key) for key in keys] == [str(i).encode() for i in range(20)]
    finally:
        for key in keys:
            client.delete(key)  # one key per call: keys in different slots
        client.close()


async def _produce_and_consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        batch = [producer.send(topic, f"m{i}".encode(), key=str(i).encode()) for i in range(count)]
        for sent in await asyncio.gather(*batch):
            await sent
    finally:
        await producer.stop()

    # Tansu makes a group join wait about session_timeout/2: keep the session short.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    received: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while len(received) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                received.extend(record.value for record in records)
        assert consumer.assignment(), "the consumer group never assigned partitions"
        await consumer.commit()
    finally:
        await consumer.stop()
    return received


def test_kafka_produce_consume_in_group(kafka_broker: KafkaService, unique_topic: str) -> None:
    create_topic(kafka_broker.bootstrap, unique_topic, partitions=2)
    received = asyncio.run(_produce_and_consume(kafka_broker.bootstrap, unique_topic, 10))
    assert sorted(received) == sorted(f"m{i}".encode() for i in range(10))


def test_prometheus_scrapes_itself(prometheus_bin: Callable[..., Prometheus]) -> None:
    prometheus = prometheus_bin(scrape_self=True)
    result = prometheus.wait_for_query('up{job="prometheus"}', timeout=30)
    assert result[0]["metric"]["instance"] == prometheus.address
    assert result[0]["value"][1] == "1"


def test_alertmanager_accepts_and_lists_alerts(
    alertmanager_bin: Callable[..., Alertmanager],
) -> None:
    alertmanager = alertmanager_bin()
    now = datetime.now(UTC)
    alertmanager.post_alerts(
        [
            {
                "labels": {"alertname": "NorthStarSmoke", "severity": "info"},
                "annotations": {"summary": "fixture smoke test"},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=5)).isoformat(),
            }
        ]
    )
    found: list[str] = []

    def listed() -> bool:
        found[:] = [alert["labels"]["alertname"] for alert in alertmanager.alerts()]
        return "NorthStarSmoke" in found

    wait_until(listed, 10, "the posted alert in GET /api/v2/alerts")
    assert found == ["NorthStarSmoke"]


def test_promtool_runs(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "promtool" in (result.stdout + result.stderr)
