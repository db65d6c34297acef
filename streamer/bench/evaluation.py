"""Evaluation cost vs population: fill the education tree's state with N
active users, then time reading every metric (current + baseline window).

    python -m streamer.bench.evaluation [--users 10000 100000 1000000] [--redis URL]

``--events-factor K`` also fills the first population with K times the
lessons per user: the same users, more events. Every population is filled
into a namespace of its own and they are timed round-robin
(``time_round_robin``), so a slow spell of the machine falls on all alike.

Reading must not grow with the number of events or users: windowed sums read
``w/r`` buckets, entity measures a difference array over window ends,
percentiles ``ZCARD`` + ``ZRANGE`` by rank. ``measure`` is what
``northstar bench`` runs; ``extrapolate`` fits the rows linearly in users to
predict sizes that do not fit the benchmark's time.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from streamer.bench.redis_target import bench_redis
from streamer.engine import BatchApplier
from streamer.spec.model import Tree
from streamer.state.evaluate import evaluate
from streamer.state.store import Store

DAY_MS = 86_400_000
T_END = 20_400 * DAY_MS  # a UTC midnight


def load_tree(name: str) -> Tree:
    from ruamel.yaml import YAML

    path = Path(__file__).resolve().parents[2] / "definitions" / f"{name}.yaml"
    return Tree.model_validate(YAML(typ="safe").load(path.read_text()))


def education_events(users: int, seed: int = 1, factor: int = 1) -> Iterator[bytes]:
    """About 2.3 events per user over the 21 days before T_END; ``factor``
    times as many lessons completed per user (the same users, more events)."""
    rng = random.Random(seed)
    for u in range(users):
        user = f"u{u}"
        for _ in range(2 * factor):
            t = T_END - rng.randrange(21 * DAY_MS)
            yield orjson.dumps(
                {"event_type": "lesson_completed", "user_id": user, "time": t,
                 "event_properties": {"lesson_id": rng.randrange(500), "minutes": rng.randrange(1, 30)}}
            )
        if u % 10 == 0:
            t = T_END - rng.randrange(7 * DAY_MS)
            yield orjson.dumps({"event_type": "signed_up", "user_id": user, "time": t})
        if u % 5 == 0:
            t = T_END - rng.randrange(14 * DAY_MS)
            yield orjson.dumps({"event_type": "lesson_abandoned", "user_id": user, "time": t,
                                "event_properties": {"minutes": 2}})


def empty(client: Any, timeout_s: float = 600.0) -> None:
    """FLUSHALL without blocking the client past its socket timeout: a
    synchronous flush of 10M users' state (4 GiB) takes longer than that, so
    flush in Redis's background thread and wait until it freed everything."""
    client.flushall(asynchronous=True)
    deadline = time.monotonic() + timeout_s
    while int(client.info("memory").get("lazyfree_pending_objects", 0)) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Redis still freeing the flushed keys after {timeout_s:.0f} s")
        time.sleep(0.05)


def fill(
    client: Any, tree: Tree, users: int, batch: int, factor: int = 1, namespace: str = "bench"
) -> tuple[int, float]:
    store = Store(client, namespace=namespace)
    store.delete_namespace()
    applier = BatchApplier(store, [tree])
    n = 0
    start = time.perf_counter()
    records: list[tuple[int, bytes]] = []
    for line in education_events(users, factor=factor):
        records.append((n, line))
        n += 1
        if len(records) == batch:
            applier.apply("0", records, T_END)
            records = []
    if records:
        applier.apply("0", records, T_END)
    return n, time.perf_counter() - start


def _evaluator(client: Any, tree: Tree, namespace: str) -> Callable[[], dict[str, Any]]:
    """One whole-tree evaluation (now and one window back) of ``namespace``."""
    store = Store(client, namespace=namespace)
    plan = BatchApplier(store, [tree]).plans[0]
    return lambda: evaluate(store, plan, [T_END, T_END - 7 * DAY_MS])[0]


def time_round_robin(
    evaluators: Sequence[Callable[[], dict[str, Any]]], repeats: int
) -> tuple[list[list[float]], list[dict[str, Any]]]:
    """Seconds per call of each evaluator, ``repeats`` each, taken round-robin:
    sample k of every evaluator before sample k + 1 of any, so that a slow
    spell of a shared machine falls on all of them alike (the reason the
    ceiling and one worker run in interleaved pairs). One untimed call of each
    first (connections, script cache). Returns the samples and the last
    values of each."""
    values = [ev() for ev in evaluators]
    samples: list[list[float]] = [[] for _ in evaluators]
    for _ in range(repeats):
        for i, ev in enumerate(evaluators):
            start = time.perf_counter()
            values[i] = ev()
            samples[i].append(time.perf_counter() - start)
    return samples, values


def measure(
    client: Any, tree: Tree, users: Sequence[int | tuple[int, int]], *, batch: int = 10_000, repeats: int = 20,
    after_fill: Callable[[int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """For each population (``users`` or ``(users, factor)``: ``factor`` times
    the lessons per user): fill it into a namespace of its own on an emptied
    Redis, all of them side by side, and read ``used_memory`` around its fill;
    ``after_fill(users, namespace)`` runs right after (e.g. a memory
    breakdown). Then time every population's evaluation round-robin
    (``time_round_robin``): median and max of ``repeats``. Timed one
    population after the other, their sub-millisecond medians moved with the
    machine more than with the data (docs/performance.md, Evaluation cost)."""
    empty(client)
    pops = [(u, 1) if isinstance(u, int) else u for u in users]
    filled = []
    for i, (n_users, factor) in enumerate(pops):
        namespace = f"bench{i}"
        base = int(client.info("memory")["used_memory"])
        n, seconds = fill(client, tree, n_users, batch, factor, namespace)
        used = int(client.info("memory")["used_memory"]) - base
        if after_fill is not None:
            after_fill(n_users, namespace)
        filled.append((n_users, factor, n, seconds, used, namespace))
    samples, values = time_round_robin([_evaluator(client, tree, ns) for *_, ns in filled], repeats)
    rows = []
    for (n_users, factor, n, seconds, used, _), times, got in zip(filled, samples, values, strict=True):
        rows.append({
            "users": n_users, "events_factor": factor, "active_in_window": got.get("weekly_active_learners"),
            "events": n, "events_per_user": round(n / n_users, 2), "fill_events_per_s": round(n / seconds, 1),
            "eval_ms_median": round(statistics.median(times) * 1000, 3),
            "eval_ms_max": round(max(times) * 1000, 3),
            "redis_used_mib": round(used / 2**20, 1),
        })
    return rows


def extrapolate(
    rows: list[dict[str, Any]], key: str, users: int, scale: str = "linear"
) -> dict[str, Any] | None:
    """Least-squares line of ``key`` over users (``scale="log"``: over
    log10(users), the shape of an O(log n) read) and the value it predicts
    at ``users``; None with fewer than two populations. ``slope`` is per
    million users (linear) or per tenfold population (log)."""
    if len(rows) < 2:
        return None
    if scale not in ("linear", "log"):
        raise ValueError(f"scale must be linear or log, not {scale!r}")
    to_x = (lambda u: math.log10(u)) if scale == "log" else (lambda u: u / 1e6)
    xs = [to_x(float(r["users"])) for r in rows]
    ys = [float(r[key]) for r in rows]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return {"scale": scale, "slope": round(slope, 4),
            "slope_per": "tenfold users" if scale == "log" else "million users",
            "at_users": users, "predicted": round(my + slope * (to_x(float(users)) - mx), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--redis", help="Redis URL (default: start a local redis-server)")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--events-factor", type=int, default=1,
                        help="also the first population with this many times the events per user")
    args = parser.parse_args(argv)
    if args.events_factor < 1 or min(args.users) < 1:
        parser.error("--users and --events-factor must be >= 1")
    with bench_redis(args.redis) as client:
        tree = load_tree("education")
        pops = [(u, 1) for u in args.users] + ([(args.users[0], args.events_factor)] if args.events_factor > 1 else [])
        rows = measure(client, tree, pops, batch=args.batch, repeats=args.repeats)
        print(f"{'users':>10} {'factor':>6} {'events':>10} {'fill ev/s':>10} {'eval ms':>8} {'redis MiB':>10}  weekly_active_learners")
        for r in rows:
            print(f"{r['users']:>10} {r['events_factor']:>6} {r['events']:>10} {r['fill_events_per_s']:>10.0f} "
                  f"{r['eval_ms_median']:>8.3f} {r['redis_used_mib']:>10.1f}  {r['active_in_window']:.0f}")
        empty(client)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
