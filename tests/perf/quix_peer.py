"""Peer (b): the education metrics with Quix Streams and its windows.

The records are keyed by user, so the per-user state needs no repartitioning:
a tumbling 1-day window per user (event time from the event's ``time``)
reduces the user's events to a vector (``peer_metrics.project``/``add``) and
emits it when the window closes (``.final(closing_strategy="partition")``,
closed by the partition's stream time: the topic ends with a ``bench_end``
record per partition a day after the evaluation time). A stateful step keeps
each user's sign-up pair in Quix's key-value state. The emitted windows are
collected in the process and the metrics read from them
(``peer_metrics.metrics``).

    python tests/perf/quix_peer.py --bootstrap HOST:PORT --topic T --records N \
        --at-ms T --out result.jsonl

Writes JSON lines to ``--out`` like ``faust_peer.py``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_metrics import add, metrics, pair_update, project

DAY_MS = 86_400_000
ZERO = [0, 0.0, 0, 0, 0]


def write(path: Path, record: dict[str, Any]) -> None:
    with path.open("ab") as out:
        out.write(orjson.dumps(record) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, required=True, help="records in the topic")
    parser.add_argument("--at-ms", type=int, required=True, help="evaluation time (a UTC midnight)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--group", default="quix-peer")
    parser.add_argument("--session-timeout", type=float, default=6.0)
    args = parser.parse_args()

    from quixstreams import Application

    logging.basicConfig(level=logging.WARNING)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="quix-peer-"),
        loglevel="WARNING",
        # librdkafka's 45 s default makes a Tansu group join wait ~20 s
        consumer_extra_config={"session.timeout.ms": int(args.session_timeout * 1000),
                               "heartbeat.interval.ms": 500},
    )
    topic = app.topic(
        args.topic,
        key_deserializer="str",
        value_deserializer="json",
        timestamp_extractor=lambda value, _headers, _ts, _type: int(value["time"]),
    )
    # Tansu's DescribeConfigs has no retention.ms, which Quix copies onto its
    # changelog topics: say "unlimited" as Kafka's default topic would
    topic.broker_config.extra_config.setdefault("retention.ms", "-1")
    seen = [0, 0.0]
    windows: list[tuple[str, int, list[float]]] = []
    pairs: dict[str, list[int]] = {}

    def count(_value: Any) -> None:
        if seen[0] == 0:
            seen[1] = time.time()
            write(args.out, {"event": "first", "t": seen[1]})
        seen[0] += 1
        if seen[0] == args.records:
            app.stop()  # after this record: its windows close first

    def remember_pair(event: dict[str, Any], state: Any) -> None:
        if event["event_type"] in ("signed_up", "lesson_completed"):
            pair = pair_update(state.get("pair"), event)
            if pair is not None:
                state.set("pair", pair)
                pairs[str(event["user_id"])] = pair  # the collected output, read at the end

    def collect(window: dict[str, Any], key: Any, _ts: int, _headers: Any) -> None:
        user = key.decode() if isinstance(key, bytes) else str(key)
        windows.append((user, window["start"] // DAY_MS, window["value"]))

    sdf = app.dataframe(topic)
    sdf = sdf.update(count)
    sdf = sdf.update(remember_pair, stateful=True)
    # the bench_end record must reach the window to advance its stream time
    sdf = sdf.apply(lambda e: project(e) or (ZERO if e["event_type"] == "bench_end" else None))
    sdf = sdf.filter(lambda part: part is not None)
    sdf = (
        sdf.tumbling_window(timedelta(days=1))
        .reduce(reducer=add, initializer=lambda part: list(part))
        .final(closing_strategy="partition")
    )
    sdf.update(collect, metadata=True)
    app.run()
    last = time.time()
    write(args.out, {
        "event": "done", "records": seen[0], "first": seen[1], "last": last,
        "events_per_s": (seen[0] - 1) / (last - seen[1]) if last > seen[1] else None,
        "values": metrics(windows, list(pairs.values()), args.at_ms), "windows": len(windows),
    })


if __name__ == "__main__":
    main()
