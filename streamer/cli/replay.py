"""``northstar replay``: try definitions on a history file without Kafka."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from streamer.cli.common import load_trees_or_exit, redis_client_or_exit, usage_error
from streamer.spec.model import Tree

HELP = "replay a JSONL event file through the engine and print every metric"


def parse_time(text: str) -> int:
    """ISO 8601 (naive means UTC) or 'now' -> epoch milliseconds."""
    if text == "now":
        return int(time.time() * 1000)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO 8601, e.g. 2026-11-01T00:00:00Z"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help=HELP, description=HELP)
    p.add_argument("events", type=Path, help="file with one JSON event per line ('-' for stdin)")
    p.add_argument("--definitions", "-d", type=Path, nargs="+", default=[Path("definitions")])
    p.add_argument("--tree", action="append", help="only these trees (repeatable)")
    p.add_argument(
        "--redis",
        default=None,
        help="Redis URL (default $NORTHSTAR_REDIS_URL, else a temporary local redis-server)",
    )
    p.add_argument(
        "--at",
        type=parse_time,
        action="append",
        help="evaluation time, ISO 8601 (repeatable; default now)",
    )
    p.add_argument(
        "--now", type=parse_time, default=None, help="processing clock for future-skew checks"
    )
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--namespace", default="replay", help="Redis key namespace (wiped first)")
    p.add_argument("--json", action="store_true", help="one JSON object per tree and time")
    p.set_defaults(func=run)


def _lines(path: Path) -> Iterator[bytes]:
    if str(path) == "-":
        yield from sys.stdin.buffer
        return
    with path.open("rb") as handle:
        yield from handle


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        return usage_error("--batch-size must be at least 1")
    if str(args.events) != "-" and not args.events.is_file():
        return usage_error(f"no such events file: {args.events}")
    trees = load_trees_or_exit(args.definitions, args.tree)
    with contextlib.ExitStack() as stack:
        client = redis_client_or_exit(args.redis, stack)
        return _run(args, trees, client)


def _run(args: argparse.Namespace, trees: list[Tree], client: Any) -> int:
    from streamer.replay import replay

    at = args.at or [int(time.time() * 1000)]
    now = args.now if args.now is not None else int(time.time() * 1000)

    progress = None
    bar: Any = None
    if sys.stderr.isatty() and str(args.events) != "-":
        from rich.progress import Progress

        total = sum(1 for _ in _lines(args.events))
        bar = Progress(transient=True)
        task = bar.add_task("replaying", total=total)
        bar.start()

        def progress(n: int) -> None:
            bar.advance(task, n)

    try:
        results = replay(
            _lines(args.events),
            trees,
            client,
            at_ms=at,
            now_ms=now,
            batch_size=args.batch_size,
            namespace=args.namespace,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.stop()
    for r in results:
        record = {
            "tree": r.tree,
            "at": format_time(r.at_ms),
            "metrics": r.metrics,
            "counts": r.counts,
        }
        if args.json:
            sys.stdout.write(orjson.dumps(record).decode() + "\n")
        else:
            _print_table(record)
    return 0


def _print_table(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{record['tree']} at {record['at']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in record["metrics"].items():
        table.add_row(name, "null" if value is None else f"{value:,.4g}")
    console = Console()
    console.print(table)
    console.print(", ".join(f"{k}={v}" for k, v in record["counts"].items()))
