"""The event path's garbage-collector settings (streamer/worker/gctune.py)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from streamer.worker.gctune import SWITCH_INTERVAL_S, YOUNG_THRESHOLD, tune_gc, tune_switch_interval
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


def test_switch_interval_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().switch_interval_s == SWITCH_INTERVAL_S
    monkeypatch.setenv("NORTHSTAR_SWITCH_INTERVAL_S", "0.005")
    assert WorkerSettings().switch_interval_s == 0.005
    for bad in ("0", "-1", "2"):
        monkeypatch.setenv("NORTHSTAR_SWITCH_INTERVAL_S", bad)
        with pytest.raises(ValidationError):
            WorkerSettings()


def test_tune_switch_interval() -> None:
    before = sys.getswitchinterval()
    try:
        tune_switch_interval(0.002)
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)
