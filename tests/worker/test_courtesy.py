"""Preparation defers to a commit's Python (streamer/courtesy.py), never for
longer than it allows, and a commit that fails leaves nothing waiting."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from streamer.courtesy import Courtesy
from streamer.engine import BatchApplier
from streamer.state.store import Store
from tests.state.test_engine import T0, _log, _values
from tests.trees import example

DAY = 86_400_000


def test_defer_goes_on_at_once_when_no_commit_runs() -> None:
    courtesy = Courtesy(max_wait_s=5)
    started = time.perf_counter()
    assert courtesy.defer() is True
    assert time.perf_counter() - started < 1  # far below the 5 s it would wait


def test_defer_waits_until_the_last_commit_leaves() -> None:
    courtesy = Courtesy(max_wait_s=30)
    courtesy.enter()
    courtesy.enter()  # two lanes
    went_on = threading.Event()
    waiter = threading.Thread(target=lambda: courtesy.defer() and went_on.set())
    waiter.start()
    courtesy.leave()
    assert not went_on.wait(0.2), "went on while a commit still ran its Python"
    courtesy.leave()
    assert went_on.wait(10), "still waiting after every commit left"
    waiter.join(10)
    assert courtesy.urgent == 0


def test_defer_never_waits_longer_than_allowed() -> None:
    courtesy = Courtesy(max_wait_s=0.05)
    courtesy.enter()  # and never leaves
    started = time.perf_counter()
    assert courtesy.defer() is False
    assert 0.04 <= time.perf_counter() - started < 5


def _applier(client: redis.Redis, namespace: str, courtesy: Courtesy | None) -> BatchApplier:
    applier = BatchApplier(Store(client, namespace=namespace), [example("education")])
    applier.courtesy = courtesy
    return applier


def test_the_state_does_not_depend_on_it(redis_client: redis.Redis) -> None:
    records = list(enumerate(_log(400, seed=11)))
    courtesy = Courtesy()
    plain = _applier(redis_client, "plain", None)
    kind = _applier(redis_client, "kind", courtesy)
    for start in range(0, len(records), 90):
        want = plain.apply("0", records[start : start + 90], T0 + 30 * DAY)
        got = kind.apply("0", records[start : start + 90], T0 + 30 * DAY)
        assert got.counts == want.counts
        assert courtesy.urgent == 0  # left after every commit
    assert _values(redis_client, kind) == _values(redis_client, plain)


class _FailingApply:
    def __init__(self, store: Store) -> None:
        self._store = store

    def apply(self, *args: Any, **kwargs: Any) -> list[bool]:
        raise redis.exceptions.ConnectionError("Redis went away")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _FailingRefresher:
    def due(self, *args: Any) -> list[Any]:
        raise RuntimeError("failed while the commit ran its Python")


def test_a_failed_commit_leaves(redis_client: redis.Redis) -> None:
    courtesy = Courtesy()
    applier = _applier(redis_client, "failing", courtesy)
    applier.refresher = _FailingRefresher()  # type: ignore[assignment]
    prepared = applier.prepare(list(enumerate(_log(50, seed=2))), T0 + 30 * DAY)
    with pytest.raises(RuntimeError, match="ran its Python"):
        applier.commit("0", prepared)
    assert courtesy.urgent == 0
    assert courtesy.defer() is True

    applier.refresher = None
    applier.store = _FailingApply(applier.store)  # type: ignore[assignment]
    with pytest.raises(redis.exceptions.ConnectionError):
        applier.commit("0", prepared)  # fails in the round trip, after leaving
    assert courtesy.urgent == 0


class _Counting(Courtesy):
    def __init__(self) -> None:
        super().__init__()
        self.defers = 0

    def defer(self) -> bool:
        self.defers += 1
        return super().defer()


def test_prepare_defers_between_chunks(redis_client: redis.Redis) -> None:
    from streamer.engine import PREPARE_CHUNK

    courtesy = _Counting()
    applier = _applier(redis_client, "chunks", courtesy)
    records = list(enumerate(_log(2 * PREPARE_CHUNK + 1, seed=5)))
    applier.prepare(records, T0 + 30 * DAY)
    assert courtesy.defers >= 3  # before each of the three chunks
