"""Liveness and readiness of a worker, served next to ``/metrics`` on the
metrics port (docs/worker.md, "Failure behaviour"):

- ``GET /healthz``: 200 while the process serves HTTP (liveness; a worker
  waiting for Redis is alive and must not be restarted: a restart would only
  re-read what it already holds).
- ``GET /readyz``: 200 once the worker joined its consumer group and its last
  Redis call succeeded; otherwise 503. Both answer a JSON body:
  ``{"ready": bool, "reason": str | null, "redis_up": bool, "joined": bool,
  "assigned_partitions": int}``, reason ``redis_unavailable`` (the last
  Redis call failed: unreachable, timed out, loading, or out of memory) or
  ``not_joined``.

A joined worker that owns no partition (more workers than partitions) is
ready: it is a healthy standby, and counting it unready would stall a rolling
update that waits for the new pod to be ready while the group gives that pod
nothing. The HTTP server runs in a thread and only reads a :class:`Status`
snapshot produced by the event loop's side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

HEALTHZ = "/healthz"
READYZ = "/readyz"


@dataclass(frozen=True)
class Status:
    """What readiness is decided from."""

    redis_up: bool
    joined: bool
    assigned_partitions: int


def readiness(status: Status) -> tuple[bool, dict[str, Any]]:
    """(ready, JSON body) for ``status``; Redis first: it is what an operator must fix."""
    reason = None
    if not status.redis_up:
        reason = "redis_unavailable"
    elif not status.joined:
        reason = "not_joined"
    body = {
        "ready": reason is None,
        "reason": reason,
        "redis_up": status.redis_up,
        "joined": status.joined,
        "assigned_partitions": status.assigned_partitions,
    }
    return reason is None, body


def make_app(
    registry: CollectorRegistry, status: Callable[[], Status]
) -> Callable[..., Iterable[bytes]]:
    """A WSGI app: ``/healthz``, ``/readyz``, everything else ``/metrics`` as before."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == HEALTHZ:
            return _json(start_response, 200, {"alive": True})
        if path == READYZ:
            ready, body = readiness(status())
            return _json(start_response, 200 if ready else 503, body)
        result: Iterable[bytes] = metrics(environ, start_response)
        return result

    return app


def _json(start_response: Callable[..., Any], code: int, body: dict[str, Any]) -> list[bytes]:
    payload = orjson.dumps(body)
    phrase = "OK" if code == 200 else "Service Unavailable"
    start_response(
        f"{code} {phrase}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [payload]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the log."""


def serve(
    port: int, registry: CollectorRegistry, status: Callable[[], Status], addr: str = "0.0.0.0"
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``addr:port`` from a
    daemon thread (``server.shutdown()`` stops it), like prometheus_client's
    ``start_http_server``."""
    server = make_server(
        addr, port, make_app(registry, status), ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="northstar-metrics", daemon=True)
    thread.start()
    return server, thread
