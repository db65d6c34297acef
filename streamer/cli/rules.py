"""``northstar rules``: generate the Prometheus rule file from the definitions.

Prints the rules (recording rules, pipeline alerts and one alert group per
tree; see docs/prometheus.md) to stdout, or writes them to ``-o FILE``. With
``--check`` nothing is written: exit 1 when FILE differs from what the
definitions generate (for CI). Exit codes: 0 done, 1 invalid definitions or
an outdated FILE, 2 bad usage (missing path, bad threshold).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streamer.cli.common import load_trees_or_exit, usage_error
from streamer.spec.duration import parse_duration

if TYPE_CHECKING:
    from streamer.cli import Subparsers

DEFAULT_DEFINITIONS = Path("definitions")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "rules",
        help="generate Prometheus recording and alerting rules from the definitions",
        description="Generate the Prometheus rule file (recording rules, divergence, "
        "guardrail, stale-data, evaluator and consumer-lag alerts) from definitions.",
    )
    parser.add_argument(
        "--definitions",
        type=Path,
        action="append",
        metavar="PATH",
        help="a definitions file or directory; repeatable (default: definitions/)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write the rules here (default: stdout)"
    )
    parser.add_argument(
        "--lag-threshold",
        type=_positive_int,
        default=None,
        metavar="N",
        help="records of consumer lag that alert after 10m (default: 100000)",
    )
    parser.add_argument(
        "--evaluator-stale-after",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="alert when no snapshot was evaluated for this long, e.g. 5m (default: 5m)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="with -o: write nothing, exit 1 when FILE is not what the definitions generate",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamer.generate.rules import (
        DEFAULT_EVALUATOR_STALE_AFTER_S,
        DEFAULT_LAG_THRESHOLD,
        render,
    )

    output: Path | None = args.output
    if args.check and output is None:
        return usage_error("rules: --check needs -o FILE to compare with")
    trees = load_trees_or_exit(args.definitions or [DEFAULT_DEFINITIONS])
    text = render(
        trees,
        lag_threshold=args.lag_threshold or DEFAULT_LAG_THRESHOLD,
        evaluator_stale_after_s=args.evaluator_stale_after or DEFAULT_EVALUATOR_STALE_AFTER_S,
    )
    if output is None:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = output.read_text(encoding="utf-8") if output.is_file() else None
        if current != text:
            print(
                f"northstar rules: {output} is out of date; regenerate it with "
                f"`northstar rules -o {output}` (and the same --definitions and options)",
                file=sys.stderr,
            )
            return 1
        print(f"northstar rules: {output} is up to date", file=sys.stderr)
        return 0
    if not output.parent.is_dir():
        return usage_error(f"rules: no such directory: {output.parent}")
    output.write_text(text, encoding="utf-8")
    print(f"northstar rules: wrote {output} ({len(trees)} trees)", file=sys.stderr)
    return 0
