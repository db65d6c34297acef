"""Wiring the faust app (thin): lifecycle, web server, leader election, the
evaluation (on the leader) and the batched event service."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import faust
from faust.exceptions import NotReady

from streamer.spec.model import Tree
from streamer.worker.evaluation import EvaluationService
from streamer.worker.service import EventService
from streamer.worker.settings import KafkaSettings, WorkerSettings


def leader_check(app: Any) -> Callable[[], bool]:
    """``app.is_leader`` that answers False, not ``NotReady``, while faust's
    consumer is not started (the evaluation starts before it)."""

    def leading() -> bool:
        try:
            return bool(app.is_leader())
        except NotReady:
            return False

    return leading


def create_app(settings: WorkerSettings, kafka: KafkaSettings, trees: Sequence[Tree]) -> tuple[Any, EventService]:
    """The faust app for ``trees``; nothing read from module globals."""
    session = settings.session_timeout_ms / 1000
    app = faust.App(
        settings.app_id,
        env={},  # faust would otherwise let WEB_PORT, BROKER_URL, ... override these
        broker=f"kafka://{kafka.bootstrap}",
        broker_credentials=kafka.faust_credentials(),
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="northstar-faust-"),
        topic_partitions=1,
        broker_session_timeout=session,
        broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
        broker_rebalance_timeout=session,
        broker_request_timeout=max(30.0, session),
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_port > 0,
        web_host="127.0.0.1",
        web_bind=settings.web_bind,
        web_port=max(settings.web_port, 1),
    )
    service = EventService(settings, kafka, trees, loop=None)
    app.add_dependency(service)
    # one worker of the group evaluates: the faust leader
    evaluation = EvaluationService(settings, kafka, trees, service.metrics, is_leader=leader_check(app), loop=None)
    app.add_dependency(evaluation)
    return app, service
