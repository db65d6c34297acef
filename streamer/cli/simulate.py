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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.days < 1:
        return usage_error("--days must be at least 1")
    if args.start % DAY_MS:
        return usage_error(f"--start must be a UTC midnight, got {format_time(args.start)}")
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
