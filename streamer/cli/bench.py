"""``northstar bench``: throughput against the hardware ceiling and peers,
freshness, evaluation cost, memory and restart, measured in one run on this
machine (docs/performance.md). Prints figures and ratios; never fails on a
missed target."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "benchmark northstar against the hardware ceiling and peers (figures, never pass/fail)"


def register(sub: Any) -> None:
    from streamer.bench.sections import PEER_NAMES, SECTIONS

    p = sub.add_parser("bench", help=HELP, description=HELP + ". See docs/performance.md.")
    p.add_argument("--json", action="store_true", help="print the result as JSON (progress goes to stderr)")
    p.add_argument("--output", type=Path, help="also write the JSON result to this file")
    p.add_argument("--events", type=int, default=1_000_000, help="events on the main topic (default 1,000,000)")
    p.add_argument("--peer-events", type=int, default=50_000,
                   help="events on the peers' topic (default 50,000: faust runs ~2k/s)")
    p.add_argument("--partitions", type=int, default=2, help="partitions of the topics (>= 2; default 2)")
    p.add_argument("--eval-users", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                   help="populations for the evaluation cost (default 10k 100k 1M)")
    p.add_argument("--eval-events-factor", type=int, default=10,
                   help="the middle population again with this many times the events per user (default 10; 1: not)")
    p.add_argument("--memory-users", type=int, default=100_000, help="population for the memory figures")
    p.add_argument("--freshness-seconds", type=float, default=30.0, help="how long to produce for freshness")
    p.add_argument("--freshness-rate", type=float,
                   help="events/s to produce for freshness (default: 50%% of one worker's measured rate)")
    p.add_argument("--evaluate-interval", type=float, default=0.5,
                   help="the freshness worker's evaluation interval in seconds (default 0.5)")
    p.add_argument("--session-timeout-ms", type=int, default=3000, help="consumer group session timeout")
    p.add_argument("--restart-trials", type=int, default=3, help="SIGKILL/restart trials for northstar")
    p.add_argument("--pairs", type=int, default=3,
                   help="(ceiling, one worker) runs, interleaved; the ceiling target reads their median ratio "
                        "(default 3)")
    p.add_argument("--peers", nargs="*", choices=PEER_NAMES, default=list(PEER_NAMES),
                   help="peers to run (none: --peers with no name)")
    p.add_argument("--peers-on-main", nargs="*", choices=PEER_NAMES, default=["quixstreams"],
                   help="peers also run over the main topic (default quixstreams; faust would take ~8 min)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    p.add_argument("--kafka", help="an external broker's bootstrap servers (default: start Tansu)")
    p.add_argument("--workdir", type=Path, help="keep logs and scratch files here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from streamer.bench.report import finish, table
    from streamer.bench.run import BenchConfig, run_bench
    from streamer.cli.common import usage_error

    try:
        config = BenchConfig(
            events=args.events, peer_events=args.peer_events, partitions=args.partitions,
            eval_users=tuple(args.eval_users), memory_users=args.memory_users,
            eval_events_factor=args.eval_events_factor,
            freshness_seconds=args.freshness_seconds, freshness_rate=args.freshness_rate, evaluate_interval_s=args.evaluate_interval,
            session_timeout_ms=args.session_timeout_ms, restart_trials=args.restart_trials, pairs=args.pairs,
            peers=tuple(args.peers), peers_on_main=tuple(p for p in args.peers_on_main if p in args.peers),
            sections=tuple(args.only), kafka=args.kafka, workdir=args.workdir,
        )
    except ValueError as exc:
        return usage_error(str(exc))

    def log(message: str) -> None:
        sys.stderr.write(f"northstar bench: {message}\n")
        sys.stderr.flush()

    result = finish(run_bench(config, log))
    blob = orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    if args.output:
        args.output.write_bytes(blob + b"\n")
    if args.json:
        sys.stdout.write(blob.decode() + "\n")
    else:
        sys.stdout.write(table(result) + "\n")
    return 0
