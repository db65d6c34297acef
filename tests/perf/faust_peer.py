"""Peer (a): a straightforward faust-streaming implementation of the education
metrics, with faust's own windowed table and per-event updates.

One agent reads the topic (raw values, decoded with orjson); every event a
metric reads updates its user's vector in a tumbling 1-day table
(``app.Table(...).tumbling(1 day)``, windows by event time), and sign-ups and
completed lessons the user's pair in a plain table; faust writes every update
to the table's changelog topic. At the end the metrics are
read from the table's windows (``peer_metrics.metrics``).

    python tests/perf/faust_peer.py --bootstrap HOST:PORT --topic T --records N \
        --at-ms T --out result.jsonl [--exit-when-done]

Writes JSON lines to ``--out``: ``{"event": "first", "t": ...}`` when this
incarnation processes its first record, ``{"event": "progress", "n": ...}``
every 1000 records, ``{"event": "done", ...}`` with the
rate and the values once ``--records`` records were processed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_metrics import add, metrics, pair_update, project

DAY_S = 86_400
PROGRESS_EVERY = 1000


def write(path: Path, record: dict[str, Any]) -> None:
    with path.open("ab") as out:
        out.write(orjson.dumps(record) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--records", type=int, required=True, help="records in the topic")
    parser.add_argument("--at-ms", type=int, required=True, help="evaluation time (a UTC midnight)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--app-id", default="faust-peer")
    parser.add_argument("--session-timeout", type=float, default=3.0)
    parser.add_argument("--exit-when-done", action="store_true")
    args = parser.parse_args()

    import faust

    app = faust.App(
        args.app_id,
        env={},
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="faust-peer-"),
        topic_partitions=args.partitions,
        broker_session_timeout=args.session_timeout,
        broker_heartbeat_interval=0.5,
        broker_rebalance_timeout=args.session_timeout,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw", partitions=args.partitions)
    event_time = [0.0]  # the current event's time (s): faust asks the handler per table access
    days = (
        app.Table("days", default=list, partitions=args.partitions)
        .tumbling(timedelta(days=1), expires=timedelta(days=60))
        .relative_to(lambda _event: event_time[0])
    )
    pairs = app.Table("pairs", partitions=args.partitions)
    seen = [0, 0.0]

    @app.agent(topic)  # type: ignore[misc]
    async def consume(stream: Any) -> None:
        async for value in stream:
            if seen[0] == 0:
                seen[1] = time.time()
                write(args.out, {"event": "first", "t": seen[1], "pid": os.getpid()})
            seen[0] += 1
            if seen[0] % PROGRESS_EVERY == 0:
                write(args.out, {"event": "progress", "n": seen[0], "t": time.time()})
            event = orjson.loads(value)
            part = project(event)
            if part is not None:
                event_time[0] = event["time"] / 1000
                user = str(event["user_id"])
                days[user] = add(days[user].value(), part)
            if event["event_type"] in ("signed_up", "lesson_completed"):
                user = str(event["user_id"])
                pair = pair_update(pairs.get(user), event)
                if pair is not None:
                    pairs[user] = pair
            if seen[0] == args.records:
                finish(days.table, pairs, seen, args)

    logging.basicConfig(level=logging.WARNING)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


def finish(table: Any, pairs: Any, seen: list[Any], args: argparse.Namespace) -> None:
    last = time.time()
    rows = []
    for (user, (start, _end)), vector in table.data.items():
        if vector:
            rows.append((str(user), int(start // DAY_S), vector))
    write(args.out, {
        "event": "done", "records": seen[0], "first": seen[1], "last": last,
        "events_per_s": (seen[0] - 1) / (last - seen[1]) if last > seen[1] else None,
        "values": metrics(rows, list(pairs.values()), args.at_ms), "windows": len(rows),
    })
    if args.exit_when_done:
        os._exit(0)


if __name__ == "__main__":
    main()
