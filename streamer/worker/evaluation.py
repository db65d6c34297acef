"""Evaluation on the faust leader: one worker of the group runs it (faust's
leader election); if it dies, the next leader continues from the state the
last one stored in Redis, and delivers any alert it left in flight."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import mode
import orjson

from streamer.evaluate.delivery import AlertmanagerSink, Delivery, KafkaSink, Sink, WebhookSink
from streamer.evaluate.evaluator import Evaluator
from streamer.spec.model import Tree
from streamer.state.store import Store
from streamer.worker.metrics import WorkerMetrics
from streamer.worker.service import redis_client
from streamer.worker.settings import KafkaSettings, WorkerSettings

logger = logging.getLogger(__name__)


class EvaluationService(mode.Service):
    """Holds the evaluator and the alert sinks; ``tick`` runs one evaluation."""

    def __init__(self, settings: WorkerSettings, kafka: KafkaSettings, trees: Sequence[Tree],
                 metrics: WorkerMetrics | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.settings = settings
        self.kafka = kafka
        self.trees = list(trees)
        self.evaluator: Evaluator | None = None
        self.delivery: Delivery | None = None
        self.producer: Any = None
        self.session: Any = None

    async def on_start(self) -> None:
        import aiohttp
        from aiokafka import AIOKafkaProducer

        store = Store(redis_client(self.settings.redis_url.get_secret_value()), namespace=self.settings.namespace)
        self.evaluator = await asyncio.to_thread(Evaluator, store, self.trees, self.settings.clock)
        self.producer = AIOKafkaProducer(**self.kafka.client_kwargs(), acks="all")
        await self.producer.start()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        sinks: list[Sink] = [KafkaSink(self.producer, self.settings.alerts_topic)]
        if self.settings.alertmanager_url:
            resend = int(max(60.0, self.settings.evaluate_interval_s) * 1000)
            sinks.append(AlertmanagerSink(self.settings.alertmanager_url, self.session, resend))
        if self.settings.webhook_url:
            sinks.append(WebhookSink(self.settings.webhook_url, self.session))
        self.delivery = Delivery(store.client, store.keys, [t.tree for t in self.trees], sinks)

    async def tick(self) -> None:
        if self.evaluator is None or self.delivery is None:
            return
        if self.metrics is not None:
            self.metrics.evaluations.inc()
        try:
            results = await asyncio.to_thread(self.evaluator.run_once)
        except Exception:
            logger.exception("evaluation failed; retrying next tick")
            return
        for snapshot, events in results:
            await self.producer.send_and_wait(
                self.settings.snapshots_topic, orjson.dumps(snapshot), key=snapshot["tree"].encode()
            )
            for event in events:
                logger.warning("divergence %s for %s", event["state"], event["tree"])
        await self.delivery.drain()
        await self.delivery.resend_firing([s for s, _ in results])  # type: ignore[misc]

    async def on_stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        if self.session is not None:
            await self.session.close()
