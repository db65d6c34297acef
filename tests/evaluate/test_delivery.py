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


class _Recorder:
    def __init__(self, name: str, fail_on: set[str] | None = None) -> None:
        self.name = name
        self.fail_on = fail_on or set()
        self.got: list[str] = []

    async def send(self, event: dict[str, Any]) -> None:
        if event["state"] in self.fail_on:
            self.fail_on.discard(event["state"])
            raise RuntimeError(f"{self.name} down")
        self.got.append(event["state"])


def test_a_failing_sink_does_not_repeat_the_others(redis_client: redis.Redis) -> None:
    """Each sink acknowledges an event once: the retry after the webhook failed
    goes to the webhook only, not to Kafka again."""
    keys = Keys("t2")
    redis_client.rpush(keys.tree("education", "outbox"), orjson.dumps(_event("firing")))
    kafka, hook = _Recorder("kafka"), _Recorder("webhook", fail_on={"firing"})
    delivery = Delivery(redis_client, keys, ["education"], [kafka, hook])
    assert asyncio.run(delivery.drain()) == 0
    assert asyncio.run(delivery.drain()) == 1
    assert kafka.got == ["firing"] and hook.got == ["firing"]
    assert redis_client.exists(keys.tree("education", "delivered")) == 0  # marks cleaned up


def test_two_drainers_lose_nothing(redis_client: redis.Redis) -> None:
    """During a leader change two workers may drain at once: one sends the
    in-flight head while the other sends it too and fails on the next event.
    The first must then remove only the event it sent (the failed one stays in
    flight and is retried), never whatever is at the head of the list."""
    keys = Keys("t3")
    redis_client.rpush(keys.tree("education", "outbox"), orjson.dumps(_event("pending")),
                       orjson.dumps(_event("firing")))
    other_sink = _Recorder("kafka", fail_on={"firing"})
    other = Delivery(redis_client, keys, ["education"], [other_sink])

    class Slow(_Recorder):
        async def send(self, event: dict[str, Any]) -> None:
            if not self.got:  # while this one sends "pending", the other drains
                assert await other.drain() == 1
            await super().send(event)

    slow = Slow("kafka")
    assert asyncio.run(Delivery(redis_client, keys, ["education"], [slow]).drain()) == 2
    # "pending" was sent by both (a repeat, same event_id), "firing" by the first
    assert slow.got == ["pending", "firing"] and other_sink.got == ["pending"]
    assert redis_client.llen(keys.tree("education", "inflight")) == 0


def test_event_ids_name_transitions() -> None:
    from streamer.evaluate.delivery import event_key

    assert event_key({**_event("firing"), "event_id": "x"}) == "x"
    assert event_key(_event("firing")) != event_key(_event("resolved"))


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
