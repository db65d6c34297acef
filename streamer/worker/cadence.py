"""When the evaluator runs: a fixed rate, not a fixed pause.

faust's timers sleep the interval *after* each run (drift correction caps at
0.1 s), so a tick of 150-250 ms under load stretched a 0.5 s interval to
0.65-0.75 s and every snapshot aged by that much more. Here tick ``k`` is
due at ``start + k * interval`` (``run_cadence``). One that overruns its slot (a slow Redis)
is followed after a short pause, ``MIN_GAP`` of the interval, and the slots
it missed are dropped: never a burst of evaluations, nor evaluations back to
back on a Redis that is already slow. A tick that raises is logged and the
cadence goes on: the next slot evaluates again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

MIN_GAP = 0.1
"""The least pause between a tick's end and the next tick, as a fraction of the interval."""


def next_due(due: float, now: float, interval: float) -> float:
    """When the tick after the one due at ``due`` starts, that one having ended at ``now``."""
    return max(due + interval, now + MIN_GAP * interval)


async def run_cadence(
    interval: float,
    is_leader: Callable[[], bool],
    tick: Callable[[], Awaitable[None]],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Until cancelled: ``tick()`` on every due slot while ``is_leader()``; the
    first slot is one interval after the start."""
    due = clock() + interval
    while True:
        await sleep(max(0.0, due - clock()))
        if is_leader():
            try:
                await tick()
            except Exception:  # a failed tick must not end the evaluation for good
                logger.exception("evaluation tick failed; the next one runs at its time")
        due = next_due(due, clock(), interval)
