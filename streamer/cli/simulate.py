"""``northstar simulate``: realistic events for an example tree, to a file
(``--output``) or stdout. Kafka output and pacing come with the worker."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from streamer.cli.common import usage_error
from streamer.cli.replay import format_time, parse_time
from streamer.sim.models import DAY_MS, MODELS, simulate
from streamer.sim.scenarios import SCENARIOS

HELP = "generate realistic events for an example tree (healthy, noisy or goodhart)"


def register(sub: Any) -> None:
    p = sub.add_parser("simulate", help=HELP, description=HELP)
    p.add_argument("--tree", required=True, choices=sorted(MODELS))
    p.add_argument("--scenario", default="healthy", choices=sorted(SCENARIOS))
    p.add_argument("--days", type=int, default=35, help="simulated days (default 35)")
    p.add_argument(
        "--start", type=parse_time, default=parse_time("2026-10-01"), help="first simulated UTC day"
    )
    p.add_argument(
        "--drift-after",
        type=int,
        default=21,
        help="days of steady behaviour before the scenario's drift starts (default 21)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--output", "-o", default="-", help="JSONL file (default stdout)")
    live = p.add_argument_group("streaming into Kafka (with --kafka)")
    live.add_argument("--kafka", default=None, help="bootstrap servers: stream into Kafka instead of a file")
    live.add_argument("--topic", default="product-events")
    live.add_argument("--backfill-days", type=int, default=28, help="history produced at once first (default 28)")
    live.add_argument("--speed", type=float, default=3600.0,
                      help="simulated seconds per wall second after the backfill (default 3600)")
    live.add_argument("--rate", type=float, default=20_000.0, help="at most N events per second (default 20000)")
    live.add_argument("--switch-to", choices=sorted(SCENARIOS), default=None,
                      help="switch to this scenario after --switch-after-days of live simulation")
    live.add_argument("--switch-after-days", type=float, default=1.0)
    live.add_argument("--duration", type=float, default=None, help="stop after N wall seconds (default: Ctrl-C)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.days < 1:
        return usage_error("--days must be at least 1")
    if args.start % DAY_MS:
        return usage_error(f"--start must be a UTC midnight, got {format_time(args.start)}")
    if args.kafka is not None:
        if args.speed <= 0 or args.rate <= 0 or args.backfill_days < 0:
            return usage_error("--speed and --rate must be positive, --backfill-days not negative")
        return _stream(args)
    events = simulate(
        args.tree,
        args.start,
        args.days,
        SCENARIOS[args.scenario],
        drift_from_ms=args.start + args.drift_after * DAY_MS,
        seed=args.seed,
    )
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    count = 0
    try:
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
            count += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    end = args.start + args.days * DAY_MS
    sys.stderr.write(f"northstar: {count} events from {format_time(args.start)} to {format_time(end)}\n")
    return 0


def _stream(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from streamer.kafka.admin import ensure_topic
    from streamer.sim.stream import StreamPlan, stream
    from streamer.worker.settings import KafkaSettings

    plan = StreamPlan(
        tree=args.tree, topic=args.topic, start_ms=args.start, backfill_days=args.backfill_days,
        scenario=args.scenario, switch_to=args.switch_to, switch_after_days=args.switch_after_days,
        speed=args.speed, rate=args.rate, seed=args.seed,
    )
    kafka = KafkaSettings(bootstrap=args.kafka)  # TLS/SASL from $NORTHSTAR_KAFKA_*
    ensure_topic(kafka.bootstrap, args.topic, partitions=1, **kafka.admin_kwargs())
    deadline = None if args.duration is None else time.monotonic() + args.duration
    last = [0.0]

    def progress(sent: int, sim_ms: int) -> None:
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            sys.stderr.write(f"northstar: {sent} events sent, simulated time {format_time(sim_ms)}\n")

    def stop() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    try:
        sent = asyncio.run(stream(plan, kafka.client_kwargs(), stop=stop, progress=progress))
    except KeyboardInterrupt:
        return 130
    sys.stderr.write(f"northstar: {sent} events sent\n")
    return 0
