"""Redis CPU per event of each state script, and A/B of script variants.

    python -m streamer.bench.scripts [--events 200000] [--variant pair=my_pair.lua ...]
                                     [--tree learning_users]

Runs the education workload through ``BatchApplier`` once and records every
script call it makes (verdicts, and each unit's apply with its payload).
Then, for the scripts as shipped and for each variant (a Lua file replacing
one script: ``verdict``, ``prelude`` or a unit kind), replays those calls
on an empty Redis one script call per round trip, adds up Redis's own CPU
time (``INFO cpu``) per script kind, and hashes the state left behind. A
variant that leaves a different digest changed the state, not only the
cost. The replay does what the engine did, call for call, so the figures
are Redis's work on the write path without the worker's Python or the
broker, and they are CPU time, not wall time: a busy machine moves them
less than the throughput figures (docs/performance.md). Breakdown label
admissions (``labels.lua``) are not replayed; the label units' applies are.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamer.state.scripts as scripts
from streamer.bench.cpu import redis_cpu
from streamer.bench.redis_target import bench_redis
from streamer.bench.workload import MODEL_EVENTS_PER_USER, simulated_workload
from streamer.engine import BatchApplier
from streamer.state.store import Store

BATCH = 10_000
NAMES = ("verdict", "prelude", *scripts.APPLY_KINDS)


@dataclass(frozen=True)
class Call:
    """One script call of the engine: a verdict request or a unit's apply."""

    kind: str  # "verdict" or the unit's kind
    partition: str
    args: tuple[Any, ...]


def record(client: Any, lines: Sequence[bytes], batch: int = BATCH, tree: str = "education") -> list[Call]:
    """Apply ``lines`` through the engine (``definitions/<tree>.yaml``) and
    return its script calls, in order."""
    from streamer.bench.evaluation import load_tree

    store = Store(client, namespace="record")
    store.delete_namespace()
    applier = BatchApplier(store, [load_tree(tree)])
    calls: list[Call] = []
    first_round_trip, apply = store.first_round_trip, store.apply

    def recording_first(requests: Any, partition: str, units: Any, label_scripts: Any, field: Any) -> Any:
        calls.append(Call("verdict", partition, (requests,)))
        return first_round_trip(requests, partition, units, label_scripts, field)

    def recording_apply(unit_calls: Any, partition: str, watermarks: Any = (), **kwargs: Any) -> Any:
        for call in unit_calls:
            calls.append(Call(call[0].kind, partition, (call,)))
        calls.append(Call("watermarks", partition, (tuple(watermarks),)))
        return apply(unit_calls, partition, watermarks, **kwargs)

    store.first_round_trip = recording_first  # type: ignore[method-assign,assignment]
    store.apply = recording_apply  # type: ignore[method-assign,assignment]
    now_ms = int(time.time() * 1000)
    for first in range(0, len(lines), batch):
        applier.apply("0", list(enumerate(lines[first : first + batch], first)), now_ms)
    store.delete_namespace()
    return calls


@contextmanager
def scripts_from(variants: dict[str, Path]) -> Iterator[None]:
    """Load the named scripts from the given files instead of the package."""
    original: Callable[[str], str] = scripts._read

    def read(name: str) -> str:
        return variants[name].read_text() if name in variants else original(name)

    scripts._read = read  # type: ignore[assignment]
    scripts.apply_source.cache_clear()
    try:
        yield
    finally:
        scripts._read = original  # type: ignore[assignment]
        scripts.apply_source.cache_clear()


def digest(client: Any) -> str:
    """A hash of every key and its contents (types compared as read)."""
    h = hashlib.sha256()
    for key in sorted(client.scan_iter("*")):
        kind = client.type(key)
        if kind == b"hash":
            value: Any = sorted(client.hgetall(key).items())
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"set":
            value = sorted(client.smembers(key))
        else:
            value = client.get(key)
        h.update(repr((key, value)).encode())
    return h.hexdigest()[:16]


def replay(client: Any, calls: Sequence[Call], events: int) -> dict[str, Any]:
    """Redis CPU us per event of each script kind over ``calls``, and the digest."""
    client.flushall()
    store = Store(client, namespace="record")
    spent: dict[str, float] = defaultdict(float)
    for call in calls:
        before = redis_cpu(client)
        if call.kind == "verdict":
            store.first_round_trip(call.args[0], call.partition, [], [], None)
        elif call.kind == "watermarks":
            store.apply([], call.partition, call.args[0])
            continue
        elif store.apply([call.args[0]], call.partition) != [True]:
            raise RuntimeError(f"a replayed {call.kind} call was refused: the calls are out of order")
        spent[call.kind] += redis_cpu(client) - before
    per_event = {kind: round(s / events * 1e6, 2) for kind, s in sorted(spent.items())}
    return {"us_per_event": per_event, "total_us_per_event": round(sum(spent.values()) / events * 1e6, 2),
            "digest": digest(client)}


def _variant(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or name not in NAMES:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE.lua with NAME one of {', '.join(NAMES)}: {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2, help="replays of each set of scripts, interleaved")
    parser.add_argument("--variant", type=_variant, action="append", default=[], metavar="NAME=FILE.lua")
    parser.add_argument("--redis", help="Redis URL (default: start a local redis-server); it is emptied")
    parser.add_argument("--tree", choices=sorted(MODEL_EVENTS_PER_USER), default="education",
                        help="definitions/<tree>.yaml over its simulated model's events")
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeats < 1:
        parser.error("--events and --repeats must be at least 1")
    load = simulated_workload(args.tree, args.events, partitions=1)
    lines = load.lines[: load.events]
    sets: list[tuple[str, dict[str, Path]]] = [("shipped", {})]
    sets += [(f"{name}={path}", {name: path}) for name, path in args.variant]
    with bench_redis(args.redis) as client:
        calls = record(client, lines, tree=args.tree)
        for repeat in range(args.repeats):
            for label, variants in sets:
                with scripts_from(variants):
                    result = replay(client, calls, len(lines))
                figures = "  ".join(f"{k} {v:.2f}" for k, v in result["us_per_event"].items())
                print(f"{label:<32} run {repeat + 1}: total {result['total_us_per_event']:.2f} us/event  "
                      f"({figures})  digest {result['digest']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
