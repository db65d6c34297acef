"""Evaluation on the faust leader: one worker of the group runs it (faust's
leader election); if it dies, the next leader continues from the state the
last one stored in Redis, and delivers any alert it left in flight.

Ticks start at a fixed rate (``streamer.worker.cadence``) and run the
evaluator in a thread of their own, so that an evaluation never waits for a
thread a lane holds through a Redis round trip, nor a lane for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import mode
import orjson
import redis

from streamer.evaluate.delivery import AlertmanagerSink, Delivery, KafkaSink, Sink, WebhookSink
from streamer.evaluate.evaluator import Evaluator
from streamer.spec.model import Tree
from streamer.state.expiry import touch
from streamer.state.store import Store
from streamer.worker.cadence import run_cadence
from streamer.worker.metrics import WorkerMetrics
from streamer.worker.service import redis_client
from streamer.worker.settings import KafkaSettings, WorkerSettings
from streamer.worker.threads import run_in

logger = logging.getLogger(__name__)
T = TypeVar("T")


class EvaluationService(mode.Service):
    """Holds the evaluator and the alert sinks; ``tick`` runs one evaluation,
    every ``evaluate_interval_s`` while ``is_leader()`` (given: the cadence
    runs; not given: the caller calls ``tick``)."""

    def __init__(self, settings: WorkerSettings, kafka: KafkaSettings, trees: Sequence[Tree],
                 metrics: WorkerMetrics | None = None, is_leader: Callable[[], bool] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.is_leader = is_leader
        self._executor: ThreadPoolExecutor | None = None
        self._ticking: asyncio.Task[None] | None = None
        self.metrics = metrics
        self.settings = settings
        self.kafka = kafka
        self.trees = list(trees)
        self.evaluator: Evaluator | None = None
        self.delivery: Delivery | None = None
        self.producer: Any = None
        self.session: Any = None
        self.store: Store | None = None
        self._next_touch = 0.0
        self.redis_ok = True

    async def on_start(self) -> None:
        import aiohttp
        from aiokafka import AIOKafkaProducer

        self._executor = ThreadPoolExecutor(1, thread_name_prefix="evaluate")
        store = Store(redis_client(self.settings.redis_url.get_secret_value()), namespace=self.settings.namespace)
        self.store = store
        self.evaluator = await self._in_thread(Evaluator, store, self.trees, self.settings.clock)
        self.producer = AIOKafkaProducer(**self.kafka.client_kwargs(), acks="all")
        await self.producer.start()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        sinks: list[Sink] = [KafkaSink(self.producer, self.settings.alerts_topic)]
        if self.settings.alertmanager_url:
            resend = int(max(60.0, self.settings.evaluate_interval_s) * 1000)
            sinks.append(AlertmanagerSink(self.settings.alertmanager_url.get_secret_value(), self.session, resend))
        if self.settings.webhook_url:
            sinks.append(WebhookSink(self.settings.webhook_url.get_secret_value(), self.session))
        self.delivery = Delivery(store.client, store.keys, [t.tree for t in self.trees], sinks)

    async def tick(self) -> None:
        if self.evaluator is None or self.delivery is None:
            return
        await self.touch_state()
        if self.metrics is not None:
            self.metrics.evaluations.inc()
        try:
            results = await self._in_thread(self.evaluator.run_once)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # one line when Redis goes away, not a traceback every tick
            if self.redis_ok:
                logger.warning("evaluation paused: Redis unavailable (%s); retrying every tick", exc)
            self.redis_ok = False
            return
        except Exception:
            logger.exception("evaluation failed; retrying next tick")
            return
        if not self.redis_ok:
            logger.warning("evaluation resumed: Redis reachable again")
        self.redis_ok = True
        for snapshot, events in results:
            await self.producer.send_and_wait(
                self.settings.snapshots_topic, orjson.dumps(snapshot), key=snapshot["tree"].encode()
            )
            for event in events:
                logger.warning("divergence %s for %s", event["state"], event["tree"])
        await self.delivery.drain()
        await self.delivery.resend_firing([s for s, _ in results])  # type: ignore[misc]

    async def touch_state(self) -> None:
        """Every refresh interval: keep the live units' keys from expiring, give
        orphaned fingerprints a TTL (streamer.state.expiry.touch)."""
        if self.store is None or self.evaluator is None or time.monotonic() < self._next_touch:
            return
        retention = self.settings.retention()
        plans = [e.plan for e in self.evaluator.trees]
        self._next_touch = time.monotonic() + min(retention.refresh_every_s(retention.ttl_ms(p)) for p in plans)
        try:
            report = await self._in_thread(touch, self.store, plans, retention)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            self._next_touch = 0.0  # the evaluation below reports the outage once
            return
        except Exception:
            logger.exception("state touch failed; retrying next tick")
            self._next_touch = 0.0
            return
        if report.expiring:
            logger.info("state: %d orphaned keys now expire (%d live keys refreshed)", report.expiring, report.refreshed)

    async def on_started(self) -> None:
        if self.is_leader is not None:
            self._ticking = asyncio.create_task(
                run_cadence(self.settings.evaluate_interval_s, self.is_leader, self.tick), name="evaluation cadence"
            )

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None, "started"
        return await run_in(self._executor, fn, *args)

    async def on_stop(self) -> None:
        # the tick in progress ends first: it may be sending with the producer
        if self._ticking is not None:
            self._ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticking
            self._ticking = None
        if self.producer is not None:
            await self.producer.stop()
        if self.session is not None:
            await self.session.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
