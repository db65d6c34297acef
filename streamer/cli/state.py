"""``northstar state``: the state a namespace holds per unit fingerprint,
compared with the definitions; drop orphaned fingerprints, or give them a
TTL now (docs/operating.md "Changing a definition")."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from streamer.cli.common import load_trees_or_exit, redis_client_or_exit, usage_error

HELP = "list the state units of a namespace (live / orphaned), drop or expire orphans"


def register(sub: Any) -> None:
    p = sub.add_parser("state", help=HELP, description=HELP)
    p.add_argument("--definitions", "-d", type=Path, nargs="+", default=[Path("definitions")])
    p.add_argument("--redis", default=None, help="Redis URL (default $NORTHSTAR_REDIS_URL)")
    p.add_argument("--namespace", default=os.environ.get("NORTHSTAR_NAMESPACE", "ns"))
    p.add_argument("--json", action="store_true", help="one JSON object per unit or tree")
    p.add_argument("--drop-orphans", action="store_true",
                   help="delete the keys of orphaned fingerprints now (needs --yes)")
    p.add_argument("--yes", action="store_true", help="confirm --drop-orphans")
    p.add_argument("--touch", action="store_true",
                   help="refresh the live keys' TTLs and give orphans one now (what the leader does periodically)")
    p.add_argument("--retention", type=float, default=None,
                   help="with --touch: seconds state outlives its last refresh (default: horizon + grace)")
    p.add_argument("--grace", type=int, default=86_400, help="with --touch: seconds beyond the lateness horizon")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.yes and not args.drop_orphans:
        return usage_error("--yes only confirms --drop-orphans")
    if args.drop_orphans and not args.yes:
        return usage_error("--drop-orphans deletes state: add --yes to confirm")
    if args.drop_orphans and args.touch:
        return usage_error("--drop-orphans and --touch are separate actions: run one at a time")
    if args.retention is not None and args.retention <= 0:
        return usage_error("--retention must be positive")
    if args.grace < 0:
        return usage_error("--grace must not be negative")
    if (args.retention is not None or args.grace != 86_400) and not args.touch:
        return usage_error("--retention and --grace only apply with --touch")
    trees = load_trees_or_exit(args.definitions)
    with contextlib.ExitStack():
        client = redis_client_or_exit(args.redis)
        return _run(args, trees, client)


def _run(args: argparse.Namespace, trees: list[Any], client: Any) -> int:
    from streamer.state.expiry import Retention, touch
    from streamer.state.inventory import drop, inventory
    from streamer.state.store import Store
    from streamer.windows.units import compile_tree

    store = Store(client, namespace=args.namespace)
    plans = [compile_tree(t) for t in trees]
    if args.touch:
        report = touch(store, plans, Retention(grace_s=args.grace, fixed_s=args.retention))
        sys.stderr.write(
            f"northstar: refreshed {report.refreshed} live keys; {report.expiring} orphaned keys now expire "
            f"({report.orphaned} orphaned keys in all)\n"
        )
    entries = inventory(store, plans)
    if args.drop_orphans:
        orphans = [e for e in entries if e.status == "orphaned"]
        deleted = drop(store, orphans)
        sys.stderr.write(f"northstar: dropped {len(orphans)} orphaned fingerprints ({deleted} keys)\n")
        entries = inventory(store, plans)
    if args.json:
        for entry in entries:
            sys.stdout.write(orjson.dumps(entry.as_dict()).decode() + "\n")
    else:
        _table(entries, args.namespace)
    return 0


def _ttl(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def _table(entries: list[Any], namespace: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"state in namespace {namespace!r}")
    for column in ("tree", "fingerprint", "status", "kind / metrics", "keys", "memory", "TTL", "no TTL",
                   "history missing"):
        table.add_column(column)
    for e in entries:
        what = f"{e.kind}: {', '.join(e.metrics)}" if e.kind else ("tree keys" if e.fingerprint is None else "?")
        ttl = _ttl(e.ttl_ms_min) if e.ttl_ms_min == e.ttl_ms_max else f"{_ttl(e.ttl_ms_min)}..{_ttl(e.ttl_ms_max)}"
        table.add_row(e.tree, e.fingerprint or "-", e.status, what, str(len(e.keys)),
                      f"{e.memory_bytes / 1024:,.1f} KiB", ttl, str(e.without_ttl),
                      ", ".join(e.missing_partitions) or "-")
    Console().print(table)
