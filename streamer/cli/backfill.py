"""``northstar backfill``: give units that started after a definition change
the history they miss, from a file or from the topic's retention, into the
live namespace (nothing is wiped; live units receive nothing)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from streamer.cli.common import load_trees_or_exit, redis_client_or_exit, usage_error
from streamer.cli.replay import parse_time

HELP = "fill the history of units started by a definition change (from a file or the topic)"


def register(sub: Any) -> None:
    p = sub.add_parser("backfill", help=HELP, description=HELP)
    p.add_argument("--definitions", "-d", type=Path, nargs="+", default=[Path("definitions")])
    p.add_argument("--tree", action="append", help="only these trees (repeatable)")
    p.add_argument("--redis", default=None, help="Redis URL (default $NORTHSTAR_REDIS_URL)")
    p.add_argument("--namespace", default=os.environ.get("NORTHSTAR_NAMESPACE", "ns"),
                   help="the live namespace (default $NORTHSTAR_NAMESPACE, else ns)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-file", type=Path, default=None,
                        help="JSONL file: one partition's records in offset order ('-' for stdin)")
    source.add_argument("--from-topic", action="store_true", help="each tree's source.topic, from its earliest record")
    p.add_argument("--partition", default="replay",
                   help="with --from-file: the partition the file holds, as Redis names it "
                        "('replay' for `northstar replay` files, '<topic>:<n>' for a topic partition)")
    p.add_argument("--first-offset", type=int, default=0, help="with --from-file: the offset of the first line")
    p.add_argument("--kafka", default=None, help="bootstrap servers ($NORTHSTAR_KAFKA_BOOTSTRAP)")
    p.add_argument("--now", type=parse_time, default=None,
                   help="processing clock for future-skew checks (default: a file: the current time; "
                        "the topic: each batch's record timestamps)")
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--json", action="store_true", help="one JSON object per partition")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        return usage_error("--batch-size must be at least 1")
    if args.first_offset < 0:
        return usage_error("--first-offset must not be negative")
    if args.from_file is not None and str(args.from_file) != "-" and not args.from_file.is_file():
        return usage_error(f"no such events file: {args.from_file}")
    if args.from_topic and (args.partition != "replay" or args.first_offset):
        return usage_error("--partition and --first-offset describe a file: not with --from-topic")
    if args.from_file is not None and args.kafka:
        return usage_error("--kafka only applies with --from-topic")
    trees = load_trees_or_exit(args.definitions, args.tree)
    client = redis_client_or_exit(args.redis)
    if args.from_topic:
        reports = _from_topic(args, trees, client, (lambda: args.now) if args.now is not None else None)
    else:
        now = args.now
        reports = [_from_file(args, trees, client, (lambda: now) if now is not None else _wall_ms)]
    for report in reports:
        record = {
            "partition": report.partition,
            "units": [{"tree": m.unit.tree, "fingerprint": m.unit.fingerprint, "kind": m.unit.kind,
                       "born": m.born, "done_before": m.done} for m in report.units],
            "records": report.records,
            "first_offset": report.first_offset,
            "counts": report.counts,
        }
        if report.units and report.first_offset and report.first_offset > min(m.done for m in report.units) + 1:
            sys.stderr.write(
                f"northstar: {report.partition}: the source starts at offset {report.first_offset}; "
                "older records are gone and stay missing\n"
            )
        if args.json:
            sys.stdout.write(orjson.dumps(record).decode() + "\n")
        elif report.units:
            names = ", ".join(f"{m.unit.tree}:{m.unit.fingerprint}" for m in report.units)
            sys.stdout.write(f"{report.partition}: {report.records} records read, backfilled {names}\n")
        else:
            sys.stdout.write(f"{report.partition}: nothing missing\n")
    return 0


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _from_file(args: argparse.Namespace, trees: list[Any], client: Any, now_ms: Any) -> Any:
    from streamer.backfill import backfill_file

    def lines() -> Any:
        if str(args.from_file) == "-":
            yield from sys.stdin.buffer
            return
        with args.from_file.open("rb") as handle:
            yield from handle

    return backfill_file(client, trees, lines(), namespace=args.namespace, partition=args.partition,
                         first_offset=args.first_offset, batch_size=args.batch_size, now_ms=now_ms)


def _from_topic(args: argparse.Namespace, trees: list[Any], client: Any, now_ms: Any) -> list[Any]:
    from streamer.cli.common import fail
    from streamer.kafka.backfill import BackfillError, backfill_topics
    from streamer.worker.settings import KafkaSettings

    kafka = KafkaSettings(**({"bootstrap": args.kafka} if args.kafka else {}))
    try:
        return backfill_topics(client, trees, kafka.client_kwargs(), namespace=args.namespace,
                               batch_size=args.batch_size, now_ms=now_ms)
    except BackfillError as exc:
        fail(str(exc))
