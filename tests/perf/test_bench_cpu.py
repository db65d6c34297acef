"""CPU per event from two samples (pure), and reading a process's CPU time."""

from __future__ import annotations

import os
import time

import pytest

from streamer.bench.cpu import Sample, cpu_seconds, per_event


def test_cpu_per_event_of_each_process_and_cores_busy() -> None:
    before = Sample(at=10.0, client=1.0, redis=2.0, broker=0.5)
    after = Sample(at=12.0, client=2.5, redis=3.0, broker=0.6)
    cpu = per_event(before, after, 100_000)
    assert cpu == {"client_us_per_event": 15.0, "redis_us_per_event": 10.0, "broker_us_per_event": 1.0,
                   "total_us_per_event": 26.0, "cores_busy": 1.3}


def test_an_external_broker_counts_as_unknown_not_zero() -> None:
    cpu = per_event(Sample(0.0, 0.0, 0.0, None), Sample(1.0, 1.0, 1.0, None), 1_000_000)
    assert cpu["broker_us_per_event"] is None
    assert cpu["total_us_per_event"] == 2.0


def test_per_event_refuses_an_empty_run() -> None:
    with pytest.raises(ValueError):
        per_event(Sample(0.0, 0.0, 0.0, None), Sample(0.0, 1.0, 1.0, None), 10)
    with pytest.raises(ValueError):
        per_event(Sample(0.0, 0.0, 0.0, None), Sample(1.0, 1.0, 1.0, None), 0)


def test_cpu_seconds_of_a_live_process_grows_and_of_none_is_zero() -> None:
    start = cpu_seconds(os.getpid())
    deadline = time.monotonic() + 5.0  # wall clock: a broken reader cannot loop for ever
    while cpu_seconds(os.getpid()) < start + 0.05 and time.monotonic() < deadline:
        sum(range(10_000))  # burn CPU until the kernel's counter moves
    assert cpu_seconds(os.getpid()) >= start + 0.05
    assert cpu_seconds(None) == 0.0
