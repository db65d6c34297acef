"""``northstar produce``: bulk-produce a JSONL event file to a topic."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from streamer.cli.common import fail, usage_error

HELP = "produce a JSONL event file to a Kafka topic, fast (aiokafka batches, keyed by user)"


def register(sub: Any) -> None:
    p = sub.add_parser("produce", help=HELP, description=HELP)
    p.add_argument("events", type=Path, help="file with one JSON event per line ('-' for stdin)")
    p.add_argument("--topic", required=True)
    p.add_argument("--kafka", default=None, help="bootstrap servers ($NORTHSTAR_KAFKA_BOOTSTRAP)")
    p.add_argument("--partitions", type=int, default=None, help="create the topic with N partitions if missing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError
    from kafka.errors import KafkaError as AdminKafkaError

    from streamer.kafka.admin import ensure_topic
    from streamer.kafka.errors import explain_kafka_error
    from streamer.kafka.produce import produce_sync
    from streamer.worker.settings import KafkaSettings

    if str(args.events) != "-" and not args.events.is_file():
        return usage_error(f"no such events file: {args.events}")
    if args.partitions is not None and args.partitions < 1:
        return usage_error("--partitions must be at least 1")
    kafka = KafkaSettings(**({"bootstrap": args.kafka} if args.kafka else {}))
    source = sys.stdin.buffer if str(args.events) == "-" else args.events.open("rb")
    started = time.perf_counter()
    try:
        if args.partitions:
            ensure_topic(kafka.bootstrap, args.topic, partitions=args.partitions, **kafka.admin_kwargs())
        lines = (line.rstrip(b"\n") for line in source if line.strip())
        sent = produce_sync(lines, args.topic, kafka.client_kwargs())
    except (KafkaError, AdminKafkaError, OSError, KeyError) as exc:
        fail(explain_kafka_error(exc, kafka))
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    seconds = time.perf_counter() - started
    sys.stderr.write(f"northstar: produced {sent} events to {args.topic} in {seconds:.1f}s ({sent / max(seconds, 1e-9):,.0f}/s)\n")
    return 0
