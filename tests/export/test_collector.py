"""The snapshot exporter against a real Redis, promtool and a real Prometheus:
every family and label, the per-scrape cache, a Redis outage, and a scrape
that PromQL (and the generated rules) can read."""

from __future__ import annotations

import logging
import random
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest, start_http_server

from streamer.engine import BatchApplier
from streamer.evaluate.evaluator import TreeEvaluator
from streamer.export import FAMILIES, ExportError, SnapshotCollector
from streamer.state.store import Store
from streamer.testing import MissingBinaryError, Prometheus, RedisServer, free_port
from tests.trees import example

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
DAY = 86_400_000
T0 = 20_000 * DAY
EDU = example("education")
NORTH = "weekly_learning_minutes"


def _m(name: str, role: str, **fields: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "title": name,
        "role": role,
        "dimension": None,
        "owner": None,
        "direction": "higher_is_better",
        "unit": "u",
        "window_seconds": 604800,
        "value": None,
        "baseline": None,
        "change": None,
        "sample": None,
        "status": None,
        "degradation": None,
        "p_value": None,
        "tolerance": None,
    }
    return {**base, **fields}


def _snapshot(**divergence: Any) -> dict[str, Any]:
    """An education snapshot by hand: the North Star up 11%, refund_rate degraded."""
    return {
        "tree": "education",
        "product": "Lingo Academy",
        "at": 1_700_000_000_000,
        "clock": "watermark",
        "evaluated_at": 1_700_000_123_456,
        "metrics": [
            _m(
                NORTH,
                "north_star",
                value=55500.0,
                baseline=50000.0,
                change=0.111,
                breakdown=[{"label": "C1", "value": 30000.0}, {"label": "other", "value": 25500.0}],
            ),
            _m(
                "weekly_active_learners",
                "input",
                dimension="breadth",
                owner="growth-squad",
                value=1200.0,
            ),
            _m(
                "time_to_first_lesson_p50_seconds",
                "input",
                dimension="efficiency",
                owner="onboarding-squad",
            ),
            _m(
                "refund_rate",
                "guardrail",
                owner="payments-squad",
                value=0.13,
                baseline=0.1,
                change=0.3,
                status="degraded",
                degradation=0.3,
                tolerance=0.2,
            ),
            _m(
                "weekly_learner_retention",
                "guardrail",
                owner="habits-squad",
                status="insufficient_data",
                tolerance=0.05,
            ),
        ],
        "divergence": {
            "state": "firing",
            "since": 1,
            "started": 1,
            "north_star_improving": True,
            "degraded": ["refund_rate"],
            **divergence,
        },
    }


def _store_snapshot(store: Store, snapshot: Mapping[str, Any]) -> None:
    store.client.set(store.keys.tree(snapshot["tree"], "snapshot"), orjson.dumps(snapshot))


def _metric(metric: str, role: str, dimension: str = "", owner: str = "") -> dict[str, str]:
    return {
        "tree": "education",
        "metric": metric,
        "role": role,
        "dimension": dimension,
        "owner": owner,
    }


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client, namespace="exp")


@pytest.fixture
def registry(store: Store) -> CollectorRegistry:
    registry = CollectorRegistry()
    SnapshotCollector(store, [EDU], registry=registry, cache_seconds=0)
    return registry


# --------------------------------------------------------------------------- families


def test_metric_values_baselines_and_changes(store: Store, registry: CollectorRegistry) -> None:
    _store_snapshot(store, _snapshot())
    value = registry.get_sample_value
    assert value("northstar_metric_value", _metric(NORTH, "north_star")) == 55500.0
    assert value("northstar_metric_baseline", _metric(NORTH, "north_star")) == 50000.0
    assert value("northstar_metric_change_ratio", _metric(NORTH, "north_star")) == 0.111
    learners = _metric("weekly_active_learners", "input", "breadth", "growth-squad")
    assert value("northstar_metric_value", learners) == 1200.0
    # nulls are skipped, not exported as NaN or 0
    assert value("northstar_metric_baseline", learners) is None
    assert value("northstar_metric_change_ratio", learners) is None
    p50 = _metric("time_to_first_lesson_p50_seconds", "input", "efficiency", "onboarding-squad")
    assert value("northstar_metric_value", p50) is None
    refund = _metric("refund_rate", "guardrail", owner="payments-squad")
    assert value("northstar_metric_value", refund) == 0.13


def test_guardrail_families(store: Store, registry: CollectorRegistry) -> None:
    _store_snapshot(store, _snapshot())
    value = registry.get_sample_value
    refund = {"tree": "education", "metric": "refund_rate", "owner": "payments-squad"}
    retention = {"tree": "education", "metric": "weekly_learner_retention", "owner": "habits-squad"}
    for status in ("ok", "degraded", "insufficient_data"):
        assert value("northstar_guardrail_status", {**refund, "status": status}) == float(
            status == "degraded"
        )
        assert value("northstar_guardrail_status", {**retention, "status": status}) == float(
            status == "insufficient_data"
        )
    assert value("northstar_guardrail_degraded", refund) == 1.0
    assert value("northstar_guardrail_degraded", retention) == 0.0
    assert value("northstar_guardrail_degradation_ratio", refund) == 0.3
    assert value("northstar_guardrail_degradation_ratio", retention) is None
    assert value("northstar_guardrail_tolerance_ratio", refund) == 0.2
    assert value("northstar_guardrail_tolerance_ratio", retention) == 0.05
    # only guardrails have guardrail series
    assert (
        value("northstar_guardrail_degraded", {"tree": "education", "metric": NORTH, "owner": ""})
        is None
    )


@pytest.mark.parametrize("state", ["inactive", "pending", "firing", "resolved"])
def test_divergence_state_is_one_hot(store: Store, registry: CollectorRegistry, state: str) -> None:
    _store_snapshot(store, _snapshot(state=state))
    value = registry.get_sample_value
    for option in ("inactive", "pending", "firing", "resolved"):
        assert value("northstar_divergence_state", {"tree": "education", "state": option}) == float(
            option == state
        )
    assert value("northstar_divergence_firing", {"tree": "education"}) == float(state == "firing")


def test_target_and_timestamps(store: Store, registry: CollectorRegistry) -> None:
    _store_snapshot(store, _snapshot())
    value = registry.get_sample_value
    assert value("northstar_north_star_target", {"tree": "education", "metric": NORTH}) == 50000.0
    assert value("northstar_snapshot_timestamp_seconds", {"tree": "education"}) == 1_700_000_000.0
    assert (
        value("northstar_snapshot_evaluated_timestamp_seconds", {"tree": "education"})
        == 1_700_000_123.456
    )
    assert value("northstar_exporter_up") == 1.0


def test_no_target_no_target_series(store: Store) -> None:
    tree = EDU.model_copy(update={"north_star": EDU.north_star.model_copy(update={"target": None})})
    registry = CollectorRegistry()
    SnapshotCollector(store, [tree], registry=registry)
    _store_snapshot(store, _snapshot())
    assert (
        registry.get_sample_value("northstar_metric_value", _metric(NORTH, "north_star")) == 55500.0
    )
    assert (
        registry.get_sample_value(
            "northstar_north_star_target", {"tree": "education", "metric": NORTH}
        )
        is None
    )


def test_labels_are_bounded(store: Store, registry: CollectorRegistry) -> None:
    _store_snapshot(store, _snapshot())
    allowed = {"tree", "metric", "role", "dimension", "owner", "status", "state", "breakdown"}
    names = {family.name for family in FAMILIES}
    seen = set()
    for family in registry.collect():
        assert family.name in names
        seen.add(family.name)
        for sample in family.samples:
            assert set(sample.labels) <= allowed, sample
    assert seen == names


def test_a_tree_without_snapshot_has_no_series(store: Store) -> None:
    registry = CollectorRegistry()
    SnapshotCollector(store, [EDU, example("netflix")], registry=registry)
    _store_snapshot(store, _snapshot())
    assert registry.get_sample_value("northstar_divergence_firing", {"tree": "education"}) == 1.0
    assert (
        registry.get_sample_value("northstar_divergence_firing", {"tree": "netflix_queue"}) is None
    )
    assert registry.get_sample_value("northstar_exporter_up") == 1.0


def test_a_malformed_snapshot_hides_only_its_tree(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    netflix = example("netflix")
    registry = CollectorRegistry()
    SnapshotCollector(store, [EDU, netflix], registry=registry)
    _store_snapshot(store, _snapshot())
    broken = {**_snapshot(), "tree": "netflix_queue"}
    broken["metrics"] = [*broken["metrics"], _m("x", "input", value="not a number")]
    _store_snapshot(store, broken)
    with caplog.at_level(logging.WARNING, logger="streamer.export.collector"):
        assert (
            registry.get_sample_value("northstar_divergence_firing", {"tree": "education"}) == 1.0
        )
    assert (
        registry.get_sample_value("northstar_divergence_firing", {"tree": "netflix_queue"}) is None
    )
    assert (
        registry.get_sample_value(
            "northstar_metric_value", {**_metric(NORTH, "north_star"), "tree": "netflix_queue"}
        )
        is None
    )
    assert "netflix_queue" in caplog.text


def test_constructor_errors(store: Store) -> None:
    with pytest.raises(ExportError, match="trees given more than once: education"):
        SnapshotCollector(store, [EDU, EDU])
    with pytest.raises(ExportError, match="cache_seconds must be >= 0, got -1"):
        SnapshotCollector(store, [EDU], cache_seconds=-1)


def test_describe_lets_the_registry_reject_a_second_collector(store: Store) -> None:
    registry = CollectorRegistry()
    SnapshotCollector(store, [EDU], registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        SnapshotCollector(store, [EDU], registry=registry)


# --------------------------------------------------------------------------- cache and outage


def test_scrapes_within_the_cache_interval_read_redis_once(store: Store) -> None:
    clock = _Clock()
    registry = CollectorRegistry()
    SnapshotCollector(store, [EDU], registry=registry, cache_seconds=1.0, monotonic=clock)
    _store_snapshot(store, _snapshot(state="pending"))
    firing = {"tree": "education"}
    assert registry.get_sample_value("northstar_divergence_firing", firing) == 0.0
    _store_snapshot(store, _snapshot(state="firing"))
    clock.now += 0.5
    assert registry.get_sample_value("northstar_divergence_firing", firing) == 0.0  # cached
    clock.now += 0.5
    assert registry.get_sample_value("northstar_divergence_firing", firing) == 1.0


def test_by_default_a_scrape_shows_the_snapshot_stored_just_before(store: Store) -> None:
    """No cache by default: a scrape adds nothing to a value's age, even
    with the clock standing still between two scrapes."""
    clock = _Clock()
    registry = CollectorRegistry()
    SnapshotCollector(store, [EDU], registry=registry, monotonic=clock)
    _store_snapshot(store, _snapshot(state="pending"))
    firing = {"tree": "education"}
    assert registry.get_sample_value("northstar_divergence_firing", firing) == 0.0
    _store_snapshot(store, _snapshot(state="firing"))
    assert registry.get_sample_value("northstar_divergence_firing", firing) == 1.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis this test may stop (the session one is shared)."""
    server = RedisServer(workdir=tmp_path / "redis")
    try:
        server.start()
    except MissingBinaryError as exc:
        pytest.fail(f"required service binary is missing: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def test_a_redis_outage_exposes_exporter_up_0(
    own_redis: RedisServer, promtool: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(redis.Redis.from_url(own_redis.url, socket_timeout=2), namespace="exp")
    registry = CollectorRegistry()
    SnapshotCollector(store, [EDU], registry=registry, cache_seconds=0)
    _store_snapshot(store, _snapshot())
    assert registry.get_sample_value("northstar_exporter_up") == 1.0
    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="streamer.export.collector"):
        text = generate_latest(registry)  # must not raise
    assert registry.get_sample_value("northstar_exporter_up") == 0.0
    # no stale values while Redis is unreadable
    assert registry.get_sample_value("northstar_divergence_firing", {"tree": "education"}) is None
    assert b"northstar_exporter_up 0.0" in text
    assert "cannot read snapshots from Redis" in caplog.text
    _check_metrics(promtool, text)


# --------------------------------------------------------------------------- real snapshots, promtool


def _events(n: int, seed: int = 11) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    names = [
        "lesson_completed",
        "lesson_abandoned",
        "signed_up",
        "subscription_purchased",
        "refund_issued",
    ]
    lines = [
        orjson.dumps(
            {
                "event_type": rng.choice(names),
                "user_id": f"u{rng.randrange(40)}",
                "time": T0 + rng.randrange(20 * DAY),
                "insert_id": f"i{i}",
                "event_properties": {"minutes": rng.randrange(1, 30)},
            }
        )
        for i in range(n)
    ]
    return list(enumerate(lines))


def test_a_real_evaluator_snapshot_is_exported_as_is(store: Store) -> None:
    BatchApplier(store, [EDU]).apply("0", _events(800), T0 + 30 * DAY)
    result = TreeEvaluator(store, EDU, wall=lambda: 1_800_000_000.5).evaluate(T0 + 21 * DAY)
    assert result is not None
    snapshot, _ = result
    registry = CollectorRegistry()
    SnapshotCollector(store, [EDU], registry=registry)
    exported = 0
    for metric in snapshot["metrics"]:
        labels = _metric(
            metric["name"], metric["role"], metric.get("dimension") or "", metric.get("owner") or ""
        )
        for family, key in (
            ("northstar_metric_value", "value"),
            ("northstar_metric_baseline", "baseline"),
            ("northstar_metric_change_ratio", "change"),
        ):
            assert registry.get_sample_value(family, labels) == metric.get(key), (family, labels)
            exported += metric.get(key) is not None
        for part in metric.get("breakdown") or []:
            labelled = {**labels, "breakdown": part["label"]}
            assert registry.get_sample_value("northstar_metric_breakdown_value", labelled) == part["value"]
            exported += 1
        if metric["role"] == "guardrail":
            guard = {
                "tree": "education",
                "metric": metric["name"],
                "owner": metric.get("owner") or "",
            }
            assert registry.get_sample_value("northstar_guardrail_degraded", guard) == float(
                metric.get("status") == "degraded"
            )
    assert exported >= len(snapshot["metrics"])  # the log produced real values
    state = snapshot["divergence"]["state"]
    assert (
        registry.get_sample_value(
            "northstar_divergence_state", {"tree": "education", "state": state}
        )
        == 1.0
    )
    assert (
        registry.get_sample_value("northstar_snapshot_timestamp_seconds", {"tree": "education"})
        == (T0 + 21 * DAY) / 1000
    )
    assert (
        registry.get_sample_value(
            "northstar_snapshot_evaluated_timestamp_seconds", {"tree": "education"}
        )
        == 1_800_000_000.5
    )


def test_breakdown_series_are_bounded_by_max_values(store: Store) -> None:
    """40 course ids, a North Star broken down into at most max_values of them:
    max_values + 1 series (the admitted ids, then other), which add up."""
    rng = random.Random(5)
    lines = [
        orjson.dumps({
            "event_type": "lesson_completed", "user_id": f"u{i % 30}", "time": T0 + rng.randrange(6 * DAY),
            "insert_id": f"c{i}", "event_properties": {"minutes": 3, "course_id": f"C{rng.randrange(40)}"},
        })
        for i in range(600)
    ]
    BatchApplier(store, [EDU]).apply("0", list(enumerate(lines)), T0 + 30 * DAY)
    result = TreeEvaluator(store, EDU).evaluate(T0 + 7 * DAY)
    assert result is not None
    registry = CollectorRegistry()
    SnapshotCollector(store, [EDU], registry=registry)
    samples = [
        s for family in registry.collect() if family.name == "northstar_metric_breakdown_value"
        for s in family.samples if s.labels["metric"] == NORTH
    ]
    cap = EDU.north_star.breakdown.max_values if EDU.north_star.breakdown else 0
    assert cap and len(samples) == cap + 1
    assert sorted(s.labels["breakdown"] for s in samples)[-1] == "other"
    total = registry.get_sample_value("northstar_metric_value", _metric(NORTH, "north_star"))
    assert total == 1800.0 and sum(s.value for s in samples) == total


def _check_metrics(promtool: str, text: bytes) -> None:
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == b"" and done.stderr.strip() == b"", done.stdout + done.stderr


def test_promtool_check_metrics_finds_no_lint_problem(
    store: Store, registry: CollectorRegistry, promtool: str
) -> None:
    _store_snapshot(store, _snapshot())
    text = generate_latest(registry)
    for family in FAMILIES:
        assert f"# TYPE {family.name} gauge".encode() in text
    _check_metrics(promtool, text)


# --------------------------------------------------------------------------- a real Prometheus


@pytest.fixture
def exporter(registry: CollectorRegistry) -> Iterator[str]:
    """An HTTP server exposing ``registry`` on a free port; yields host:port."""
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_prometheus_scrapes_the_north_star_and_fires_the_generated_alert(
    store: Store, exporter: str, prometheus_bin: Callable[..., Prometheus]
) -> None:
    _store_snapshot(store, _snapshot())
    prometheus = prometheus_bin([exporter], rule_files=[RULES])
    # the first scrape lands ~5 s after start
    (sample,) = prometheus.wait_for_query(
        'northstar_metric_value{tree="education",role="north_star"}', timeout=60
    )
    assert sample["metric"]["metric"] == NORTH
    assert float(sample["value"][1]) == 55500.0
    (change,) = prometheus.wait_for_query(
        'northstar:north_star_change:ratio{tree="education"}', timeout=60
    )
    assert float(change["value"][1]) == pytest.approx(0.111)
    (degraded,) = prometheus.wait_for_query(
        'northstar:guardrails_degraded:count{tree="education"}', timeout=60
    )
    assert float(degraded["value"][1]) == 1.0
    prometheus.wait_for_query(
        'ALERTS{alertname="NorthStarDivergence",tree="education",alertstate="firing"}', timeout=60
    )
    alerts = [
        a
        for a in prometheus.api("alerts")["alerts"]
        if a["labels"]["alertname"] == "NorthStarDivergence"
    ]
    assert len(alerts) == 1
    assert alerts[0]["labels"]["severity"] == "critical"
    description = alerts[0]["annotations"]["description"]
    assert "changed 11.1% vs its baseline" in description
    assert "degraded: refund_rate (owner payments-squad)." in description


def test_every_family_is_documented() -> None:
    docs = (ROOT / "docs" / "prometheus.md").read_text(encoding="utf-8")
    for family in FAMILIES:
        assert f"`{family.name}`" in docs, family.name
