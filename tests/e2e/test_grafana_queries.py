"""Issue 6, end to end: every query of the generated Grafana boards returns
data from a real Prometheus scraping a running pipeline.

No Grafana runs here, so the test does what Grafana would: it takes every
panel target of the committed education and learning_users boards (and of
the squad boards whose metrics all live in those two trees), interpolates
the template variables (``$squad`` as "All" and as a concrete owner,
``$__rate_interval``) and sends the query to Prometheus's API, as a range
query when the target is one. Each must return at least one series.

The pipeline: Tansu, Redis, a worker process reading both trees' topics, two
simulators streaming education and learning_users events on a compressed
clock, a few malformed records (so that invalid-by-reason has series), the
SnapshotCollector over HTTP and the worker's own metrics port, both scraped
every second by Prometheus."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, start_http_server

from streamer.export.collector import SnapshotCollector
from streamer.generate.grafana import owners, squad_slug
from streamer.generate.grafana_queries import SQUAD_VARIABLE, Query, interpolate, panels, queries
from streamer.kafka.admin import ensure_topic
from streamer.kafka.produce import produce_sync
from streamer.spec.model import Tree
from streamer.state.store import Store
from streamer.testing import free_port
from streamer.testing.prometheus import Prometheus
from streamer.testing.worker import WorkerProcess, load_tree, tree_on_topic

pytestmark = pytest.mark.services

ROOT = Path(__file__).parents[2]
BOARDS = ROOT / "grafana" / "dashboards"
TREES = ("education", "learning_users")
SPEED = "20000"  # one wall second = 5.6 simulated hours
RATE_INTERVAL = "30s"  # for $__rate_interval: a window of many 1 s scrapes, as Grafana would pick
DEADLINE = 90.0  # seconds for every query to return data
MALFORMED = [b"not json at all", b"[1, 2, 3]", b'{"event_type": "lesson_completed"}']


def _board(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BOARDS / name).read_text(encoding="utf-8"))
    return data


def _squad_owner(tree: Tree) -> str:
    """An owner with both an input and a guardrail, so every "Your inputs"
    panel has something to show for it."""
    inputs = {i.owner for i in tree.inputs if i.owner}
    guards = {g.owner for g in tree.guardrails if g.owner}
    return sorted(inputs & guards or inputs)[0]


def _checks(trees: dict[str, Tree]) -> list[tuple[str, Query]]:
    """(board and variables, query) for every panel target to run."""
    checks: list[tuple[str, Query]] = []
    for name, tree in trees.items():
        board = _board(f"tree-{name}.json")
        for squad in (".*", _squad_owner(tree)):
            values = {SQUAD_VARIABLE: squad, "__rate_interval": RATE_INTERVAL}
            checks += [
                (f"tree-{name}.json with $squad={squad}", q.with_values(values))
                for q in queries(board)
                if q.kind == "panel"
            ]
    # squad boards whose every metric lives in the running trees
    running = set(trees)
    everyone = {owner for tree in trees.values() for owner in owners(tree)}
    others = [load_tree(p) for p in sorted((ROOT / "definitions").glob("*.yaml"))]
    elsewhere = {o for t in others if t.tree not in running for o in owners(t)}
    for owner in sorted(everyone - elsewhere):
        board = _board(f"squad-{squad_slug(owner)}.json")
        checks += [
            (f"squad-{squad_slug(owner)}.json", q) for q in queries(board) if q.kind == "panel"
        ]
    return checks


class PromQLError(Exception):
    """Prometheus rejected a query (HTTP 400/422): a broken board, not a wait."""


def _result(prometheus: Prometheus, query: Query) -> list[dict[str, Any]]:
    """The query's result, as Grafana would ask for it (range or instant)."""
    if query.range:
        end = time.time()
        params = {"query": query.expr, "start": str(end - 120), "end": str(end), "step": "5"}
        path = "query_range"
    else:
        params, path = {"query": query.expr}, "query"
    try:
        result: list[dict[str, Any]] = prometheus.api(path, params)["result"]
    except urllib.error.HTTPError as exc:
        raise PromQLError(f"{query.where}: {query.expr}: {exc.read().decode()}") from None
    return result


@contextlib.contextmanager
def _pipeline(
    tmp_path: Path, kafka_broker: Any, redis_server: Any, prometheus_bin: Callable[..., Prometheus]
) -> Iterator[tuple[Prometheus, dict[str, Tree]]]:
    run = f"{int(time.time() * 1000)}"
    topics = {name: f"grafana-{name}-{run}" for name in TREES}
    dead_letters = f"grafana-dlq-{run}"
    for topic in [*topics.values(), dead_letters]:
        ensure_topic(kafka_broker.bootstrap, topic, 1)
    definitions = [
        tree_on_topic(ROOT / "definitions" / f"{name}.yaml", topic, tmp_path / "defs")
        for name, topic in topics.items()
    ]
    trees = {name: load_tree(path) for name, path in zip(TREES, definitions, strict=True)}
    namespace = f"grafana{run}"
    worker = WorkerProcess(
        definitions,
        bootstrap=kafka_broker.bootstrap,
        redis_url=redis_server.url,
        group=f"g-grafana-{run}",
        session_timeout_ms=3000,
        env={
            "NORTHSTAR_NAMESPACE": namespace,
            "NORTHSTAR_APP_ID": f"ns-grafana-{run}",
            "NORTHSTAR_DEAD_LETTER_TOPIC": dead_letters,
        },
        args=["--evaluate-interval", "0.5"],
        workdir=tmp_path / "worker",
    )
    sims: list[subprocess.Popen[bytes]] = []
    server = None
    try:
        worker.start()
        store = Store(redis.Redis.from_url(redis_server.url), namespace=namespace)
        registry = CollectorRegistry()
        SnapshotCollector(store, list(trees.values()), registry=registry, cache_seconds=0)
        port = free_port("127.0.0.1")
        server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
        prometheus = prometheus_bin([f"127.0.0.1:{port}", f"127.0.0.1:{worker.metrics_port}"])
        produce_sync(MALFORMED, topics["education"], {"bootstrap_servers": kafka_broker.bootstrap})
        for seed, (name, topic) in enumerate(topics.items(), start=3):
            argv = [sys.executable, "-m", "streamer.cli", "simulate", "--tree", name,
                    "--kafka", kafka_broker.bootstrap, "--topic", topic, "--backfill-days", "28",
                    "--speed", SPEED, "--duration", str(DEADLINE + 30), "--seed", str(seed)]  # fmt: skip
            sims.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        yield prometheus, trees
        assert worker.is_running(), worker.log_tail()
    finally:
        for sim in sims:
            sim.kill()
            sim.wait(timeout=30)
        worker.stop()
        if server is not None:
            server.shutdown()


def test_every_panel_query_of_the_boards_returns_data(
    tmp_path: Path,
    kafka_broker: Any,
    redis_server: Any,
    prometheus_bin: Callable[..., Prometheus],
) -> None:
    with _pipeline(tmp_path, kafka_broker, redis_server, prometheus_bin) as (prometheus, trees):
        checks = _checks(trees)
        assert len(checks) > 100, "expected the boards of both trees and some squads"
        waiting = list(checks)
        started = time.monotonic()

        def all_answered() -> bool:
            waiting[:] = [(b, q) for b, q in waiting if not _result(prometheus, q)]
            return not waiting

        while not all_answered():
            if time.monotonic() - started > DEADLINE:
                missing = "\n".join(f"  {board}: {q.where}: {q.expr}" for board, q in waiting)
                pytest.fail(
                    f"{len(waiting)} of {len(checks)} panel queries return no data:\n{missing}"
                )
            time.sleep(1.0)

        # a concrete $squad shows that squad's inputs only
        for name, tree in trees.items():
            owner = _squad_owner(tree)
            board = _board(f"tree-{name}.json")
            (mine,) = [
                p for p in panels(board) if p["title"] == f"Inputs owned by ${SQUAD_VARIABLE}"
            ]
            expr = interpolate(mine["targets"][0]["expr"], {SQUAD_VARIABLE: owner})
            shown = {
                series["metric"]["metric"]: series["metric"]["owner"]
                for series in prometheus.query(expr)
            }
            assert shown == {i.name: owner for i in tree.inputs if i.owner == owner}

        # the tolerated band is the evaluator's rule: baseline moved by the tolerance
        # in the guardrail's bad direction
        for name, tree in trees.items():
            board = _board(f"tree-{name}.json")
            for guard in tree.guardrails:
                (band,) = [p for p in panels(board) if p["title"].startswith(f"{guard.title}")
                           and p["title"].endswith("tolerated band")]  # fmt: skip
                exprs = {t["legendFormat"]: t["expr"] for t in band["targets"]}
                baseline = float(prometheus.query(exprs["baseline"])[0]["value"][1])
                limit = float(prometheus.query(exprs["tolerated limit"])[0]["value"][1])
                sign = 1 if guard.direction == "lower_is_better" else -1
                assert limit == pytest.approx(baseline + sign * guard.tolerance * abs(baseline))

        # divergence and degraded guardrails are annotations: empty while nothing
        # fires (a healthy product), but Prometheus must accept them
        for name in trees:
            board = _board(f"tree-{name}.json")
            annotations = [q for q in queries(board) if q.kind == "annotation"]
            assert len(annotations) == 2
            for query in annotations:
                _result(prometheus, query)
