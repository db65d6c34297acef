"""Streaming the simulation into Kafka: backfill weeks of history at full
speed, then produce live on a compressed clock (simulated time runs ``speed``
times faster than wall time), optionally switching scenario on the way."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from streamer.kafka.produce import new_producer, send_lines
from streamer.sim.models import DAY_MS, Schedule, simulate
from streamer.sim.scenarios import SCENARIOS, Drift

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamPlan:
    tree: str
    topic: str
    start_ms: int  # first simulated UTC midnight
    backfill_days: int
    scenario: str = "healthy"
    switch_to: str | None = None
    switch_after_days: float = 0.0  # simulated days after the backfill
    speed: float = 3600.0  # simulated seconds per wall second
    rate: float = 20_000.0  # at most this many events per wall second
    seed: int = 1
    days: int = 3650

    def schedule(self) -> Schedule:
        live = self.start_ms + self.backfill_days * DAY_MS
        plan: Schedule = [(self.start_ms, Drift()), (live - 7 * DAY_MS, SCENARIOS[self.scenario])]
        if self.switch_to is not None:
            plan.append((live + int(self.switch_after_days * DAY_MS), SCENARIOS[self.switch_to]))
        return plan

    @property
    def live_ms(self) -> int:
        return self.start_ms + self.backfill_days * DAY_MS


def events(plan: StreamPlan) -> Iterator[tuple[int, bytes]]:
    for event in simulate(plan.tree, plan.start_ms, plan.days, SCENARIOS[plan.scenario],
                          seed=plan.seed, schedule=plan.schedule()):
        yield int(event["time"]), orjson.dumps(event)


async def stream(plan: StreamPlan, client: dict[str, object], *, stop: Callable[[], bool] = lambda: False,
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Produce until ``stop()`` or the simulation ends; returns events sent.
    ``progress(sent, simulated_ms)`` is called after each send."""
    source = events(plan)
    backlog: list[bytes] = []
    pending: tuple[int, bytes] | None = None
    for t, line in source:
        if t >= plan.live_ms:
            pending = (t, line)
            break
        backlog.append(line)
    producer = new_producer(client)
    await producer.start()
    try:
        return await _live(plan, producer, source, backlog, pending, stop, progress)
    finally:
        await producer.stop()


async def _live(plan: StreamPlan, producer: object, source: Iterator[tuple[int, bytes]], backlog: list[bytes],
                pending: tuple[int, bytes] | None, stop: Callable[[], bool],
                progress: Callable[[int, int], None] | None) -> int:
    sent = await send_lines(producer, backlog, plan.topic) if backlog else 0
    logger.info("backfilled %d events", sent)
    if progress:
        progress(sent, plan.live_ms)
    wall0 = time.monotonic()
    budget_start, budget_sent = wall0, 0
    while pending is not None and not stop():
        sim_now = plan.live_ms + int((time.monotonic() - wall0) * plan.speed * 1000)
        batch: list[bytes] = []
        while pending is not None and pending[0] <= sim_now and len(batch) < max(1, int(plan.rate / 10)):
            batch.append(pending[1])
            pending = next(source, None)
        if batch:
            sent += await send_lines(producer, batch, plan.topic)
            budget_sent += len(batch)
            if progress:
                progress(sent, sim_now)
        # pace: never exceed the rate, and wait for simulated time to catch up
        ahead = budget_sent / plan.rate - (time.monotonic() - budget_start)
        await asyncio.sleep(max(0.1, ahead))
        if time.monotonic() - budget_start > 10:
            budget_start, budget_sent = time.monotonic(), 0
    return sent
