"""Delivering alert events from the Redis outbox, at least once, each sink
once per event except across a crash.

The evaluator appends events to ``<ns>:{<tree>}:outbox`` in the same
transaction as its state. ``Delivery.drain`` moves each event to an
in-flight list (atomically), hands it to every sink, recording each sink
that acknowledged it (``<ns>:{<tree>}:delivered``, field ``<event_id>|<sink>``),
and only then removes it (by value: a second drainer during a leader change
can repeat a send but never drops an event). An event whose delivery failed
stays in flight and is retried first next time, also by another leader after
a fail-over, and only to the sinks that did not acknowledge it yet. The one
window left: a worker dying after a sink acknowledged and before the mark is
written; the next leader sends that event to that sink again, with the same
``event_id``, which receivers use to drop the repeat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from streamer.state.keys import Keys

logger = logging.getLogger(__name__)


class Sink(Protocol):
    name: str

    async def send(self, event: dict[str, Any]) -> None: ...


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


class KafkaSink:
    """One JSON message per state change on the alerts topic, keyed by the alert id."""

    name = "kafka"

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def send(self, event: dict[str, Any]) -> None:
        await self.producer.send_and_wait(self.topic, orjson.dumps(event), key=str(event["id"]).encode())


def alertmanager_alert(event: dict[str, Any], now_ms: int, resend_ms: int) -> dict[str, Any] | None:
    """The Alertmanager v2 alert for an event: firing alerts carry an end time a
    few resend intervals ahead (re-sent while firing), resolved ones end now;
    pending and inactive states are not sent (as Prometheus does)."""
    state = event["state"]
    if state not in ("firing", "resolved"):
        return None
    north = event.get("north_star") or {}
    guards = ", ".join(g["name"] for g in event.get("guardrails", [])) or "none"
    change = north.get("change")
    summary = (
        f"{event['tree']}: North Star {north.get('name')} "
        + (f"{change:+.1%}" if isinstance(change, int | float) else "improving")
        + f" while guardrails degrade: {guards}"
    )
    ends = now_ms if state == "resolved" else now_ms + 3 * resend_ms
    return {
        "labels": {"alertname": "NorthStarDivergence", "tree": event["tree"], "severity": "page"},
        "annotations": {"summary": summary, "north_star": str(north.get("name")), "guardrails": guards},
        "startsAt": iso(event.get("started")) or iso(now_ms),
        "endsAt": iso(ends),
    }


class AlertmanagerSink:
    """Posts to Alertmanager's v2 API."""

    name = "alertmanager"

    def __init__(self, url: str, session: Any, resend_ms: int = 60_000, clock: Any = None) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.session = session
        self.resend_ms = resend_ms
        import time

        self.clock = clock or time.time

    async def send(self, event: dict[str, Any]) -> None:
        alert = alertmanager_alert(event, int(self.clock() * 1000), self.resend_ms)
        if alert is None:
            return
        async with self.session.post(self.url, json=[alert]) as response:
            if response.status >= 300:
                raise RuntimeError(f"Alertmanager answered {response.status}: {await response.text()}")


class WebhookSink:
    name = "webhook"

    def __init__(self, url: str, session: Any) -> None:
        self.url = url
        self.session = session

    async def send(self, event: dict[str, Any]) -> None:
        async with self.session.post(self.url, data=orjson.dumps(event),
                                     headers={"content-type": "application/json"}) as response:
            if response.status >= 300:
                raise RuntimeError(f"webhook answered {response.status}")


def event_key(event: dict[str, Any]) -> str:
    """The transition's id (``event_id``; events written before it existed:
    ``id`` plus state and since)."""
    return str(event.get("event_id") or f"{event.get('id')}:{event.get('since')}:{event.get('state')}")


class Delivery:
    def __init__(self, client: Any, keys: Keys, trees: Sequence[str], sinks: Sequence[Sink]) -> None:
        self.client = client
        self.keys = keys
        self.trees = list(trees)
        self.sinks = list(sinks)

    async def drain(self, limit: int = 100) -> int:
        """Deliver pending events of every tree; returns how many were delivered."""
        delivered = 0
        for tree in self.trees:
            outbox, inflight = self.keys.tree(tree, "outbox"), self.keys.tree(tree, "inflight")
            done_key = self.keys.tree(tree, "delivered")
            for _ in range(limit):
                raw = await asyncio.to_thread(self.client.lindex, inflight, 0)
                if raw is None:
                    raw = await asyncio.to_thread(self.client.lmove, outbox, inflight, "LEFT", "RIGHT")
                if raw is None:
                    break
                event = orjson.loads(raw)
                marks = [f"{event_key(event)}|{sink.name}" for sink in self.sinks]
                acked = await asyncio.to_thread(self.client.hmget, done_key, marks)
                try:
                    for sink, mark, done in zip(self.sinks, marks, acked, strict=True):
                        if done is None:
                            await sink.send(event)
                            await asyncio.to_thread(self.client.hset, done_key, mark, 1)
                except Exception:
                    logger.exception("delivering alert %s failed; will retry", event.get("id"))
                    return delivered
                await asyncio.to_thread(self._finish, inflight, done_key, raw, marks)
                delivered += 1
        return delivered

    def _finish(self, inflight: str, done_key: str, raw: bytes, marks: list[str]) -> None:
        # removed first: a crash in between leaves stale marks (a few bytes), never
        # an event whose marks are gone (it would be sent to every sink again)
        self.client.lrem(inflight, 1, raw)
        self.client.hdel(done_key, *marks)

    async def resend_firing(self, snapshots: Sequence[dict[str, Any]]) -> None:
        """Alertmanager forgets alerts not re-sent: re-post firing ones."""
        from streamer.evaluate.snapshot import alert_event

        for sink in self.sinks:
            if not isinstance(sink, AlertmanagerSink):
                continue
            for snapshot in snapshots:
                if snapshot["divergence"]["state"] == "firing":
                    try:
                        await sink.send(alert_event(snapshot, "firing"))  # type: ignore[arg-type]
                    except Exception:
                        logger.exception("re-sending firing alert of %s failed", snapshot["tree"])
