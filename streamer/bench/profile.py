"""Where the write path's time goes, per stage and per state unit.

    python -m streamer.bench.profile [--events 200000] [--batch 10000] [--redis URL] [--tune-gc]

Replays simulated education events through the engine's own pieces
(``Decoder``, the verdict script, ``Aggregator``, the units' Lua scripts)
in batches like ``BatchApplier.apply``, but times every stage, and sends
each unit's script in a round trip of its own so that Redis's own time per
unit can be read from ``INFO commandstats``. It also times two things the
engine does not do, to size proposals (docs/performance.md):

- ``filter_once``: bucket the batch by event type once and run each unit's
  matcher only on the events of its types, instead of every unit matching
  every event;
- the filter share of each unit's pre-aggregation (its matchers alone).

A profile, not the product path: the figures are per event of the whole
batch, and the extra round trips are not counted in any stage. The units
share one memo per batch, as in the engine: of two units over the same
events and filter (a retention and a distinct count, or a per-day count at
a resolution of one day) the first pays for the counts, the other reads
them.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any

import orjson

from streamer.bench.redis_target import bench_redis
from streamer.bench.workload import education_workload
from streamer.engine import BatchApplier, _complete
from streamer.events.types import Event
from streamer.state.store import Store, verdict_events
from streamer.windows.aggregate import FLAT_FIXED, Memo, unflatten
from streamer.windows.units import Quotient, Reader


def _evalsha_usec(client: Any) -> int:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("usec", 0))


def _unit_metrics(applier: BatchApplier) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)

    def walk(name: str, reader: Reader) -> None:
        if isinstance(reader, Quotient):
            walk(name, reader.numerator)
            walk(name, reader.denominator)
        elif name not in out[reader.unit.fingerprint]:
            out[reader.unit.fingerprint].append(name)

    for plan in applier.plans:
        for name, reader in plan.readers.items():
            walk(name, reader)
    return out


def profile(client: Any, tree: Any, lines: list[bytes], batch: int) -> dict[str, Any]:
    store = Store(client, namespace="profile")
    store.delete_namespace()
    applier = BatchApplier(store, [tree])
    ts = applier.trees[0]
    units = ts.plan.units
    partition = "profile:0"
    stage: dict[str, float] = defaultdict(float)
    agg_s = [0.0] * len(units)
    filter_s = [0.0] * len(units)
    lua_wall = [0.0] * len(units)
    lua_usec = [0] * len(units)
    entries = [0] * len(units)
    now_ms = int(time.time() * 1000)
    applied = 0
    for start in range(0, len(lines), batch):
        records = list(enumerate(lines[start:start + batch], start))
        t0 = time.perf_counter()
        decoded = [(off, ev) for off, raw in records if isinstance(ev := ts.decoder.decode(raw, now_ms), Event)]
        t1 = time.perf_counter()
        stage["decode"] += t1 - t0
        request = [(tree.tree, ts.plan.horizon_ms, ts.plan.dedupe_ms,
                    verdict_events([ev.insert_id or "", ev.time_ms, off] for off, ev in decoded))]
        verdict_before = _evalsha_usec(client)
        verdicts, offsets = store.verdicts_and_offsets(request, partition, units)
        verdict = verdicts[0][0]
        stage["verdict_lua"] += (_evalsha_usec(client) - verdict_before) / 1e6
        t2 = time.perf_counter()
        stage["verdicts_round_trip"] += t2 - t1
        kept = [ev for (_, ev), v in zip(decoded, verdict, strict=True) if v == "a"]
        applied += len(kept)
        # filter once: the batch by event type, each unit matching only its types
        t3 = time.perf_counter()
        by_type: dict[str, list[Event]] = defaultdict(list)
        for ev in kept:
            by_type[ev.name].append(ev)
        for agg in ts.aggregators:
            for flt, match in zip(agg.unit.filters.values(), agg.matchers.values(), strict=True):
                for name in flt.event:
                    for ev in by_type.get(name, ()):
                        match(ev)
        stage["filter_once"] += time.perf_counter() - t3
        last = records[-1][0]
        memo: Memo = {}  # as the engine: units over the same events share their counts
        for i, (agg, params) in enumerate(zip(ts.aggregators, ts.params, strict=True)):
            t4 = time.perf_counter()
            for match in agg.matchers.values():
                for ev in kept:
                    match(ev)
            t5 = time.perf_counter()
            payload = agg.payload(kept, memo) or {}
            t6 = time.perf_counter()
            filter_s[i] += t5 - t4
            agg_s[i] += t6 - t5
            entries[i] += sum(
                len(unflatten(v, FLAT_FIXED[agg.unit.kind])) if k == "e" and agg.unit.kind in FLAT_FIXED else len(v)
                for k, v in payload.items() if isinstance(v, list)
            )
            call = (agg.unit, offsets[i], last, _complete(agg.unit, payload), params)
            before = _evalsha_usec(client)
            t7 = time.perf_counter()
            store.apply([call], partition)
            lua_wall[i] += time.perf_counter() - t7
            lua_usec[i] += _evalsha_usec(client) - before
        wm = max((ev.time_ms for ev in kept), default=None)
        if wm is not None:
            store.apply([], partition, [(tree.tree, wm)])
    n = len(lines)
    metrics = _unit_metrics(applier)
    per_unit = [
        {"unit": u.fingerprint, "kind": u.kind, "metrics": metrics.get(u.fingerprint, []),
         "filter_us_per_event": round(filter_s[i] / n * 1e6, 2),
         "aggregate_us_per_event": round(agg_s[i] / n * 1e6, 2),
         "lua_us_per_event": round(lua_usec[i] / n, 2),
         "apply_round_trip_us_per_event": round(lua_wall[i] / n * 1e6, 2),
         "payload_entries_per_batch": round(entries[i] / max(1, -(-n // batch)), 1)}
        for i, u in enumerate(units)
    ]
    python_agg = sum(agg_s)
    lua = sum(lua_usec) / 1e6
    total = stage["decode"] + stage["verdicts_round_trip"] + python_agg + lua
    return {
        "events": n, "accepted": applied, "batch": batch,
        "decode_us_per_event": round(stage["decode"] / n * 1e6, 2),
        "verdicts_round_trip_us_per_event": round(stage["verdicts_round_trip"] / n * 1e6, 2),
        "verdict_lua_us_per_event": round(stage["verdict_lua"] / n * 1e6, 2),
        "filters_all_units_us_per_event": round(sum(filter_s) / n * 1e6, 2),
        "filter_once_us_per_event": round(stage["filter_once"] / n * 1e6, 2),
        "aggregate_excl_filter_us_per_event": round(max(0.0, python_agg - sum(filter_s)) / n * 1e6, 2),
        "aggregate_incl_filter_us_per_event": round(python_agg / n * 1e6, 2),
        "lua_all_units_us_per_event": round(lua / n * 1e6, 2),
        "lua_share_of_total": round(lua / total, 3) if total else None,
        "shares": {
            "decode": round(stage["decode"] / total, 3),
            "verdicts_round_trip": round(stage["verdicts_round_trip"] / total, 3),
            "aggregate_incl_filter": round(python_agg / total, 3),
            "unit_lua": round(lua / total, 3),
        } if total else {},
        "units": per_unit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--redis", help="Redis URL (default: start a local redis-server)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--tune-gc", action="store_true",
                        help="the worker's garbage-collector settings (streamer/worker/gctune.py)")
    args = parser.parse_args(argv)
    from streamer.bench.evaluation import load_tree

    load = education_workload(args.events, partitions=1)
    if args.tune_gc:
        from streamer.worker.gctune import tune_gc

        tune_gc()
    with bench_redis(args.redis) as client:
        result = profile(client, load_tree("education"), load.lines[: load.events], args.batch)
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return 0
    for key, value in result.items():
        if key not in ("units",):
            print(f"{key:>36}: {value}")
    print(f"{'unit':<10} {'kind':<9} {'filter':>7} {'aggr':>7} {'lua':>7} {'rt':>7} {'entries':>8}  metrics (us/event)")
    for u in result["units"]:
        print(f"{u['unit']:<10} {u['kind']:<9} {u['filter_us_per_event']:>7} {u['aggregate_us_per_event']:>7} "
              f"{u['lua_us_per_event']:>7} {u['apply_round_trip_us_per_event']:>7} "
              f"{u['payload_entries_per_batch']:>8}  {', '.join(u['metrics'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
