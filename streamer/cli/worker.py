"""``northstar worker``: run a worker (faust app + batched event path)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from streamer.cli.common import fail, load_trees_or_exit, settings_problems, usage_error

HELP = "consume product events from Kafka and keep every tree's state in Redis"


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help=HELP, description=HELP + ". Settings also come from NORTHSTAR_* env vars.")
    p.add_argument("--definitions", "-d", type=Path, nargs="+", default=None)
    p.add_argument("--kafka", default=None, help="bootstrap servers ($NORTHSTAR_KAFKA_BOOTSTRAP)")
    p.add_argument("--redis", default=None, help="Redis URL ($NORTHSTAR_REDIS_URL)")
    p.add_argument("--group", default=None, help="consumer group of the event path ($NORTHSTAR_GROUP_ID)")
    p.add_argument("--instance-id", default=None,
                   help="this worker's name in the group, stable across restarts ($NORTHSTAR_INSTANCE_ID)")
    p.add_argument("--metrics-port", type=int, default=None, help="operational /metrics port (0: off)")
    p.add_argument("--web-port", type=int, default=None, help="faust web port (0: off)")
    p.add_argument("--session-timeout-ms", type=int, default=None)
    p.add_argument("--clock", choices=["watermark", "wall"], default=None,
                   help="evaluation time: event-time watermark (default) or wall clock")
    p.add_argument("--evaluate-interval", type=float, default=None, help="seconds between evaluations")
    p.add_argument("--alertmanager", default=None, help="Alertmanager base URL ($NORTHSTAR_ALERTMANAGER_URL)")
    p.add_argument("--webhook", default=None, help="URL receiving alert events as JSON ($NORTHSTAR_WEBHOOK_URL)")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> tuple[Any, Any]:
    from streamer.worker.settings import KafkaSettings, WorkerSettings

    overrides: dict[str, Any] = {}
    for flag, field in (
        ("definitions", "definitions"),
        ("redis", "redis_url"),
        ("group", "group_id"),
        ("instance_id", "instance_id"),
        ("metrics_port", "metrics_port"),
        ("web_port", "web_port"),
        ("session_timeout_ms", "session_timeout_ms"),
        ("clock", "clock"),
        ("evaluate_interval", "evaluate_interval_s"),
        ("alertmanager", "alertmanager_url"),
        ("webhook", "webhook_url"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[field] = value
    kafka = KafkaSettings(**({"bootstrap": args.kafka} if args.kafka else {}))
    return WorkerSettings(**overrides), kafka


def run(args: argparse.Namespace) -> int:
    import faust
    from kafka.errors import KafkaError
    from pydantic import ValidationError

    from streamer.kafka.admin import ensure_topic
    from streamer.kafka.errors import explain_kafka_error
    from streamer.state.connection import RedisConfigError, redis_from_url
    from streamer.worker.app import create_app
    from streamer.worker.service import source_topics

    try:
        settings, kafka = settings_from(args)
    except ValidationError as exc:  # a bad flag or NORTHSTAR_* value: exit 2 naming the field
        return usage_error(settings_problems(exc))
    trees = load_trees_or_exit(settings.definitions)
    try:  # wrong credentials or certificates: exit now, not retry forever
        redis_from_url(settings.redis_url.get_secret_value(), unreachable_ok=True,
                       socket_timeout=10, socket_connect_timeout=5).close()
    except RedisConfigError as exc:
        fail(str(exc))
    try:  # also the first Kafka login: wrong credentials or certificates end here
        for topic in [*source_topics(trees), settings.dead_letter_topic, settings.alerts_topic,
                      settings.snapshots_topic]:
            ensure_topic(kafka.bootstrap, topic, partitions=1, **kafka.admin_kwargs())
    except (KafkaError, OSError, KeyError) as exc:
        fail(explain_kafka_error(exc, kafka))
    app, _ = create_app(settings, kafka, trees)
    logging.getLogger("streamer").setLevel(args.loglevel.upper())
    worker = faust.Worker(app, loglevel=args.loglevel.upper())
    worker.execute_from_commandline()
    return 0
