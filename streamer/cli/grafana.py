"""``northstar grafana``: generate the Grafana boards and provisioning files.

Writes ``<out>/dashboards/*.json`` (a board per tree and per squad) and
``<out>/provisioning/`` (the Prometheus datasource and the file dashboard
provider) from the definitions, deleting boards the definitions no longer
generate. With ``--check`` nothing is written: exit 1 when the files under
``<out>`` differ from what the definitions generate (for CI). Exit codes:
0 done, 1 invalid definitions or outdated files, 2 bad usage. See
docs/grafana.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streamer.cli.common import load_trees_or_exit, usage_error

if TYPE_CHECKING:
    from streamer.cli import Subparsers

DEFAULT_DEFINITIONS = Path("definitions")
DEFAULT_OUT = Path("grafana")


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "grafana",
        help="generate Grafana dashboards and provisioning from the definitions",
        description="Generate a Grafana board per tree and per squad, the Prometheus "
        "datasource and the dashboard provider (docs/grafana.md).",
    )
    parser.add_argument(
        "--definitions",
        type=Path,
        action="append",
        metavar="PATH",
        help="a definitions file or directory; repeatable (default: definitions/)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="write dashboards/ and provisioning/ here (default: grafana/)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the files in DIR are not what the definitions generate",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamer.generate.grafana_files import differences, render, write

    out: Path = args.out
    if out.exists() and not out.is_dir():
        return usage_error(f"grafana: --out is not a directory: {out}")
    trees = load_trees_or_exit(args.definitions or [DEFAULT_DEFINITIONS])
    files = render(trees)
    if args.check:
        problems = differences(out, files)
        if problems:
            for problem in problems:
                print(f"  {out}/{problem}", file=sys.stderr)
            print(
                f"northstar grafana: {out} is out of date; regenerate it with "
                f"`northstar grafana --out {out}` (and the same --definitions)",
                file=sys.stderr,
            )
            return 1
        print(f"northstar grafana: {out} is up to date", file=sys.stderr)
        return 0
    changed = write(out, files)
    boards = sum(1 for rel in files if rel.endswith(".json"))
    print(
        f"northstar grafana: wrote {out} ({boards} boards for {len(trees)} trees, "
        f"{len(changed)} files changed)",
        file=sys.stderr,
    )
    return 0
