"""The evaluator on simulated histories: Goodhart inflation fires the
divergence alert; healthy growth and noisy-but-stable behaviour fire nothing."""

from __future__ import annotations

import orjson
import pytest
import redis

from streamer.evaluate.evaluator import TreeEvaluator
from streamer.replay import replay
from streamer.sim.models import simulate
from streamer.sim.scenarios import SCENARIOS
from streamer.state.store import Store
from tests.trees import example

DAY = 86_400_000
HOUR = 3_600_000
START = 20_000 * DAY
DRIFT_FROM = START + 28 * DAY


def _run(client: redis.Redis, scenario: str, seed: int) -> list[tuple[int, str, list[str]]]:
    tree = example("education")
    lines = [orjson.dumps(e) for e in simulate("education", START, 42, SCENARIOS[scenario],
                                               drift_from_ms=DRIFT_FROM, seed=seed)]
    replay(lines, [tree], client, at_ms=[START], now_ms=START + 60 * DAY, namespace=f"scn{seed}")
    evaluator = TreeEvaluator(Store(client, namespace=f"scn{seed}"), tree)
    changes = []
    for hour in range(21 * 24, 42 * 24, 6):
        result = evaluator.evaluate(START + hour * HOUR)
        assert result is not None
        _, events = result
        for event in events:
            changes.append((hour, event["state"], [g["name"] for g in event["guardrails"]]))
    return changes


def test_goodhart_fires_after_the_drift(redis_client: redis.Redis) -> None:
    changes = _run(redis_client, "goodhart", seed=3)
    firing = [(h, guards) for h, state, guards in changes if state == "firing"]
    assert firing, changes
    hour, guards = firing[0]
    assert DRIFT_FROM <= START + hour * HOUR <= DRIFT_FROM + 10 * DAY
    assert "lesson_abandon_rate" in guards or "weekly_learner_retention" in guards
    assert len(firing) == 1, f"the alert flapped: {changes}"


@pytest.mark.parametrize("scenario", ["healthy", "noisy"])
@pytest.mark.parametrize("seed", [3, 4])
def test_no_alert_without_goodhart(redis_client: redis.Redis, scenario: str, seed: int) -> None:
    changes = _run(redis_client, scenario, seed)
    assert not [c for c in changes if c[1] == "firing"], changes


def test_an_older_evaluation_changes_nothing(redis_client: redis.Redis) -> None:
    """Two leaders during a fail-over: the one that evaluates an older time
    after the other committed a later one writes nothing (state machines and
    snapshot never go back in time); the same time again is allowed."""
    tree = example("education")
    lines = [orjson.dumps(e) for e in simulate("education", START, 30, SCENARIOS["healthy"], seed=5)]
    replay(lines, [tree], redis_client, at_ms=[START], now_ms=START + 60 * DAY, namespace="old")
    evaluator = TreeEvaluator(Store(redis_client, namespace="old"), tree)
    assert evaluator.evaluate(START + 25 * DAY) is not None
    snapshot = redis_client.get("old:{education}:snapshot")
    assert evaluator.evaluate(START + 24 * DAY) is None
    assert redis_client.get("old:{education}:snapshot") == snapshot
    assert evaluator.evaluate(START + 25 * DAY) is not None
