"""Issue 5, end to end: simulated events through Kafka, a worker (batches ->
Redis -> evaluator on the faust leader), the exporter scraped by a real
Prometheus with the generated rules, and a real Alertmanager.

Goodhart inflation (the North Star climbing while abandon rate and retention
worsen) must fire the divergence alert; healthy growth and a noisy-but-stable
product must fire nothing. The simulator runs on a compressed clock
(``--speed``) and the evaluator follows event time, so weeks pass in seconds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, start_http_server

from streamer.export.collector import SnapshotCollector
from streamer.kafka.admin import ensure_topic
from streamer.state.store import Store
from streamer.testing import free_port, wait_until
from streamer.testing.worker import WorkerProcess, load_tree, tree_on_topic

ROOT = Path(__file__).parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
SPEED = "20000"  # one wall second = 5.6 simulated hours


def _alertmanager_alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + "/api/v2/alerts") as response:
        alerts: list[dict[str, Any]] = json.loads(response.read())
    return [a for a in alerts if a["labels"].get("alertname") == "NorthStarDivergence"]


def _pipeline(tmp_path: Path, kafka_broker: Any, redis_server: Any, alertmanager_bin: Callable[..., Any],
              prometheus_bin: Callable[..., Any], name: str) -> tuple[Any, Any, Any, Any, str]:
    topic = f"e2e-{name}-{int(time.time() * 1000)}"
    ensure_topic(kafka_broker.bootstrap, topic, 1)
    definitions = tree_on_topic(ROOT / "definitions" / "education.yaml", topic, tmp_path / "defs")
    manager = alertmanager_bin()
    namespace = f"e2e{name}"
    worker = WorkerProcess(
        [definitions], bootstrap=kafka_broker.bootstrap, redis_url=redis_server.url, group=f"g-{topic}",
        session_timeout_ms=3000, env={"NORTHSTAR_NAMESPACE": namespace, "NORTHSTAR_APP_ID": f"ns-{topic}"},
        args=["--evaluate-interval", "0.5", "--alertmanager", manager.url], workdir=tmp_path / "worker",
    )
    worker.start()
    worker.wait_ready()
    store = Store(redis.Redis.from_url(redis_server.url), namespace=namespace)
    registry = CollectorRegistry()
    SnapshotCollector(store, [load_tree(definitions)], registry=registry, cache_seconds=0)
    port = free_port("127.0.0.1")
    exporter, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    prometheus = prometheus_bin([f"127.0.0.1:{port}"], rule_files=[RULES],
                                alertmanagers=[manager.url.removeprefix("http://")])
    return worker, manager, prometheus, exporter, topic


def _simulate(kafka_broker: Any, topic: str, scenario: str, switch: str | None, seconds: float) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "streamer.cli", "simulate", "--tree", "education", "--kafka", kafka_broker.bootstrap,
            "--topic", topic, "--backfill-days", "28", "--speed", SPEED, "--scenario", scenario,
            "--duration", str(seconds), "--seed", "3"]
    if switch:
        argv += ["--switch-to", switch, "--switch-after-days", "0"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_goodhart_fires_through_the_whole_pipeline(
    tmp_path: Path, kafka_broker: Any, redis_server: Any, alertmanager_bin: Callable[..., Any],
    prometheus_bin: Callable[..., Any],
) -> None:
    worker, manager, prometheus, exporter, topic = _pipeline(tmp_path, kafka_broker, redis_server,
                                                             alertmanager_bin, prometheus_bin, "goodhart")
    sim = _simulate(kafka_broker, topic, "healthy", "goodhart", 120)
    try:
        wait_until(lambda: bool(_alertmanager_alerts(manager.url)), timeout=150,
                   what="a NorthStarDivergence alert in Alertmanager")
        alerts = _alertmanager_alerts(manager.url)
        assert alerts[0]["labels"]["tree"] == "education"
        assert "lesson_abandon_rate" in alerts[0]["annotations"]["guardrails"] or \
            "weekly_learner_retention" in alerts[0]["annotations"]["guardrails"]
        firing = prometheus.wait_for_query('northstar_divergence_firing{tree="education"} == 1', timeout=30)
        assert firing
        def rule_alerts() -> list[dict[str, Any]]:
            return [a for a in prometheus.api("alerts")["alerts"]
                    if a["labels"]["alertname"] == "NorthStarDivergence" and a["state"] == "firing"]

        wait_until(lambda: bool(rule_alerts()), timeout=30,
                   what="the generated NorthStarDivergence rule firing in Prometheus")
        assert rule_alerts()[0]["labels"]["tree"] == "education"
        assert worker.is_running()
    finally:
        sim.kill()
        sim.wait(timeout=30)
        worker.stop()
        exporter.shutdown()


@pytest.mark.parametrize("scenario", ["healthy", "noisy"])
def test_no_alert_without_goodhart(
    scenario: str, tmp_path: Path, kafka_broker: Any, redis_server: Any, alertmanager_bin: Callable[..., Any],
    prometheus_bin: Callable[..., Any],
) -> None:
    worker, manager, prometheus, exporter, topic = _pipeline(tmp_path, kafka_broker, redis_server,
                                                             alertmanager_bin, prometheus_bin, scenario)
    sim = _simulate(kafka_broker, topic, scenario, None, 45)  # ~10 simulated days after the backfill
    try:
        assert sim.wait(timeout=120) == 0, sim.stderr.read() if sim.stderr else ""
        # the pipeline really ran: Prometheus sees the North Star, and guardrails were judged
        values = prometheus.wait_for_query('northstar_metric_value{tree="education",role="north_star"}', timeout=30)
        assert float(values[0]["value"][1]) > 0
        state = prometheus.wait_for_query('northstar_divergence_state{tree="education",state="inactive"} == 1', timeout=30)
        assert state
        assert _alertmanager_alerts(manager.url) == []
        assert prometheus.query('ALERTS{alertname="NorthStarDivergence"}') == []
        assert worker.is_running()
    finally:
        worker.stop()
        exporter.shutdown()
