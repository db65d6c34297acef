"""``northstar soak``: a long run at a fixed rate, watching for slow leaks.

Starts the local services the way the bench does (a Tansu broker and a
redis-server unless ``--kafka``/``--redis`` are given) and one ``northstar
worker`` on the education tree, measures the worker's maximum rate on a
pre-filled topic (unless ``--rate``), then produces simulated education
traffic at a fixed rate (default: half that maximum) for ``--duration``
seconds. Every ``--interval`` seconds it samples:

- worker RSS (``/proc/<pid>/status``), Redis ``used_memory`` (``INFO``) and the
  part of it held by the insert-id dedupe keys (``MEMORY USAGE``);
- lag: records acknowledged by the broker minus records applied, per
  partition, read from the units' applied offsets in Redis (not ListOffsets,
  which Tansu answers wrongly, see streamer.testing.worker);
- errors: ``northstar_events_invalid_total``, ``northstar_dead_letters_total``,
  late and duplicate events, samples with ``northstar_redis_up == 0``, failed
  scrapes of the worker's ``/metrics`` and failed sends.

The traffic cycles over a fixed pool of simulated events (``--pool-events``,
~15 events per user), re-stamped with the wall clock and given fresh insert
ids, so the user population is fixed: per-user state plateaus once every user
was seen (in the first seconds); insert ids legitimately accumulate for the
tree's 7-day dedupe horizon. Verdicts: streamer.bench.soak_stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streamer.bench.soak_stats import Series, judge, table, verdict_lines
from streamer.bench.throughput import Services, rss_mib, worker
from streamer.bench.workload import education_workload
from streamer.state.store import Store
from streamer.testing.worker import load_tree, tree_on_topic
from streamer.windows.units import compile_tree

TREE = "education"
TOPIC = "soak-events"
NAMESPACE = "soak"
MIB = 1024 * 1024
DEFINITIONS = Path(__file__).resolve().parents[2] / "definitions" / f"{TREE}.yaml"
DEDUPE = "insert ids kept for the tree's 7-day dedupe horizon"
PAIRS = "pair units keep end events without a start (docs/state.md section 5)"

SERIES = (
    Series("worker_rss", "MiB", floor=2.0),
    Series("redis_memory", "MiB", floor=1.0, expected_growth=DEDUPE),
    Series("redis_without_ids", "MiB", floor=1.0, expected_growth=PAIRS),
    Series("lag", "events"),  # floor set from the rate: one second of traffic
    Series("invalid_events", "count", "errors"),
    Series("dead_letters", "count", "errors"),
    Series("late_or_duplicate", "count", "errors"),
    Series("redis_down_samples", "count", "errors"),
    Series("scrape_failures", "count", "errors"),
    Series("redis_errors", "count", "errors"),  # the soak's own reads failed (BUSY, timeouts)
    Series("worker_log_errors", "count", "errors"),  # ERROR lines: e.g. a failed evaluation
    Series("producer_errors", "count", "errors"),
)


@dataclass(frozen=True)
class SoakConfig:
    duration_s: float = 1800.0
    rate: float | None = None
    """Events per second; None: ``rate_fraction`` of a measured maximum."""
    interval_s: float = 30.0
    rate_fraction: float = 0.5
    calibrate_events: int = 50_000
    pool_events: int = 100_000
    user_seconds: float = 60.0
    """Seconds between two events of one simulated user, on average: the
    population is ``rate * user_seconds`` (at least the pool's users), so a
    faster soak spreads over more users instead of making each one busier."""
    partitions: int = 2
    session_timeout_ms: int = 3000
    drain_timeout_s: float = 60.0
    kafka: str | None = None
    redis_url: str | None = None
    workdir: Path | None = None

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.interval_s <= 0:
            raise ValueError("--duration and --interval must be positive")
        if not (math.isfinite(self.user_seconds) and self.user_seconds > 0):
            raise ValueError("--user-seconds must be a positive number of seconds")
        if self.interval_s > self.duration_s:
            raise ValueError("--interval must not exceed --duration")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError("--rate must be a positive number of events per second")
        if not 0 < self.rate_fraction <= 1:
            raise ValueError("the rate fraction must be in (0, 1]")
        if self.calibrate_events < 1000 or self.pool_events < 100 or self.partitions < 1:
            raise ValueError("need >= 1000 calibration events, >= 100 pool events, >= 1 partition")


# ---------------------------------------------------------------------- producing


@dataclass
class _Counts:
    acked: dict[int, int] = field(default_factory=dict)
    errors: int = 0


def copies_for(rate: float, user_seconds: float, pool_users: int) -> int:
    """How many copies of the pool's users make a population of ``rate *
    user_seconds`` users (at least one: the pool itself)."""
    return max(1, math.ceil(rate * user_seconds / max(1, pool_users)))


def user_of(user: str, sent: int, pool_size: int, copies: int) -> str:
    """The user id the ``sent``-th event (of a pool of ``pool_size`` events,
    sent round robin) carries: each pass over the pool speaks for the next
    copy of its users, ``<user>~<copy>`` (copy 0 keeps the pool's id)."""
    copy = (sent // pool_size) % copies
    return user if copy == 0 else f"{user}~{copy}"


class Producer(threading.Thread):
    """Sends ``events`` round robin at ``rate`` per second to ``topic`` until
    stopped, re-stamped with the wall clock and a fresh insert id, each to the
    partition CRC32(user) picks; successive passes over the pool speak for
    ``copies`` copies of its users (``user_of``). ``counts.acked`` holds, per
    partition, the records the broker acknowledged (on a fresh topic: its end
    offset + 1)."""

    def __init__(self, bootstrap: str, topic: str, events: list[dict[str, Any]], rate: float,
                 partitions: int, already: dict[int, int], copies: int = 1) -> None:
        super().__init__(daemon=True, name="soak-producer")
        self.bootstrap, self.topic, self.events, self.rate = bootstrap, topic, events, rate
        self.partitions = partitions
        self.copies = copies
        self.counts = _Counts(acked=dict(already))
        self.already = sum(already.values())
        self.sent = 0
        self.failure: BaseException | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)

    @property
    def acked_total(self) -> int:
        return sum(self.counts.acked.values())

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by the soak, never swallowed
            self.failure = exc

    def _done(self, partition: int, n: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.counts.errors += n
        else:
            self.counts.acked[partition] += n

    async def _run(self) -> None:
        from streamer.kafka.produce import new_producer

        producer = new_producer({"bootstrap_servers": self.bootstrap})
        await producer.start()
        users = [str(e["user_id"]) for e in self.events]
        pool = len(self.events)
        pending: set[asyncio.Future[Any]] = set()
        try:
            started = time.monotonic()
            while not self._stop_event.is_set():
                due = int((time.monotonic() - started) * self.rate) - self.sent
                now_ms = int(time.time() * 1000)
                batches: dict[int, tuple[Any, int]] = {}
                for _ in range(max(0, due)):
                    i = self.sent % pool
                    user = user_of(users[i], self.sent, pool, self.copies)
                    key = user.encode()
                    p = zlib.crc32(key) % self.partitions
                    value = orjson.dumps({**self.events[i], "user_id": user, "time": now_ms,
                                          "insert_id": f"soak-{self.sent}"})
                    batch, n = batches.get(p) or (producer.create_batch(), 0)
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        pending.add(await self._send(producer, batch, p, n))
                        batch, n = producer.create_batch(), 0
                        batch.append(key=key, value=value, timestamp=None)
                    batches[p] = (batch, n + 1)
                    self.sent += 1
                for p, (batch, n) in batches.items():
                    pending.add(await self._send(producer, batch, p, n))
                pending = {f for f in pending if not f.done()}
                await asyncio.sleep(0.01)
            if pending:
                await asyncio.wait(pending, timeout=30)
        finally:
            await producer.stop()

    async def _send(self, producer: Any, batch: Any, partition: int, n: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await producer.send_batch(batch, self.topic, partition=partition)
        future.add_done_callback(lambda f: self._done(partition, n, f))
        return future


# ---------------------------------------------------------------------- the run


def _services(config: SoakConfig, stack: contextlib.ExitStack, workdir: Path) -> Services:
    from streamer.testing import RedisServer, TansuBroker

    bootstrap = config.kafka or stack.enter_context(TansuBroker(workdir / "tansu")).bootstrap
    redis_url = config.redis_url or stack.enter_context(RedisServer(workdir / "redis")).url
    return Services(bootstrap, redis_url, workdir)


def calibrate(services: Services, proc: Any, store: Store, plan: Any, events: list[dict[str, Any]],
              config: SoakConfig, log: Callable[[str], None]) -> tuple[float, dict[int, int]]:
    """The running worker's maximum rate: produce ``config.calibrate_events``
    events to the soak topic as fast as the broker takes them (several times
    faster than a worker applies them) and time until the worker applied the
    last one. Returns (events/s, records produced per partition)."""
    from streamer.kafka.produce import produce_sync

    now_ms = int(time.time() * 1000)
    n = config.calibrate_events
    chosen = [events[i % len(events)] for i in range(n)]
    lines = [orjson.dumps({**e, "time": now_ms, "insert_id": f"cal-{i}"}) for i, e in enumerate(chosen)]
    counts = dict.fromkeys(range(config.partitions), 0)
    for e in chosen:
        counts[zlib.crc32(str(e["user_id"]).encode()) % config.partitions] += 1
    log(f"calibrating: {n} events produced at once to {TOPIC}")
    started = time.monotonic()
    sent = produce_sync(lines, TOPIC, {"bootstrap_servers": services.bootstrap})
    if sent != n:
        raise RuntimeError(f"produced {sent} of {n} calibration events")

    def applied() -> bool:
        return all(min(store.applied_offsets(plan.units, f"{TOPIC}:{p}")) + 1 >= c
                   for p, c in counts.items() if c)

    proc.wait_for(applied, 600, "every calibration event applied")
    return n / (time.monotonic() - started), counts


def _pool(config: SoakConfig) -> tuple[list[dict[str, Any]], int]:
    workload = education_workload(config.pool_events, config.partitions, seed=7)
    events = [orjson.loads(line) for line in workload.lines]
    events = [e for e in events if e["event_type"] != "bench_end"]
    return events, len({e["user_id"] for e in events})


def _error_totals(samples: dict[Any, float]) -> dict[str, float]:
    def total(name: str) -> float:
        return sum(v for (n, _), v in samples.items() if n == name)

    return {
        "invalid_events": total("northstar_events_invalid_total"),
        "dead_letters": total("northstar_dead_letters_total"),
        "late_or_duplicate": total("northstar_events_late_total") + total("northstar_events_duplicate_total"),
        "redis_up": total("northstar_redis_up"),
    }


def _ids_bytes(client: Any) -> int:
    total = 0
    for suffix in ("ids", "idt"):
        used = client.memory_usage(f"{NAMESPACE}:{{{TREE}}}:{suffix}")  # sampled: O(1)
        total += int(used or 0)
    return total


def run_soak(config: SoakConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the soak; the result as a JSON-ready dict (``table`` prints it)."""
    import redis

    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="northstar-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    with contextlib.ExitStack() as stack:
        services = _services(config, stack, workdir)
        client = redis.Redis.from_url(services.redis_url)
        events, users = _pool(config)
        from streamer.testing import create_topic

        create_topic(services.bootstrap, TOPIC, config.partitions)
        definitions = tree_on_topic(DEFINITIONS, TOPIC, workdir / "defs-soak")
        plan = compile_tree(load_tree(definitions))
        store = Store(client, namespace=NAMESPACE)
        store.delete_namespace()
        proc = worker(services, definitions, name="soak-w", group="g-soak", namespace=NAMESPACE,
                      session_timeout_ms=config.session_timeout_ms)
        stack.callback(proc.terminate)
        proc.start()
        max_rate, already = None, dict.fromkeys(range(config.partitions), 0)
        if config.rate is None:
            max_rate, already = calibrate(services, proc, store, plan, events, config, log)
            log(f"the worker's maximum: {max_rate:,.0f} events/s")
        rate = config.rate or max_rate * config.rate_fraction  # type: ignore[operator]
        copies = copies_for(rate, config.user_seconds, users)
        users *= copies
        producer = Producer(services.bootstrap, TOPIC, events, rate, config.partitions, already, copies)
        log(f"producing {rate:,.0f} events/s for {config.duration_s:g}s ({users:,} users, "
            f"one event per {config.user_seconds:g} s each on average), "
            f"sampling every {config.interval_s:g}s; logs in {workdir}")
        rows = list(_sample(config, proc, producer, client, store, plan, rate, log))
        producer.stop()
        drained_s = _drain(config, proc, producer, store, plan)
        final = _error_totals(proc.samples())
    load_end = os.getloadavg()
    return _result(config, rows, rate, max_rate, users, drained_s, final, load_start, load_end,
                   producer)


def _lag(producer: Producer, store: Store, plan: Any) -> tuple[int, int]:
    """(acknowledged - applied, applied), summed over partitions."""
    acked = dict(producer.counts.acked)
    applied = 0
    for p in acked:
        offsets = store.applied_offsets(plan.units, f"{TOPIC}:{p}")
        applied += min(offsets) + 1
    return sum(acked.values()) - applied, applied


def _sample(config: SoakConfig, proc: Any, producer: Producer, client: Any, store: Store, plan: Any,
            rate: float, log: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    started = time.monotonic()
    producer.start()
    import redis

    redis_down = scrape_failures = redis_errors = 0
    applied = 0
    last_sent, last_t = 0, 0.0
    errors: dict[str, float] = {}
    for tick in range(1, max(1, round(config.duration_s / config.interval_s)) + 1):
        wake = started + tick * config.interval_s
        time.sleep(max(0.0, wake - time.monotonic()))
        if producer.failure is not None:
            raise RuntimeError(f"the producer failed: {producer.failure!r}")
        if not proc.is_running():
            raise RuntimeError(f"the worker exited; its log:\n{proc.log_tail()}")
        t = time.monotonic() - started
        try:
            errors = _error_totals(proc.samples())
            redis_down += errors["redis_up"] < 1
        except OSError:
            scrape_failures += 1
        try:
            used: int | None = int(client.info("memory")["used_memory"])
            ids: int | None = _ids_bytes(client)
            lag: int | None
            lag, applied = _lag(producer, store, plan)
        except redis.RedisError as exc:  # e.g. BUSY: a Lua script ran past 5 s
            redis_errors += 1
            log(f"reading Redis failed: {exc}")
            used = ids = lag = None
        sent = producer.sent
        row = {
            "t_s": round(t, 1), "worker_rss": rss_mib(proc.pid),
            "redis_memory": None if used is None else used / MIB,
            "redis_without_ids": None if used is None or ids is None else (used - ids) / MIB, "lag": lag,
            "invalid_events": errors.get("invalid_events"), "dead_letters": errors.get("dead_letters"),
            "late_or_duplicate": errors.get("late_or_duplicate"), "redis_down_samples": redis_down,
            "scrape_failures": scrape_failures, "producer_errors": producer.counts.errors,
            "redis_errors": redis_errors, "worker_log_errors": _log_errors(proc.log_path),
            "produced": producer.acked_total, "applied": applied,
            "rate": round((sent - last_sent) / (t - last_t), 1) if t > last_t else None,
            "load1": round(os.getloadavg()[0], 2),
        }
        last_sent, last_t = sent, t
        log(" ".join(f"{k}={_short(v)}" for k, v in row.items()))
        yield row


def _log_errors(path: Path) -> int:
    """ERROR lines in the worker's log so far (failed evaluations have no metric)."""
    try:
        with path.open("rb") as log:
            return sum(1 for line in log if b"[ERROR]" in line)
    except OSError:
        return 0


def _short(v: Any) -> str:
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def _drain(config: SoakConfig, proc: Any, producer: Producer, store: Store, plan: Any) -> float | None:
    """Seconds until every acknowledged record was applied after producing
    stopped; None when the worker stopped making progress for
    ``drain_timeout_s``, or after a quarter of the soak's duration (a backlog
    that shrinks is waited for, within reason)."""
    import redis

    started = stalled_since = time.monotonic()
    best = -1
    cap = max(config.drain_timeout_s, config.duration_s / 4)
    while time.monotonic() - stalled_since < config.drain_timeout_s and time.monotonic() - started < cap:
        try:
            lag, applied = _lag(producer, store, plan)
        except redis.RedisError:  # BUSY: wait for the script, it still counts as progress-less
            time.sleep(0.5)
            continue
        if lag <= 0:
            return time.monotonic() - started
        if applied > best:
            best, stalled_since = applied, time.monotonic()
        if not proc.is_running():
            return None
        time.sleep(0.5)
    return None


def _result(config: SoakConfig, rows: list[dict[str, Any]], rate: float, max_rate: float | None,
            users: int, drained_s: float | None, final: dict[str, float],
            load_start: tuple[float, float, float], load_end: tuple[float, float, float],
            producer: Producer) -> dict[str, Any]:
    times = [r["t_s"] for r in rows]
    verdicts = []
    for s in SERIES:
        if s.name == "lag":
            s = Series("lag", "events", floor=rate)
        verdicts.append(judge(s, times, [r.get(s.name) for r in rows]).as_dict())
    errors = sum(1 for v in verdicts if v["verdict"] == "errors")
    produced_s = rows[-1]["t_s"] if rows else 0.0
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "machine": {"cpus": os.cpu_count(), "load_average_start": [round(x, 2) for x in load_start],
                    "load_average_end": [round(x, 2) for x in load_end]},
        "rate": {"target_events_per_s": round(rate, 1), "measured_max_events_per_s": _round(max_rate),
                 "achieved_events_per_s": round((producer.acked_total - producer.already) / produced_s, 1) if produced_s else None},
        "users": users, "produced": producer.acked_total,
        "drained_s": _round(drained_s), "final_errors": final,
        "rows": rows, "verdicts": verdicts,
        "ok": errors == 0 and drained_s is not None,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def report(result: dict[str, Any], max_rows: int = 40) -> str:
    """The human-readable table and verdicts of a soak result."""
    rows = result["rows"]
    every = max(1, math.ceil(len(rows) / max_rows))
    rate = result["rate"]
    m = result["machine"]
    head = (f"soak: {rate['target_events_per_s']:,.0f} events/s target "
            f"(measured max {rate['measured_max_events_per_s'] or '-'}), achieved "
            f"{rate['achieved_events_per_s'] or 0:,.0f}/s, {result['produced']:,} events, "
            f"{result['users']:,} users; {m['cpus']} CPUs, load {m['load_average_start'][0]} -> "
            f"{m['load_average_end'][0]}")
    columns = [*SERIES[:4], Series("rate", "ev/s"), Series("load1", "")]
    units = {s.name: s.unit for s in SERIES}
    drained = result["drained_s"]
    tail = (f"drained after stop: {drained}s" if drained is not None
            else "NOT drained after stop within the timeout")
    return "\n".join([head, "", table(columns, rows, every), "",
                      verdict_lines([_verdict(v) for v in result["verdicts"]], units), tail,
                      "OK" if result["ok"] else "FAILED: errors or not drained"])


def _verdict(d: dict[str, Any]) -> Any:
    from streamer.bench.soak_stats import Verdict

    return Verdict(d["series"], d["verdict"], d["mean"], d["growth_second_half"], d["tolerance"],
                   d["slope_per_hour"], d["note"])


def main(argv: list[str] | None = None) -> int:
    """``python -m streamer.bench.soak ...`` is ``northstar soak ...``."""
    from streamer.cli import main as cli_main

    return cli_main(["soak", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":
    raise SystemExit(main())
