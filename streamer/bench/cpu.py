"""CPU time per event of every process a benchmark run keeps busy: the
client (the bench process itself, or worker processes), Redis and the broker.

On a machine where all of them share a few cores, a rate is bounded by the
CPU its records cost: ``cores / (CPU seconds per event)`` is the most the
machine allows that code even if every core were busy all the time. The
bench reports it for the ceiling, the floor and northstar, next to the
budget a target leaves (``report.cpu_budget``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of ``pid`` so far (0 when it is gone or unknown)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def redis_cpu(client: Any) -> float:
    """Redis's own CPU time so far (user + system seconds, ``INFO cpu``)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass(frozen=True)
class Sample:
    at: float
    client: float
    redis: float
    broker: float | None


class Probe:
    """Reads the CPU time so far of the client processes (``pids``; None: this
    process), of the Redis behind ``redis`` (a sync client) and of the broker
    (``broker_pid``; None when the broker is external and its CPU unknown)."""

    def __init__(self, redis: Any, broker_pid: int | None, pids: Sequence[int | None] | None = None) -> None:
        self.redis, self.broker_pid, self.pids = redis, broker_pid, pids

    def sample(self) -> Sample:
        if self.pids is None:
            client = time.process_time()
        else:
            client = sum(cpu_seconds(pid) for pid in self.pids)
        broker = None if self.broker_pid is None else cpu_seconds(self.broker_pid)
        return Sample(time.monotonic(), client, redis_cpu(self.redis), broker)


def per_event(before: Sample, after: Sample, records: int) -> dict[str, float | None]:
    """Microseconds of CPU per record of each process between two samples,
    their total, and how many cores were busy on average."""
    if records <= 0 or after.at <= before.at:
        raise ValueError("need records and a positive interval between the samples")
    client, redis = after.client - before.client, after.redis - before.redis
    broker = None if after.broker is None or before.broker is None else after.broker - before.broker
    total = client + redis + (broker or 0.0)
    return {
        "client_us_per_event": round(client / records * 1e6, 2),
        "redis_us_per_event": round(redis / records * 1e6, 2),
        "broker_us_per_event": None if broker is None else round(broker / records * 1e6, 2),
        "total_us_per_event": round(total / records * 1e6, 2),
        "cores_busy": round(total / (after.at - before.at), 2),
    }
