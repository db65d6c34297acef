"""The worker's /healthz and /readyz (streamer/worker/health.py), served by
a real HTTP server on a free port next to /metrics, and the deploy manifests
probing exactly those paths."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge
from ruamel.yaml import YAML

from streamer.testing import free_port
from streamer.worker.health import HEALTHZ, READYZ, Status, readiness, serve

ROOT = Path(__file__).resolve().parents[2]


def test_readiness_names_what_is_missing_redis_first() -> None:
    assert readiness(Status(redis_up=True, joined=True, assigned_partitions=2)) == (
        True,
        {"ready": True, "reason": None, "redis_up": True, "joined": True, "assigned_partitions": 2},
    )
    assert (
        readiness(Status(redis_up=False, joined=True, assigned_partitions=2))[1]["reason"]
        == "redis_unavailable"
    )
    assert (
        readiness(Status(redis_up=True, joined=False, assigned_partitions=0))[1]["reason"]
        == "not_joined"
    )
    assert (
        readiness(Status(redis_up=False, joined=False, assigned_partitions=0))[1]["reason"]
        == "redis_unavailable"
    )
    # a standby (joined, no partition: more workers than partitions) is ready
    assert readiness(Status(redis_up=True, joined=True, assigned_partitions=0))[0] is True


class _Served:
    def __init__(self) -> None:
        self.status = Status(redis_up=True, joined=False, assigned_partitions=0)
        self.registry = CollectorRegistry()
        Gauge("northstar_redis_up", "test", registry=self.registry).set(1)
        self.port = free_port("127.0.0.1")

    def get(self, path: str) -> tuple[int, str, bytes]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.fixture
def served() -> Iterator[_Served]:
    s = _Served()
    server, thread = serve(s.port, s.registry, lambda: s.status, addr="127.0.0.1")
    try:
        yield s
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_probes_and_metrics_on_one_port(served: _Served) -> None:
    code, kind, body = served.get(HEALTHZ)
    assert (code, kind, json.loads(body)) == (200, "application/json", {"alive": True})

    code, _, body = served.get(READYZ)
    assert (code, json.loads(body)["reason"]) == (503, "not_joined")
    served.status = Status(redis_up=True, joined=True, assigned_partitions=3)
    code, _, body = served.get(READYZ)
    assert (code, json.loads(body)) == (
        200,
        {"ready": True, "reason": None, "redis_up": True, "joined": True, "assigned_partitions": 3},
    )
    served.status = Status(redis_up=False, joined=True, assigned_partitions=3)
    code, _, body = served.get(READYZ)
    assert (code, json.loads(body)["reason"], json.loads(body)["ready"]) == (
        503,
        "redis_unavailable",
        False,
    )

    code, kind, body = served.get("/metrics")
    assert code == 200 and kind.startswith("text/plain")
    assert b"northstar_redis_up 1.0" in body
    assert served.get("/")[2] == body  # prometheus_client serves every other path as /metrics


def _load_all(path: Path) -> list[Any]:
    return [d for d in YAML(typ="safe").load_all(path.read_text()) if d]


def test_deploy_probes_use_the_worker_endpoints() -> None:
    (deployment,) = _load_all(ROOT / "deploy" / "k8s" / "base" / "worker.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == READYZ
    assert container["livenessProbe"]["httpGet"]["path"] == HEALTHZ
    (compose,) = _load_all(ROOT / "deploy" / "compose.yaml")
    check = " ".join(compose["x-worker"]["healthcheck"]["test"])
    assert f":9464{READYZ}'" in check
