"""The evaluation's cadence: ticks due at a fixed rate (not a fixed pause
after each), a tick that overruns is followed after a short pause without
a burst of missed ones, only the leader evaluates (a worker whose faust
consumer is not started yet is not the leader), and a stop waits for the
tick in progress before the producer closes."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from faust.exceptions import ConsumerNotStarted

from streamer.worker.app import leader_check
from streamer.worker.cadence import next_due, run_cadence
from streamer.worker.evaluation import EvaluationService
from streamer.worker.settings import KafkaSettings, WorkerSettings


@pytest.mark.parametrize(
    ("due", "now", "expected"),
    [
        (10.0, 10.2, 10.5),  # ended inside its slot: the next slot
        (10.0, 10.45, 10.5),  # ended a pause before the next slot
        (10.0, 10.5, 10.55),  # ended on the next slot: after the pause (a tenth of the interval)
        (10.0, 10.7, 10.75),  # overran: after the pause
        (10.0, 12.3, 12.35),  # overran several slots: once, not one per missed slot
    ],
)
def test_next_due(due: float, now: float, expected: float) -> None:
    assert next_due(due, now, 0.5) == pytest.approx(expected)


class _Ticking(EvaluationService):
    """No Redis or Kafka: ``tick`` records when it starts and takes ``busy_s``."""

    def __init__(self, interval: float, busy_s: float, leader: threading.Event) -> None:
        super().__init__(WorkerSettings(evaluate_interval_s=interval), KafkaSettings(), [],
                         is_leader=leader.is_set, loop=None)
        self.busy_s = busy_s
        self.starts: list[float] = []

    async def on_start(self) -> None:
        pass

    async def tick(self) -> None:
        self.starts.append(time.monotonic())
        await asyncio.sleep(self.busy_s)


async def _run(service: _Ticking, until: Any, deadline_s: float = 20.0) -> None:
    await service.start()
    try:
        end = time.monotonic() + deadline_s
        while not until() and time.monotonic() < end:
            await asyncio.sleep(0.01)
    finally:
        await service.stop()


class _Enough(BaseException):
    """Ends a cadence once the test has seen what it needs (not an
    ``Exception``: the cadence logs those and goes on)."""


class _FakeTime:
    """A clock that only moves when the cadence sleeps or a tick works: the
    schedule is checked exactly, whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 100.0
        self.starts: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)

    def ticking(self, busy_s: float, ticks: int) -> Any:
        async def tick() -> None:
            self.starts.append(self.now)
            self.now += busy_s
            if len(self.starts) >= ticks:
                raise _Enough

        return tick


def _cadence(interval: float, busy_s: float, ticks: int, is_leader: Any = lambda: True) -> list[float]:
    fake = _FakeTime()
    with pytest.raises(_Enough):
        asyncio.run(run_cadence(interval, is_leader, fake.ticking(busy_s, ticks), fake.clock, fake.sleep))
    return fake.starts


def test_ticks_start_at_a_fixed_rate_however_long_they_take() -> None:
    """Ticks taking 2/3 of the interval: a pause after each would space them
    by 0.5 s; the fixed rate spaces them by the interval, 0.3 s."""
    starts = _cadence(interval=0.3, busy_s=0.2, ticks=6)
    assert starts == pytest.approx([100.3 + 0.3 * k for k in range(6)])


def test_a_tick_longer_than_the_interval_is_followed_after_a_pause_not_by_a_burst() -> None:
    """Ticks of 0.35 s at an interval of 0.1 s: each starts a pause (a tenth
    of the interval) after the previous ended, none for the slots it missed."""
    starts = _cadence(interval=0.1, busy_s=0.35, ticks=4)
    assert starts == pytest.approx([100.1 + 0.36 * k for k in range(4)])


def test_a_tick_that_raises_does_not_end_the_cadence(caplog: pytest.LogCaptureFixture) -> None:
    """The first tick fails (say the producer's send): it is logged, and the
    next ticks run on their slots."""
    fake = _FakeTime()
    ticking = fake.ticking(busy_s=0.0, ticks=3)

    async def tick() -> None:
        await ticking()
        if len(fake.starts) == 1:
            raise RuntimeError("send failed")

    with pytest.raises(_Enough):
        asyncio.run(run_cadence(0.5, lambda: True, tick, fake.clock, fake.sleep))
    assert fake.starts == pytest.approx([100.5, 101.0, 101.5])
    assert "evaluation tick failed" in caplog.text


def test_only_the_leader_evaluates() -> None:
    """Ten slots as a follower, then the leader: the first tick is on the eleventh slot."""
    answers = iter([False] * 10)
    starts = _cadence(interval=0.05, busy_s=0.0, ticks=3, is_leader=lambda: next(answers, True))
    assert starts == pytest.approx([100.0 + 0.05 * k for k in (11, 12, 13)])


def test_the_service_runs_its_cadence_only_with_a_leader_check() -> None:
    leader = threading.Event()
    leader.set()
    service = _Ticking(interval=0.05, busy_s=0.0, leader=leader)
    asyncio.run(_run(service, lambda: len(service.starts) >= 2))
    assert len(service.starts) >= 2
    without = _Ticking(interval=0.05, busy_s=0.0, leader=leader)
    without.is_leader = None
    asyncio.run(_run(without, lambda: False, deadline_s=0.3))  # no cadence: the caller ticks
    assert without.starts == []


def test_a_worker_whose_faust_consumer_is_not_started_is_not_the_leader() -> None:
    class App:
        started = False

        def is_leader(self) -> bool:
            if not self.started:
                raise ConsumerNotStarted("not started")
            return True

    app = App()
    leading = leader_check(app)
    assert leading() is False
    app.started = True
    assert leading() is True


def test_a_stop_ends_the_tick_in_progress_before_the_producer_closes() -> None:
    leader = threading.Event()
    leader.set()
    order: list[str] = []

    class Producer:
        async def stop(self) -> None:
            order.append("producer stopped")

    class Slow(_Ticking):
        async def tick(self) -> None:
            self.starts.append(time.monotonic())
            try:
                await asyncio.sleep(30)
            finally:
                order.append("tick ended")

    service = Slow(interval=0.05, busy_s=0.0, leader=leader)
    service.producer = Producer()
    asyncio.run(_run(service, lambda: len(service.starts) >= 1))
    assert service.starts and order == ["tick ended", "producer stopped"]
