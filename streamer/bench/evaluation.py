"""Evaluation cost vs population: fill the education tree's state with N
active users, then time reading every metric (current + baseline window).

    python -m streamer.bench.evaluation [--users 10000 100000 1000000] [--redis URL]

``--events-factor K`` also fills the first population with K times the
lessons per user: the same users, more events.

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
from collections.abc import Iterator
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


def fill(client: Any, tree: Tree, users: int, batch: int, factor: int = 1) -> tuple[int, float]:
    store = Store(client, namespace="bench")
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


def time_evaluation(client: Any, tree: Tree, repeats: int) -> tuple[list[float], dict[str, Any]]:
    """Seconds per whole-tree evaluation (now and one window back), ``repeats``
    times, and the values of the last one."""
    store = Store(client, namespace="bench")
    plan = BatchApplier(store, [tree]).plans[0]
    samples = []
    values: dict[str, Any] = {}
    for _ in range(repeats):
        start = time.perf_counter()
        values = evaluate(store, plan, [T_END, T_END - 7 * DAY_MS])[0]
        samples.append(time.perf_counter() - start)
    return samples, values


def measure(
    client: Any, tree: Tree, users: list[int], *, batch: int = 10_000, repeats: int = 20,
    after_fill: Any = None, factor: int = 1,
) -> list[dict[str, Any]]:
    """For each population (on an emptied Redis): fill (``factor``: times the
    lessons per user), time the evaluation (median and max of ``repeats``)
    and read ``used_memory``; ``after_fill(users)`` runs while the state is
    there (e.g. a memory breakdown)."""
    rows = []
    for n_users in users:
        empty(client)
        base = int(client.info("memory")["used_memory"])
        n, seconds = fill(client, tree, n_users, batch, factor)
        samples, values = time_evaluation(client, tree, repeats)
        used = int(client.info("memory")["used_memory"]) - base
        if after_fill is not None:
            after_fill(n_users)
        rows.append({
            "users": n_users, "active_in_window": values.get("weekly_active_learners"),
            "events": n, "events_per_user": round(n / n_users, 2), "fill_events_per_s": round(n / seconds, 1),
            "eval_ms_median": round(statistics.median(samples) * 1000, 3),
            "eval_ms_max": round(max(samples) * 1000, 3),
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
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--events-factor", type=int, default=1,
                        help="also the first population with this many times the events per user")
    args = parser.parse_args(argv)
    if args.events_factor < 1 or min(args.users) < 1:
        parser.error("--users and --events-factor must be >= 1")
    with bench_redis(args.redis) as client:
        tree = load_tree("education")
        print(f"{'users':>10} {'events':>10} {'fill ev/s':>10} {'eval ms':>8} {'redis MiB':>10}  weekly_active_learners")
        runs = [(u, 1) for u in args.users] + ([(args.users[0], args.events_factor)] if args.events_factor > 1 else [])
        for users, factor in runs:
            empty(client)
            n, seconds = fill(client, tree, users, args.batch, factor)
            samples, values = time_evaluation(client, tree, args.repeats)
            median = statistics.median(samples)
            mem = client.info("memory")["used_memory"] / 2**20
            print(f"{users:>10} {n:>10} {n / seconds:>10.0f} {median * 1000:>8.2f} {mem:>10.1f}  "
                  f"{values['weekly_active_learners']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
