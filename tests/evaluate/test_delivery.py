"""Alert delivery from the outbox: Kafka topic, a real Alertmanager (v2 API)
and a webhook; at least once, retried after a failure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import redis
from aiohttp import web

from streamer.evaluate.delivery import (
    AlertmanagerSink,
    Delivery,
    KafkaSink,
    WebhookSink,
    alertmanager_alert,
)
from streamer.kafka.admin import ensure_topic
from streamer.state.keys import Keys
from streamer.testing import wait_until

NOW = 1_790_000_000_000


def _event(state: str) -> dict[str, Any]:
    return {
        "id": "education:divergence:1", "alert": "NorthStarDivergence", "tree": "education",
        "product": "Lingo", "state": state, "previous_state": "pending", "at": NOW, "started": NOW - 60_000,
        "since": NOW, "north_star": {"name": "weekly_learning_minutes", "change": 0.12},
        "guardrails": [{"name": "lesson_abandon_rate", "change": 0.3}],
    }


def test_alertmanager_payload() -> None:
    firing = alertmanager_alert(_event("firing"), NOW, 60_000)
    assert firing is not None
    assert firing["labels"] == {"alertname": "NorthStarDivergence", "tree": "education", "severity": "page"}
    assert "+12.0%" in firing["annotations"]["summary"] and "lesson_abandon_rate" in firing["annotations"]["summary"]
    assert firing["endsAt"] > firing["startsAt"]
    assert alertmanager_alert(_event("pending"), NOW, 60_000) is None


class _Flaky:
    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, event: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("down")


def test_outbox_is_delivered_at_least_once(redis_client: redis.Redis) -> None:
    keys = Keys("t")
    redis_client.rpush(keys.tree("education", "outbox"), orjson.dumps(_event("firing")), orjson.dumps(_event("resolved")))
    flaky = _Flaky()
    delivery = Delivery(redis_client, keys, ["education"], [flaky])
    assert asyncio.run(delivery.drain()) == 0  # first send fails: kept in flight
    assert redis_client.llen(keys.tree("education", "inflight")) == 1
    assert asyncio.run(delivery.drain()) == 2  # retried first, then the next one
    assert redis_client.llen(keys.tree("education", "inflight")) == 0
    assert redis_client.llen(keys.tree("education", "outbox")) == 0
    assert flaky.calls == 3


def test_sinks_against_real_services(
    redis_client: redis.Redis, alertmanager_bin: Callable[..., Any], kafka_broker: Any, unique_topic: str
) -> None:
    manager = alertmanager_bin()
    ensure_topic(kafka_broker.bootstrap, unique_topic, 1)
    received: list[dict[str, Any]] = []

    async def scenario() -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        async def hook(request: web.Request) -> web.Response:
            received.append(await request.json())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await producer.start()
        async with aiohttp.ClientSession() as session:
            sinks = [KafkaSink(producer, unique_topic), AlertmanagerSink(manager.url, session),
                     WebhookSink(f"http://127.0.0.1:{port}/hook", session)]
            keys = Keys("s")
            redis_client.rpush(keys.tree("education", "outbox"), orjson.dumps(_event("firing")))
            assert await Delivery(redis_client, keys, ["education"], sinks).drain() == 1
        await producer.stop()
        consumer = AIOKafkaConsumer(unique_topic, bootstrap_servers=kafka_broker.bootstrap,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        messages: list[Any] = []
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while not messages and asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(timeout_ms=1000)
                messages = [m for ms in batch.values() for m in ms]
        finally:
            await consumer.stop()
            await runner.cleanup()
        assert [json.loads(m.value)["state"] for m in messages] == ["firing"]
        assert messages[0].key == b"education:divergence:1"

    asyncio.run(scenario())
    assert received and received[0]["state"] == "firing"

    def alert_listed() -> bool:
        import urllib.request

        with urllib.request.urlopen(manager.url + "/api/v2/alerts") as response:
            alerts = json.loads(response.read())
        return any(a["labels"].get("alertname") == "NorthStarDivergence" and a["labels"].get("tree") == "education"
                   for a in alerts)

    wait_until(alert_listed, timeout=20, what="the divergence alert in Alertmanager")
