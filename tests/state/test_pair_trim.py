"""The pair unit (percentile, conversion) forgets end times that no start can
claim any more: an entity without a start keeps only its end times later
than the lowest partition watermark minus the lateness horizon, so what it
keeps stops growing; values stay equal to the brute-force reference."""

from __future__ import annotations

import math

import orjson
import pytest
import redis

from streamer.engine import BatchApplier
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.windows.units import compile_tree
from tests.reference import Reference, ingest
from tests.state.test_pair_claims import claimable
from tests.trees import example

pytestmark = pytest.mark.services

DAY = 86_400_000
T0 = 20_000 * DAY
METRIC = "time_to_first_lesson_p50_seconds"


def _event(name: str, user: str, t: int, insert_id: str) -> bytes:
    return orjson.dumps({"event_type": name, "user_id": user, "time": t, "insert_id": insert_id,
                         "event_properties": {"minutes": 5}})


def test_ends_without_a_start_are_forgotten_past_the_horizon(redis_client: redis.Redis) -> None:
    tree = example("education")
    plan = compile_tree(tree)
    unit = plan.readers[METRIC].unit  # type: ignore[union-attr]
    horizon_days = plan.horizon_ms // DAY
    days = horizon_days + 30
    lines: list[bytes] = []
    for d in range(days):
        # "heavy" completes lessons every day and never signs up; "fresh" users
        # sign up and complete a lesson each day (their pairs make the metric)
        lines.append(_event("lesson_completed", "heavy", T0 + d * DAY + 3_600_000, f"h{d}"))
        lines.append(_event("signed_up", f"fresh{d}", T0 + d * DAY, f"s{d}"))
        lines.append(_event("lesson_completed", f"fresh{d}", T0 + d * DAY + (d % 5 + 1) * 600_000, f"f{d}"))
    # a late sign-up of "heavy", inside the horizon: it claims an end it must still have
    late_start = T0 + (days - 3) * DAY
    lines.append(_event("signed_up", "heavy", late_start, "late"))
    now = T0 + (days + 1) * DAY
    store = Store(redis_client, namespace="trim")
    applier = BatchApplier(store, [tree])
    for start in range(0, len(lines), 9):  # three days per batch: the watermark moves
        applier.apply("0", list(enumerate(lines))[start : start + 9], now)

    record = redis_client.hget(store.keys.unit(unit, "p"), "heavy")
    assert record is not None
    start_text, after_text, _ = record.decode().split(";")
    assert int(start_text) == late_start
    after = [int(x) for x in after_text.split(",") if x]
    assert after and all(t > late_start for t in after), "the end the late start claims was forgotten"
    ends = claimable(redis_client, store.keys.unit(unit, "p"), store.keys.unit(unit, "pz"), "heavy")
    assert ends and all(t <= late_start for t in ends), "claimable ends must be <= the start"
    lowest = int(redis_client.hget(store.keys.watermark(tree.tree), "0"))
    # the ends still kept: later than the floor of the batch that last touched
    # "heavy", or the first one after its start; never the whole history
    assert len(ends) + len(after) < days // 2, f"{len(ends) + len(after)} end times kept of {days}"
    assert min(ends) > lowest - plan.horizon_ms - 9 * DAY

    reference = Reference(tree, ingest(lines, tree, now).accepted)
    at = [T0 + d * DAY for d in range(days - 10, days + 1)]
    got = evaluate(store, plan, at)
    metric = next(m for _, m in tree.metrics() if m.name == METRIC)
    for t, values in zip(at, got, strict=True):
        want, have = reference.metric_value(metric, t), values[METRIC]
        assert (want is None and have is None) or (
            want is not None and have is not None and math.isclose(want, have, rel_tol=1e-9)
        ), f"@{t}: expected {want}, got {have}"
