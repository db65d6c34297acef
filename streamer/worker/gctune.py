"""Interpreter settings for the event path: the garbage collector and the
thread switch interval.

Every event decodes into a few dicts and an Event, tens of thousands per
batch, all container objects the cyclic collector tracks: with Python's
default thresholds (700, 10, 10) it runs a young collection every 700 of
them and keeps re-scanning the worker's long-lived start-up objects in the
older generations. Measured in the pipeline (docs/performance.md) that is a
third of the decode time. The event path makes no reference cycles of its
own; reference counting frees a batch when it is done.

The batch pipeline runs a partition's *prepare* (Python) in one thread while
another waits on Redis; when Redis answers, that thread needs the GIL, and
the running one gives it up only every switch interval (5 ms by default).
"""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL_S = 0.001
"""The worker's default thread switch interval (Python's is 0.005)."""
YOUNG_THRESHOLD = 1_000_000
"""Allocations of tracked objects between young collections (default 700).
A pipelined worker keeps several batches alive (~10^5 tracked objects each)
while it allocates ~16 tracked objects per event: at 50,000 each young
collection re-scanned the batches in flight, ~0.9 s of a 1M-event run
(15-19% of the worker's CPU); at 1,000,000, ~0.1 s (docs/performance.md,
proposal 30). The event path makes no cycles, so the garbage a young
collection finds is small either way."""


def tune_gc(young: int = YOUNG_THRESHOLD) -> None:
    """Move every object alive now (imports, settings, compiled definitions) to
    the permanent generation, and collect the young generation every ``young``
    allocations instead of 700. Older generations keep their ratios."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young, older, oldest)


def tune_switch_interval(seconds: float = SWITCH_INTERVAL_S) -> None:
    """Let a thread that waits for the GIL (one back from a Redis round trip)
    have it within ``seconds`` of asking."""
    sys.setswitchinterval(seconds)
