"""The event path's garbage-collector settings (streamer/worker/gctune.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streamer.worker.gctune import YOUNG_THRESHOLD, tune_gc
from streamer.worker.settings import WorkerSettings


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_freezes_start_up_objects_and_raises_the_young_threshold(restore_gc: None) -> None:
    before = gc.get_threshold()
    alive = object()
    tune_gc()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
    assert gc.get_freeze_count() > 0
    assert alive is not None


def test_gc_tuning_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().gc_tuning is True
    monkeypatch.setenv("NORTHSTAR_GC_TUNING", "false")
    assert WorkerSettings().gc_tuning is False
