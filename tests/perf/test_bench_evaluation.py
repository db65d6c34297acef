"""The evaluation benchmark's helpers: emptying Redis in the background and
waiting for it, the fit that predicts a population not run, and populations
side by side, timed round-robin so that a slow spell of the machine falls on
all of them alike."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from streamer.bench.evaluation import empty, extrapolate, load_tree, measure, time_round_robin

pytestmark = pytest.mark.services


def test_empty_waits_until_everything_is_freed(redis_client: redis.Redis) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for i in range(200):
        pipe.hset(f"h{i}", mapping={str(j): "x" * 20 for j in range(200)})
    pipe.execute()
    assert redis_client.dbsize() == 200
    empty(redis_client)
    assert redis_client.dbsize() == 0
    assert int(redis_client.info("memory")["lazyfree_pending_objects"]) == 0


def test_extrapolate_fits_a_line_in_log_users() -> None:
    rows = [{"users": 10**k, "ms": 1.0 + 0.5 * k} for k in (4, 5, 6)]
    fit = extrapolate(rows, "ms", 10**7, scale="log")
    assert fit is not None and fit["slope"] == pytest.approx(0.5) and fit["predicted"] == pytest.approx(4.5)
    assert extrapolate(rows[:1], "ms", 10**7) is None
    with pytest.raises(ValueError):
        extrapolate(rows, "ms", 10**7, scale="cubic")


def test_samples_alternate_between_the_evaluators() -> None:
    calls: list[str] = []

    def evaluator(name: str) -> Any:
        def ev() -> dict[str, Any]:
            calls.append(name)
            return {"name": name, "call": len(calls)}

        return ev

    samples, values = time_round_robin([evaluator("a"), evaluator("b"), evaluator("c")], repeats=4)
    # one untimed call each, then sample k of every evaluator before sample k + 1 of any
    assert calls == ["a", "b", "c"] * 5
    assert [len(s) for s in samples] == [4, 4, 4]
    assert all(t >= 0 for s in samples for t in s)
    assert [v["name"] for v in values] == ["a", "b", "c"]
    assert [v["call"] for v in values] == [13, 14, 15]  # the last call's values


def test_a_slow_spell_falls_on_every_evaluator(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine that is slow for a stretch of calls: timed one after the
    other, one evaluator would take the whole stretch; round-robin shares it.
    The clock is fake: a call takes 1 unit, 100 during the spell."""
    import streamer.bench.evaluation as evaluation

    clock = {"now": 0.0, "calls": 0}
    monkeypatch.setattr(evaluation.time, "perf_counter", lambda: clock["now"])

    def ev() -> dict[str, Any]:
        clock["calls"] += 1
        clock["now"] += 100.0 if 10 <= clock["calls"] < 20 else 1.0
        return {}

    samples, _ = time_round_robin([ev, ev], repeats=10)
    assert [sum(1 for t in s if t == 100.0) for s in samples] == [5, 5]


def test_populations_are_filled_side_by_side(redis_client: redis.Redis) -> None:
    seen: list[tuple[int, str]] = []
    rows = measure(redis_client, load_tree("education"), [300, (300, 4)], repeats=3,
                   after_fill=lambda users, ns: seen.append((users, ns)))
    assert seen == [(300, "bench0"), (300, "bench1")]
    assert [(r["users"], r["events_factor"]) for r in rows] == [(300, 1), (300, 4)]
    assert rows[1]["events"] > 2.5 * rows[0]["events"]  # 4x the lessons, the same sign-ups
    assert all(r["eval_ms_median"] > 0 for r in rows)  # (300 users are too few for used_memory to tell)
    # both populations stay in Redis while they are timed, each in its namespace
    assert any(redis_client.scan_iter(match="bench0:*")) and any(redis_client.scan_iter(match="bench1:*"))
    # the same users, more lessons: more of them active in the window
    assert rows[1]["active_in_window"] >= rows[0]["active_in_window"] > 0
