"""Garbage-collector settings for the event path.

Every event decodes into a few dicts and an Event, tens of thousands per
batch, all container objects the cyclic collector tracks: with Python's
default thresholds (700, 10, 10) it runs a young collection every 700 of
them and keeps re-scanning the worker's long-lived start-up objects in the
older generations. Measured in the pipeline (docs/performance.md) that is a
third of the decode time. The event path makes no reference cycles of its
own; reference counting frees a batch when it is done.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations of tracked objects between young collections (default 700)."""


def tune_gc(young: int = YOUNG_THRESHOLD) -> None:
    """Move every object alive now (imports, settings, compiled definitions) to
    the permanent generation, and collect the young generation every ``young``
    allocations instead of 700. Older generations keep their ratios."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young, older, oldest)
