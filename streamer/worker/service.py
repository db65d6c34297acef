"""The event path as a mode.Service started and stopped with the faust app:
its own aiokafka consumer group on the source topics, a producer for dead
letters, the operational metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import mode
from aiokafka.abc import ConsumerRebalanceListener

from streamer.courtesy import Courtesy
from streamer.engine import BatchApplier
from streamer.kafka.lean import lean
from streamer.spec.model import Tree
from streamer.state.expiry import Refresher
from streamer.state.store import Store
from streamer.worker.consumer import BatchAbandoned, EventConsumer
from streamer.worker.deadletter import DeadLetters
from streamer.worker.gctune import tune_gc, tune_switch_interval
from streamer.worker.health import Status, serve
from streamer.worker.membership import Membership, instance_name, member_id
from streamer.worker.metrics import WorkerMetrics
from streamer.worker.settings import KafkaSettings, WorkerSettings

logger = logging.getLogger(__name__)


def source_topics(trees: Sequence[Tree]) -> list[str]:
    return sorted({t.source.topic for t in trees})


def redis_client(url: str) -> Any:
    """A redis-py client for ``url`` (see ``streamer.state.connection``); a Redis
    Cluster client when the server says so. Wrong credentials or an untrusted
    certificate raise ``RedisConfigError``; an unreachable server is retried per batch."""
    from streamer.state.connection import redis_from_url

    return redis_from_url(url, unreachable_ok=True, socket_timeout=10, socket_connect_timeout=5)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move: drops the batches not committing yet and lets
    the committing ones apply and commit."""

    def __init__(self, events: EventConsumer, on_joined: Callable[[], None] | None = None) -> None:
        self.events = events
        self.on_joined = on_joined  # called with no argument after each assignment
        self.joined = False  # the group gave this worker an assignment (maybe empty)
        self.assigned = 0

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.events.drain()
        await self.events.close()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.joined, self.assigned = True, len(assigned)
        if self.on_joined is not None:
            self.on_joined()
        logger.info("assigned %s", sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))


class EventService(mode.Service):
    """Reads the source topics in batches and applies them to Redis."""

    def __init__(self, settings: WorkerSettings, kafka: KafkaSettings, trees: Sequence[Tree], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.kafka = kafka
        self.trees = list(trees)
        self.metrics = WorkerMetrics()
        self.consumer: Any = None
        self.producer: Any = None
        self.events: EventConsumer | None = None
        self._metrics_server: Any = None
        self._rebalance: _Rebalance | None = None
        self._membership: Membership | None = None

    def _applier(self, store: Store, trees: Sequence[Tree]) -> BatchApplier:
        applier = BatchApplier(store, trees)
        applier.refresher = Refresher(store.keys, applier.plans, self.settings.retention())
        if self.settings.commit_first:
            applier.courtesy = Courtesy()
        return applier

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        if self.settings.metrics_port:
            # /metrics, /healthz, /readyz (streamer/worker/health.py)
            self._metrics_server = serve(self.settings.metrics_port, self.metrics.registry, self.status)
        store = Store(redis_client(self.settings.redis_url.get_secret_value()), namespace=self.settings.namespace)
        # one applier per topic: a tree reads only its own source.topic
        appliers = {
            topic: await asyncio.to_thread(self._applier, store, [t for t in self.trees if t.source.topic == topic])
            for topic in source_topics(self.trees)
        }
        client = self.kafka.client_kwargs()
        self.producer = AIOKafkaProducer(**client, acks="all", linger_ms=5)
        self.consumer = AIOKafkaConsumer(
            **client,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            rebalance_timeout_ms=self.settings.session_timeout_ms,
            max_poll_interval_ms=max(60_000, 2 * self.settings.session_timeout_ms),
            max_poll_records=self.settings.batch_max_records,
            fetch_max_bytes=64 << 20,
            max_partition_fetch_bytes=16 << 20,
        )
        await self.producer.start()
        # start first, then subscribe: the group join then runs in the background
        # instead of blocking start-up (Tansu makes a join wait ~session/2)
        await self.consumer.start()
        if self.settings.instance_id:
            instance = instance_name(self.settings.instance_id)
            self._membership = Membership(
                store.client, store.keys.member(self.settings.group_id, instance), self.settings.group_id,
                count=lambda outcome: self.metrics.previous_member_leaves.labels(outcome).inc(),
            )
            await self._membership.leave_for_previous(self.consumer)
        lean(self.consumer)
        self.events = EventConsumer(
            self.consumer,
            appliers,
            DeadLetters(self.producer, self.settings.dead_letter_topic),
            self.metrics,
            max_records=self.settings.batch_max_records,
            timeout_ms=self.settings.batch_timeout_ms,
            retry_max_s=self.settings.redis_retry_max_s,
            max_inflight=self.settings.batch_inflight_records,
        )
        if self.settings.gc_tuning:
            tune_gc()  # after start-up: what is alive now is frozen
        tune_switch_interval(self.settings.switch_interval_s)
        self._rebalance = _Rebalance(self.events, self._record_member)
        self.consumer.subscribe(source_topics(self.trees), listener=self._rebalance)
        logger.info("reading %s as group %s", ", ".join(source_topics(self.trees)), self.settings.group_id)

    def _record_member(self) -> None:
        if self._membership is not None:
            self._membership.record(member_id(self.consumer))

    def status(self) -> Status:
        """What /readyz decides from (read by the metrics server's thread)."""
        events, rebalance = self.events, self._rebalance
        return Status(
            redis_up=events.healthy if events is not None else True,
            joined=rebalance is not None and rebalance.joined,
            assigned_partitions=rebalance.assigned if rebalance is not None else 0,
        )

    @mode.Service.task
    async def _consume(self) -> None:
        while self.events is None and not self.should_stop:
            await self.sleep(0.05)
        if self.events is not None:
            try:
                await self.events.run()
            except BatchAbandoned as exc:
                logger.warning("stopped while Redis was unreachable: batch of %s left uncommitted", exc)

    async def on_stop(self) -> None:
        if self.events is not None:
            self.events.stop()
            await self.events.drain()  # let the committing batches finish and commit
        if self.consumer is not None:
            await self.consumer.stop()  # sends LeaveGroup
        if self._membership is not None:
            await self._membership.forget()
        if self.producer is not None:
            await self.producer.stop()
        if self._metrics_server is not None:
            server, _thread = self._metrics_server
            server.shutdown()
