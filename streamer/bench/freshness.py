"""Freshness: from an event produced to its effect visible in the snapshot in
Redis and on the read side's ``/metrics``, under load.

A worker (evaluator on the faust leader) and ``northstar api`` run on a
topic of their own, with as many partitions as the topic whose rate the
freshness rate is half of (a worker has a lane per partition). The producer
sends simulated education events, re-stamped with the wall clock, at a
fixed rate, batch by batch to each partition in turn, and every
``marker_interval_s`` a marker, always to partition 0 (so markers apply in
produce order): a
``subscription_purchased`` event carrying its produce time (the background
traffic has none, so ``paid_conversions`` counts markers). Marker ``k`` is
visible once a snapshot shows ``paid_conversions >= k``; two pollers read the
snapshot key and scrape ``/metrics`` every ``poll_s``. A third reads partition
0's applied offsets, which splits the snapshot's delay into produced ->
applied (the worker) and applied -> in a snapshot (the evaluation).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from streamer.bench.throughput import Services, rss_mib, worker
from streamer.evaluate.evaluator import load_snapshot
from streamer.export.collector import CACHE_SECONDS
from streamer.state.store import Store
from streamer.testing.process import ManagedProcess, ServiceNotReadyError, free_port, wait_until
from streamer.testing.worker import parse_samples

MARKER = "paid_conversions"


@dataclass(frozen=True)
class FreshnessConfig:
    rate: float
    """Events per second to produce (markers included)."""
    seconds: float = 30.0
    warmup_s: float = 3.0
    marker_interval_s: float = 0.1
    evaluate_interval_s: float = 0.5
    poll_s: float = 0.02
    session_timeout_ms: int = 3000
    partitions: int = 1

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.seconds <= self.warmup_s or self.marker_interval_s <= 0 or self.partitions < 1:
            raise ValueError(f"bad freshness configuration: {self}")


class _Poller(threading.Thread):
    """Calls ``read()`` every ``interval`` s and keeps the times the value rose."""

    def __init__(self, read: Callable[[], float | None], interval: float) -> None:
        super().__init__(daemon=True)
        self.read = read
        self.interval = interval
        self.rises: list[tuple[float, float]] = []
        self.errors = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        best = 0.0
        while not self._stop_event.is_set():
            try:
                value = self.read()
            except Exception:  # a scrape that fails counts as "not visible yet"
                self.errors += 1
                value = None
            now = time.time()
            if value is not None and value > best:
                best = value
                self.rises.append((now, value))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def seen(self, k: int) -> float | None:
        """When a value >= ``k`` was first read."""
        for t, value in self.rises:
            if value >= k:
                return t
        return None


def _percentile(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    ordered = sorted(xs)
    h = (len(ordered) - 1) * q / 100
    lo = int(h)
    return ordered[lo] + (h - lo) * (ordered[min(lo + 1, len(ordered) - 1)] - ordered[lo])


def _summary(poller: _Poller, markers: list[tuple[int, float]], warmup_until: float) -> dict[str, Any]:
    delays = []
    unseen = 0
    for k, produced in markers:
        if produced < warmup_until:
            continue
        t = poller.seen(k)
        if t is None:
            unseen += 1
        else:
            delays.append(t - produced)
    return {
        "markers": len(delays), "unseen": unseen,
        "p50_s": _round(_percentile(delays, 50)), "p99_s": _round(_percentile(delays, 99)),
        "max_s": _round(max(delays) if delays else None), "read_errors": poller.errors,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def background_events(lines: Sequence[bytes]) -> list[dict[str, Any]]:
    """The workload's events without purchases (markers are the only ones)."""
    out = []
    for line in lines:
        event = orjson.loads(line)
        if event["event_type"] not in ("subscription_purchased", "bench_end"):
            out.append(event)
    return out


async def _produce(
    bootstrap: str, topic: str, events: list[dict[str, Any]], config: FreshnessConfig,
    markers: list[tuple[int, float]], marker_offsets: dict[int, int] | None = None,
) -> int:
    """Send background events at ``config.rate`` and a marker every
    ``marker_interval_s``; returns how many background events were sent."""
    from streamer.kafka.produce import new_producer

    producer = new_producer({"bootstrap_servers": bootstrap})
    await producer.start()
    sent = 0
    turn = 0  # the partition this batch goes to
    try:
        started = time.time()
        next_marker = started
        while (now := time.time()) - started < config.seconds:
            due = int((now - started) * config.rate) - sent
            batch = producer.create_batch()
            now_ms = int(now * 1000)
            appended = 0
            for i in range(max(0, due)):
                event = events[(sent + i) % len(events)]
                stamped = {**event, "time": now_ms, "insert_id": f"f{sent + i}"}
                if batch.append(key=str(event["user_id"]).encode(), value=orjson.dumps(stamped),
                                timestamp=None) is None:
                    break  # batch full: the rest goes with the next one
                appended += 1
            marker_at = None
            if turn == 0 and now >= next_marker:
                k = len(markers) + 1
                marker = {"event_type": "subscription_purchased", "user_id": f"marker-{k}",
                          "time": now_ms, "insert_id": f"marker-{k}",
                          "event_properties": {"plan": "monthly", "amount_usd": 12.0,
                                               "marker": k, "produced_ms": now_ms}}
                if batch.append(key=b"marker", value=orjson.dumps(marker), timestamp=None) is not None:
                    marker_at = k
                    next_marker += config.marker_interval_s
            if count := batch.record_count():
                future = await producer.send_batch(batch, topic, partition=turn)
                if marker_at is not None:
                    markers.append((marker_at, time.time()))
                meta = await future
                if marker_at is not None and marker_offsets is not None:
                    marker_offsets[marker_at] = meta.offset + count - 1
            sent += appended
            turn = (turn + 1) % config.partitions
            await asyncio.sleep(0.005)
    finally:
        await producer.stop()
    return sent


def run_freshness(
    services: Services, client: Any, definitions: Path, topic: str, lines: Sequence[bytes],
    config: FreshnessConfig,
) -> dict[str, Any]:
    """Produce at ``config.rate`` for ``config.seconds``; freshness of the snapshot and of ``/metrics``."""
    from streamer.testing import create_topic

    namespace = "fresh"
    store = Store(client, namespace=namespace)
    store.delete_namespace()
    create_topic(services.bootstrap, topic, config.partitions)
    events = background_events(lines)
    proc = worker(services, definitions, name="fresh-w", group="g-fresh", namespace=namespace,
                  session_timeout_ms=config.session_timeout_ms,
                  env={"NORTHSTAR_EVALUATE_INTERVAL_S": str(config.evaluate_interval_s)})
    port = free_port("127.0.0.1")
    api = ManagedProcess(
        "northstar api",
        [sys.executable, "-m", "streamer.cli", "api", "-d", str(definitions), "--redis", services.redis_url,
         "--namespace", namespace, "--port", str(port)],
        log_path=services.workdir / "fresh-api.log", cwd=services.workdir,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def from_snapshot() -> float | None:
        snapshot = load_snapshot(store, "education")
        if snapshot is None:
            return None
        for metric in snapshot["metrics"]:
            if metric["name"] == MARKER:
                value = metric["value"]
                return None if value is None else float(value)
        return None

    def from_metrics() -> float | None:
        with urllib.request.urlopen(url, timeout=2) as response:
            samples = parse_samples(response.read().decode())
        for (name, labels), value in samples.items():
            if name == "northstar_metric_value" and ("metric", MARKER) in labels:
                return value
        return None

    applied_keys: list[str] = []
    reads = [0]
    field = f"{topic}:0"

    def from_applied() -> float | None:
        """Partition 0's greatest applied offset over every unit (whose keys
        are listed again every 50 reads: units appear with their first events)."""
        if reads[0] % 50 == 0:
            applied_keys[:] = [k.decode() if isinstance(k, bytes) else k
                               for k in client.scan_iter(match=f"{namespace}:*applied", count=1000)]
        reads[0] += 1
        if not applied_keys:
            return None
        pipe = client.pipeline(transaction=False)
        for key in applied_keys:
            pipe.hget(key, field)
        values = [int(v) for v in pipe.execute() if v is not None]
        return float(max(values)) if values else None

    markers: list[tuple[int, float]] = []
    marker_offsets: dict[int, int] = {}
    pollers = [_Poller(from_snapshot, config.poll_s), _Poller(from_metrics, max(config.poll_s, 0.05)),
               _Poller(from_applied, config.poll_s)]
    try:
        proc.start()
        api.start()
        api.wait_ready(lambda: urllib.request.urlopen(url, timeout=1).status == 200, 60, "northstar api /metrics")
        for poller in pollers:
            poller.start()
        started = time.time()
        sent = asyncio.run(_produce(services.bootstrap, topic, events, config, markers, marker_offsets))
        produced_s = time.time() - started
        rss = rss_mib(proc.pid) or 0.0
        with contextlib.suppress(ServiceNotReadyError):  # markers never seen are reported
            wait_until(lambda: pollers[1].seen(len(markers)) is not None, 15, "last marker on /metrics",
                       interval=0.1)
    finally:
        for poller in pollers:
            poller.stop()
        api.stop()
        proc.terminate()
    warmup_until = (markers[0][1] if markers else 0.0) + config.warmup_s
    return {
        "rate_target_events_per_s": round(config.rate, 1),
        "rate_produced_events_per_s": round((sent + len(markers)) / produced_s, 1),
        "seconds": config.seconds, "partitions": config.partitions,
        "evaluate_interval_s": config.evaluate_interval_s,
        "marker_interval_s": config.marker_interval_s, "metrics_cache_s": CACHE_SECONDS,
        "snapshot": _summary(pollers[0], markers, warmup_until),
        "metrics_endpoint": _summary(pollers[1], markers, warmup_until),
        "worker_rss_mib": round(rss, 1),
        "parts": _parts(pollers[2], pollers[0], markers, marker_offsets, warmup_until),
    }


def _parts(applied: _Poller, snapshot: _Poller, markers: list[tuple[int, float]],
           offsets: dict[int, int], warmup_until: float) -> dict[str, Any]:
    """Where a snapshot's delay goes: produced -> applied in Redis by the
    worker (partition 0's applied offset passed the marker's) and applied ->
    in a stored snapshot (the evaluation's wait and run)."""
    to_applied, to_snapshot = [], []
    for k, produced in markers:
        if produced < warmup_until or k not in offsets:
            continue
        t = applied.seen(offsets[k])
        if t is None:
            continue
        to_applied.append(t - produced)
        seen = snapshot.seen(k)
        if seen is not None:
            to_snapshot.append(seen - t)
    return {name: {"markers": len(xs), "p50_s": _round(_percentile(xs, 50)), "p99_s": _round(_percentile(xs, 99)),
                   "max_s": _round(max(xs) if xs else None)}
            for name, xs in (("produced_to_applied", to_applied), ("applied_to_snapshot", to_snapshot))}
