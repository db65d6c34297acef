"""``northstar demo``: the whole pipeline on the embedded defaults."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streamer.cli.common import usage_error

HELP = "run the whole pipeline locally: broker, Redis, worker, API, Prometheus, simulator"


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP + ". Ctrl-C stops everything it started.")
    p.add_argument("--definitions", "-d", type=Path, default=None,
                   help="definitions directory (default ./definitions, else the repository's)")
    p.add_argument("--tree", default="education", choices=["education", "learning_users"])
    p.add_argument("--kafka", default=None, help="use this Kafka instead of starting a Tansu broker")
    p.add_argument("--redis", default=None, help="use this Redis URL instead of starting redis-server")
    p.add_argument("--port", type=int, default=8080, help="API port (default 8080)")
    p.add_argument("--speed", type=float, default=14400.0, help="simulated seconds per wall second (default 14400)")
    p.add_argument("--goodhart-after", type=float, default=1.0,
                   help="simulated days of healthy growth before the Goodhart inflation (default 1)")
    p.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    p.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    p.add_argument("--until", choices=["pending", "firing"], default=None,
                   help="stop (exit 0) once the divergence alert reaches this state; exit 1 if --duration passes first")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamer.demo import Demo, DemoOptions

    if args.definitions is None:
        local = Path("definitions")
        args.definitions = local if local.is_dir() else Path(__file__).resolve().parents[2] / "definitions"
    if not args.definitions.exists():
        return usage_error(f"no such definitions path: {args.definitions}")
    if args.speed <= 0 or not 0 < args.port < 65536:
        return usage_error("--speed must be positive and --port a TCP port")
    options = DemoOptions(
        definitions=args.definitions, tree=args.tree, kafka=args.kafka, redis_url=args.redis, api_port=args.port,
        speed=args.speed, goodhart_after_days=args.goodhart_after, duration=args.duration, until=args.until,
        prometheus=not args.no_prometheus,
    )
    try:
        return Demo(options).run()
    except KeyboardInterrupt:
        print("\nnorthstar demo: stopped; everything it started is shut down")
        return 0
