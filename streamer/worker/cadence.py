"""When the evaluator runs: a fixed rate, not a fixed pause.

faust's timers sleep the interval *after* each run (drift correction caps at
0.1 s), so a tick of 150-250 ms under load stretched a 0.5 s interval to
0.65-0.75 s and every snapshot aged by that much more. Here tick ``k`` is
due at ``start + k * interval``; one that overruns its slot starts the next
at once and drops the slots it missed, so a slow Redis never queues a burst
of evaluations."""

from __future__ import annotations


def next_due(due: float, now: float, interval: float) -> float:
    """When the tick after the one due at ``due`` starts, that one having ended at ``now``."""
    following = due + interval
    return following if following >= now else now
