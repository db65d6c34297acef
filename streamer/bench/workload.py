"""The benchmark's events: simulated education traffic on a Kafka topic
(and, for ``streamer.bench.compare --tree learning_users``, the other model's).

Every system in the benchmark reads the same records: ``N`` events of the
education model (``streamer.sim``), keyed by user and partitioned by CRC32 of
the key (``streamer.kafka.produce``), then one ``bench_end`` event per
partition, a day after the evaluation time, that no metric reads (it lets a
peer that closes windows by stream time close the last day's windows).
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from streamer.sim.models import simulate
from streamer.sim.scenarios import Drift

DAY_MS = 86_400_000
START_MS = 1_709_510_400_000  # 2024-03-04 00:00 UTC: far enough in the past for any clock
SIM_DAYS = 28
EVENTS_PER_USER = 15  # the education model yields ~19 per initial user over 28 days
MODEL_EVENTS_PER_USER = {"education": EVENTS_PER_USER, "learning_users": 8}
"""Events to expect per simulated user over ``SIM_DAYS`` (a little under
what each model yields, so that the simulation reaches the events asked)."""


@dataclass(frozen=True)
class Workload:
    """Records (values, in topic order per partition) and where to evaluate them."""

    lines: list[bytes]
    at_ms: int
    """Evaluation time: the UTC midnight after the last simulated event."""
    partitions: int
    events: int
    """Simulated events (``len(lines)`` minus one sentinel per partition)."""

    def partition_counts(self) -> dict[int, int]:
        """Records per partition, as ``streamer.kafka.produce`` partitions them."""
        counts: dict[int, int] = {}
        for line in self.lines:
            p = partition_of(line, self.partitions)
            counts[p] = counts.get(p, 0) + 1
        return counts

    def end_offsets(self) -> dict[int, int]:
        """Offset of each partition's last record on a fresh topic (offsets start at 0)."""
        return {p: n - 1 for p, n in self.partition_counts().items()}


def partition_of(line: bytes, partitions: int) -> int:
    key = orjson.loads(line)["user_id"].encode()
    return zlib.crc32(key) % partitions


def sentinel_key(partition: int, partitions: int) -> str:
    """A user id that ``streamer.kafka.produce`` sends to ``partition``."""
    for i in itertools.count():
        key = f"bench-end-{partition}-{i}"
        if zlib.crc32(key.encode()) % partitions == partition:
            return key
    raise AssertionError("unreachable")


def education_workload(events: int, partitions: int = 1, seed: int = 5) -> Workload:
    """``events`` simulated education events plus one sentinel per partition."""
    return simulated_workload("education", events, partitions, seed)


def simulated_workload(model: str, events: int, partitions: int = 1, seed: int = 5) -> Workload:
    """``events`` events of a simulated model (``MODEL_EVENTS_PER_USER``) plus
    one sentinel per partition."""
    if events < 1 or partitions < 1:
        raise ValueError("a workload needs at least one event and one partition")
    if model not in MODEL_EVENTS_PER_USER:
        raise ValueError(f"no simulated model {model!r}: one of {', '.join(MODEL_EVENTS_PER_USER)}")
    users = max(20, math.ceil(events / MODEL_EVENTS_PER_USER[model]))
    sim = simulate(model, START_MS, SIM_DAYS, Drift(), seed=seed, users=users)
    lines = [orjson.dumps(e) for e in itertools.islice(sim, events)]
    last: int = orjson.loads(lines[-1])["time"]
    at_ms = (last // DAY_MS + 1) * DAY_MS
    for p in range(partitions):
        end: dict[str, Any] = {"event_type": "bench_end", "user_id": sentinel_key(p, partitions),
                               "time": at_ms + DAY_MS, "insert_id": f"bench-end-{p}"}
        lines.append(orjson.dumps(end))
    return Workload(lines, at_ms, partitions, len(lines) - partitions)


def fill_topic(bootstrap: str, topic: str, workload: Workload) -> float:
    """Create ``topic`` with the workload's partitions and produce every record;
    returns the seconds producing took."""
    import time

    from streamer.kafka.produce import produce_sync
    from streamer.testing import create_topic

    create_topic(bootstrap, topic, workload.partitions)
    started = time.perf_counter()
    sent = produce_sync(workload.lines, topic, {"bootstrap_servers": bootstrap})
    if sent != len(workload.lines):
        raise RuntimeError(f"produced {sent} of {len(workload.lines)} records to {topic}")
    return time.perf_counter() - started
