"""How lateness / duplicate verdicts treat a record read a second time.

On the live verdict state a re-read record may get another verdict than it
got (an old record is now late; a duplicate whose insert id was since
re-recorded by a later event is now accepted), and re-reading an accepted
record rewrites its insert id, so that a later live duplicate slips through.
The backfill therefore re-derives verdicts in a scratch copy rebuilt from
the partition's first record: there every record gets the verdict it got."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
import redis

from streamer.backfill import batched, file_records, scratch_namespace
from streamer.engine import Backfill, BatchApplier
from streamer.events.types import Event
from streamer.spec.horizon import lateness_horizon
from streamer.state.store import Store, verdict_events
from tests.eventlog import LogKnobs, generate
from tests.trees import example

pytestmark = pytest.mark.services

DAY = 86_400_000
T0 = 20_000 * DAY
PART = "p0"


class RecordingStore(Store):
    """A Store that keeps every verdict it hands out: offset -> verdict."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verdicts: dict[int, str] = {}

    def first_round_trip(
        self,
        requests: Sequence[tuple[str, int, int, list[Any]]],
        partition: str,
        units: Sequence[Any],
        scripts: Sequence[tuple[str, str, Sequence[Any]]] = (),
        field: str | None = None,
    ) -> tuple[list[tuple[str, int | None, int | None]], list[int], list[Any]]:
        verdicts, offsets, replies = super().first_round_trip(requests, partition, units, scripts, field)
        for (_, _, _, events), (text, *_) in zip(requests, verdicts, strict=True):
            for offset, v in zip(events[2::3], text, strict=True):  # flat: id, t, offset
                self.verdicts[offset] = v
        return verdicts, offsets, replies


def event(insert_id: str | None, t: int) -> bytes:
    body: dict[str, Any] = {"event_type": "lesson_completed", "user_id": "u1", "time": t,
                            "event_properties": {"minutes": 3}}
    if insert_id:
        body["insert_id"] = insert_id
    return orjson.dumps(body)


def reread(store: Store, tree: Any, records: list[tuple[int, bytes]], now_ms: int = T0 + 90 * DAY) -> str:
    """Verdicts of ``records`` computed again on ``store``'s verdict state."""
    state = BatchApplier(store, [tree]).trees[0]
    decoded = [(off, state.decoder.decode(raw, now_ms)) for off, raw in records]
    events = verdict_events([ev.insert_id or "", ev.time_ms, off] for off, ev in decoded if isinstance(ev, Event))
    request = (tree.tree, state.plan.horizon_ms, state.plan.dedupe_ms, events)
    verdicts, _ = store.verdicts_and_offsets([request], PART, [])
    return verdicts[0][0]


def test_reread_on_live_verdict_state_misjudges_and_corrupts(redis_client: redis.Redis) -> None:
    tree = example("education")
    d = tree.dedupe_horizon * 1000
    h = lateness_horizon(tree) * 1000
    x, y, z = event("I", T0), event("I", T0 + d // 2), event("I", T0 + 2 * d + 1)
    records = [(0, x), (1, y), (2, z)]
    live = RecordingStore(redis_client, namespace="live")
    applier = BatchApplier(live, [tree])
    for record in records:
        applier.apply(PART, [record], T0 + 90 * DAY)
    assert "".join(live.verdicts[o] for o in range(3)) == "ada"
    # a re-read among the partition's recent verdicts gets the verdict it got
    # and writes nothing (a batch retried after a fault, re-read after a crash)
    ids = live.keys.insert_ids(tree.tree)
    assert reread(live, tree, [(1, y)]) == "d"
    assert reread(live, tree, [(0, x), (1, y), (2, z)]) == "ada"
    assert redis_client.hget(ids, "I") == f"{T0 + 2 * d + 1}|{PART}:2".encode()
    # older records than those (a backfill reads from the partition's start)
    # are judged again on the live state: forget the recent verdicts to see how
    redis_client.delete(live.keys.verdict_log(tree.tree, PART))

    # re-read on live state: the duplicate y is now accepted (z re-recorded the id)...
    assert redis_client.hget(ids, "I") == f"{T0 + 2 * d + 1}|{PART}:2".encode()
    assert reread(live, tree, [(1, y)]) == "a"
    # ...and that rewrote the id to y's time: a live duplicate of z now slips through
    assert redis_client.hget(ids, "I") == f"{T0 + d // 2}|{PART}:1".encode()
    counts = applier.apply(PART, [(3, event("I", T0 + 2 * d + 2))], T0 + 90 * DAY).counts
    assert counts["accepted:education"] == 1, "expected the corruption this test documents"

    # a record older than watermark - horizon is judged late when read again
    fresh = RecordingStore(redis_client, namespace="late")
    fresh_applier = BatchApplier(fresh, [tree])
    fresh_applier.apply(PART, [(0, event(None, T0)), (1, event(None, T0 + h + DAY))], T0 + 90 * DAY)
    assert fresh.verdicts[0] == "a"
    assert reread(fresh, tree, [(0, event(None, T0))]) == "a"  # recent: as judged
    redis_client.delete(fresh.keys.verdict_log(tree.tree, PART))
    assert reread(fresh, tree, [(0, event(None, T0))]) == "l"


@pytest.mark.parametrize("seed", [3, 4])
def test_backfill_verdicts_equal_live_verdicts(redis_client: redis.Redis, seed: int) -> None:
    """A generated log with late, duplicate and out-of-order events: the scratch
    verdicts of a backfill equal, record by record, those the live run gave."""
    tree = example("education")
    log = generate(tree, seed, LogKnobs(n_events=400, p_late=0.08, p_duplicate=0.15, p_no_insert_id=0.05))
    records = list(file_records(log.lines))
    live = RecordingStore(redis_client, namespace="live")
    applier = BatchApplier(live, [tree])
    for batch in batched(records, 23):
        applier.apply(PART, batch, log.now_ms)
    assert {"a", "l", "d"} <= set(live.verdicts.values())

    # the backfill's own Store and applier, recording: scratch verdicts, units untouched
    scratch = RecordingStore(redis_client, "live", verdict_namespace=scratch_namespace("live"))
    backfiller = BatchApplier(scratch, [tree])
    ids = redis_client.hgetall(live.keys.insert_ids(tree.tree))
    for batch in batched(records, 57):  # other batch boundaries than the live run
        backfiller.apply(PART, batch, log.now_ms, Backfill({}))
    assert scratch.verdicts == live.verdicts
    assert redis_client.hgetall(live.keys.insert_ids(tree.tree)) == ids, "live insert ids touched"

    # on the live state instead, some records get another verdict
    original = "".join(live.verdicts[o] for o, _ in records if o in live.verdicts)
    rejudged = reread(Store(redis_client, namespace="live"), tree, records, log.now_ms)
    assert len(rejudged) == len(original) and rejudged != original

