"""``northstar soak``: produce at a fixed rate for a long time and report
whether worker memory, Redis memory, lag and error counts stayed flat
(streamer.bench.soak; docs/reliability.md)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

HELP = "run the pipeline at a fixed rate for a long time; report whether memory, lag and errors stay flat"


def register(sub: Any) -> None:
    p = sub.add_parser("soak", help=HELP, description=HELP + ". See docs/reliability.md.")
    p.add_argument("--duration", type=float, default=1800.0, help="seconds to produce for (default 1800)")
    p.add_argument("--rate", type=float, default=None,
                   help="events/s to produce (default: half of one worker's measured maximum)")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between samples (default 30)")
    p.add_argument("--calibrate-events", type=int, default=50_000,
                   help="events for the maximum-rate measurement (default 50,000)")
    p.add_argument("--pool-events", type=int, default=100_000,
                   help="simulated events cycled through (~15 per user; default 100,000)")
    p.add_argument("--user-seconds", type=float, default=60.0,
                   help="seconds between two events of one simulated user on average; the population "
                        "is rate x this (default 60)")
    p.add_argument("--partitions", type=int, default=2, help="partitions of the soak topic (default 2)")
    p.add_argument("--session-timeout-ms", type=int, default=3000, help="consumer group session timeout")
    p.add_argument("--kafka", help="an external broker's bootstrap servers (default: start Tansu)")
    p.add_argument("--redis", help="an external Redis URL (default: start redis-server)")
    p.add_argument("--workdir", type=Path, help="keep logs and scratch files here")
    p.add_argument("--json", action="store_true", help="print the result as JSON (progress goes to stderr)")
    p.add_argument("--output", type=Path, help="also write the JSON result to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from streamer.bench.soak import SoakConfig, report, run_soak
    from streamer.cli.common import usage_error

    try:
        config = SoakConfig(
            duration_s=args.duration, rate=args.rate, interval_s=args.interval,
            calibrate_events=args.calibrate_events, pool_events=args.pool_events,
            user_seconds=args.user_seconds,
            partitions=args.partitions, session_timeout_ms=args.session_timeout_ms,
            kafka=args.kafka, redis_url=args.redis, workdir=args.workdir,
        )
    except ValueError as exc:
        return usage_error(str(exc))

    def log(message: str) -> None:
        sys.stderr.write(f"northstar soak: {message}\n")
        sys.stderr.flush()

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # stop what it started, as on Ctrl-C
    try:
        result = run_soak(config, log)
    except KeyboardInterrupt:
        log("interrupted; everything it started is stopped")
        return 130
    blob = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    if args.output:
        args.output.write_bytes(blob + b"\n")
    sys.stdout.write((blob.decode() if args.json else report(result)) + "\n")
    return 0 if result["ok"] else 1
