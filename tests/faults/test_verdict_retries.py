"""A batch judged again after a fault between or after its Redis round trips
gets the verdicts it got (docs/worker.md, "Exactly once"): verdict.lua keeps
each partition's recent verdicts by offset. Both gaps were found by
tests/faults/test_redis_faults.py, whose counters showed the shift."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from streamer.engine import BatchApplier
from streamer.spec.horizon import lateness_horizon
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.testing.worker import load_tree, value_differences
from streamer.windows.units import compile_tree
from tests.reference import ingest

pytestmark = pytest.mark.services

DEFINITIONS = Path(__file__).resolve().parents[2] / "definitions"


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client, namespace="retry")


def test_reapplied_batch_keeps_its_verdicts(store: Store) -> None:
    """What a lost reply does: the same batch applied twice (the second time
    after its first apply went through) must count the same verdicts."""
    tree = load_tree(DEFINITIONS / "education.yaml")
    day, base = 86_400_000, 1_717_000_000_000
    newest = (
        base + lateness_horizon(tree) * 1000 + 2 * day
    )  # more than the horizon after the oldest

    def event(i: int, t: int) -> bytes:
        return (
            f'{{"event_type": "lesson_completed", "user_id": "u{i}", "time": {t}, '
            f'"insert_id": "id{i}", "event_properties": {{"minutes": 5}}}}'
        ).encode()

    batch = [(0, event(0, base)), (1, event(1, newest))]
    applier = BatchApplier(store, [tree])
    first = applier.apply("t:0", batch, newest + day)
    assert first.counts["accepted:education"] == 2
    again = applier.apply("t:0", batch, newest + day)
    assert again.counts == first.counts


def test_batch_retried_between_round_trips_keeps_its_events(store: Store) -> None:
    """Three events with one insert id in one batch at T + 1.5 D, T and
    T + 1.2 D (D: the dedupe horizon): judged in order, all are accepted, as
    the reference says (each is more than D from the id's latest accepted
    event). Redis goes away after the batch's first round trip (verdicts,
    which record the insert ids) and before the second (the units' apply);
    the retry must still apply all three."""
    tree = load_tree(DEFINITIONS / "education.yaml")
    plan = compile_tree(tree)
    dedupe, t0 = tree.dedupe_horizon * 1000, 1_717_000_000_000

    def event(user: str, t: int) -> bytes:
        return (
            f'{{"event_type": "lesson_completed", "user_id": "{user}", "time": {t}, '
            f'"insert_id": "same-id", "event_properties": {{"minutes": 5}}}}'
        ).encode()

    batch = [
        (0, event("a", t0 + 3 * dedupe // 2)),
        (1, event("b", t0)),
        (2, event("c", t0 + 6 * dedupe // 5)),
    ]
    now, at = t0 + 2 * dedupe, [t0 + 2 * dedupe]
    assert ingest([line for _, line in batch], tree, now).counts["accepted"] == 3

    clean = Store(store.client, namespace="clean")
    BatchApplier(clean, [tree]).apply("t:0", batch, now)
    applier = BatchApplier(store, [tree])
    second_round_trip = store.apply

    def redis_goes_away(*args: object, **kwargs: object) -> list[bool]:
        store.apply = second_round_trip  # type: ignore[method-assign]
        raise redis.exceptions.ConnectionError("Redis went away between the round trips")

    store.apply = redis_goes_away  # type: ignore[method-assign]
    with pytest.raises(redis.exceptions.ConnectionError):
        applier.apply("t:0", batch, now)
    retried = applier.apply("t:0", batch, now)  # what the worker does next
    problems = value_differences(evaluate(clean, plan, at)[0], evaluate(store, plan, at)[0])
    assert not problems, problems
    assert retried.counts["accepted:education"] == 3
