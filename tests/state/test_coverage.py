"""Entity and retention units kept as bucket sets (state layout 2): exact for
buckets at any distance from an entity's newest one, at daily and hourly
resolution, against the brute-force reference and hand-computed values."""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis

from streamer.replay import replay
from streamer.spec.model import Tree
from streamer.windows.units import DiffCount, compile_tree, entity_mode
from tests.reference import Reference, ingest
from tests.test_reference import D0, DAY, HOUR, amp, make_tree

pytestmark = pytest.mark.services

NOW = D0 + 200 * DAY


def _tree(resolution: str, lateness: str) -> Tree:
    measures: dict[str, dict[str, Any]] = {
        "active": {"kind": "distinct", "event": "a", "entity": "user"},  # reads the retention's unit
        # the same users through an entity unit of its own (other filter, same events here)
        "active_own": {"kind": "distinct", "event": ["a", "b"], "entity": "user"},
        # at 1d: the retention unit's entity-days ("d"); at 1h: an entity unit
        "days": {"kind": "distinct", "event": "a", "entity": "user", "per_day": True},
        # the same pairs through an entity unit of its own ("day" mode at 1d)
        "days_own": {"kind": "distinct", "event": ["a", "b"], "entity": "user", "per_day": True},
        "retained": {"kind": "retention", "event": "a", "entity": "user"},
        "twice": {"kind": "entities", "event": "a", "entity": "user", "min_events": 2},
        "per_user": {"kind": "per_entity_average", "event": "a", "entity": "user"},
    }
    return make_tree(measures, resolution=resolution, lateness=lateness)


def _modes(tree: Tree) -> set[str]:
    plan = compile_tree(tree)
    return {entity_mode(u, plan.resolution_ms) for u in plan.units if u.kind == "entity"}


def test_each_entity_mode_is_exercised() -> None:
    """The trees below really run the three entity paths (else they prove nothing)."""
    assert _modes(_tree("1d", "120d")) == {"day", "cover", "counts"}
    assert _modes(_tree("1h", "120d")) == {"cover", "counts"}  # a day spans 24 buckets
    daily = compile_tree(_tree("1d", "120d"))
    days, own = daily.readers["days"], daily.readers["days_own"]
    assert isinstance(days, DiffCount) and (days.unit.kind, days.array) == ("retention", "d")
    assert isinstance(own, DiffCount) and entity_mode(own.unit, daily.resolution_ms) == "day"


def _shuffled_log(seed: int, span_days: int, n: int) -> list[bytes]:
    """Few users, many buckets each, arriving in random order: buckets land far
    behind (and ahead of) each user's newest, across 32-bucket words."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        t = D0 + rng.randrange(span_days * DAY)
        lines.append(amp("a", f"u{rng.randrange(4)}", t))
    return lines


@pytest.mark.parametrize(("resolution", "seed"), [("1d", 1), ("1d", 2), ("1h", 3), ("1h", 4)])
def test_buckets_far_behind_the_newest_equal_the_reference(
    redis_client: redis.Redis, resolution: str, seed: int
) -> None:
    tree = _tree(resolution, "120d")
    lines = _shuffled_log(seed, span_days=90, n=400)
    accepted = ingest(lines, tree, NOW).accepted
    assert len(accepted) == len(lines)  # nothing late: every far-behind bucket is applied
    reference = Reference(tree, accepted)
    times = [D0 + d * DAY for d in range(0, 100, 3)] + [D0 + 40 * DAY + 5 * HOUR + 1]
    for batch_size in (1, 37, 1000):
        got = _evaluate_all(redis_client, tree, lines, times, batch_size)
        for at, values in zip(times, got, strict=True):
            want = reference.values(at)
            assert values == pytest.approx(want), f"batch {batch_size} at day {(at - D0) / DAY}"
    assert any(v for at in times for v in reference.values(at).values())


def _evaluate_all(
    client: redis.Redis, tree: Tree, lines: list[bytes], times: list[int], batch_size: int
) -> list[dict[str, float | None]]:
    client.flushall()
    results = replay(lines, [tree], client, at_ms=times, now_ms=NOW, batch_size=batch_size)
    by_time = {r.at_ms: r.metrics for r in results}
    return [by_time[t] for t in times]


def test_a_bucket_40_days_behind_the_newest_by_hand(redis_client: redis.Redis) -> None:
    """Daily resolution, 7-day windows. User u arrives on day 60 first, then on
    days 20 (40 behind: beyond any 32-bucket mask of the newest), 24 and 17."""
    tree = _tree("1d", "120d")
    lines = [amp("a", "u", D0 + d * DAY + HOUR) for d in (60, 20, 24, 17)]
    expected = {
        # E: window [E-7, E) holds ...
        18: {"active": 1, "days": 1, "retained": None},  # 17; previous [4, 11) empty
        21: {"active": 1, "days": 2, "retained": None},  # 17, 20
        28: {"active": 1, "days": 1, "retained": 1.0},  # 24; previous [14, 21): 17, 20
        32: {"active": 0, "days": 0, "retained": 0.0},  # nothing; previous [18, 25): 20, 24
        61: {"active": 1, "days": 1, "retained": None},  # 60; previous [47, 54) empty
        68: {"active": 0, "days": 0, "retained": 0.0},
    }
    for batch_size in (1, 4):
        got = _evaluate_all(redis_client, tree, lines, [D0 + d * DAY for d in expected], batch_size)
        for (day, want), values in zip(expected.items(), got, strict=True):
            assert {k: values[k] for k in want} == want, f"batch {batch_size}, E = day {day}"
            assert values["days_own"] == values["days"]  # entity unit and retention's "d" agree
