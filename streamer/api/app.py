"""The aiohttp application of the read side (stateless: run as many as needed).

``create_app(store, trees, token=...)`` wires the routes (routes.py), the
JSON errors (errors.py), the 64 KiB body limit (limits.py), the bearer token on ``/api/*`` (auth.py), the
snapshot exporter on ``/metrics`` and the snapshot stream (sse.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from streamer.api import routes
from streamer.api.auth import bearer_middleware
from streamer.api.errors import error_middleware
from streamer.api.limits import body_limit_middleware
from streamer.export.collector import CACHE_SECONDS, SnapshotCollector
from streamer.spec.model import Tree
from streamer.state.store import Store

CLIENT_MAX_SIZE = 64 * 1024  # no route takes a body; refuse big ones early


class ApiConfigError(ValueError):
    """A ``create_app`` argument is invalid."""


def create_app(
    store: Store,
    trees: Sequence[Tree],
    *,
    token: str | None = None,
    poll_interval: float = 0.5,
    heartbeat_interval: float = 15.0,
    metrics_cache_seconds: float = CACHE_SECONDS,
) -> web.Application:
    """The API serving ``trees`` from ``store`` (whose namespace it reads).

    With ``token``, every ``/api/*`` request needs ``Authorization: Bearer
    <token>``; ``/healthz``, ``/metrics`` and ``/openapi.json`` stay public.
    ``poll_interval`` is how often the snapshot stream polls Redis while
    someone listens, ``heartbeat_interval`` how often it sends a comment."""
    if token is not None and not token.strip():
        raise ApiConfigError("token must not be empty or blank; pass None to serve without authentication")
    if poll_interval <= 0 or heartbeat_interval <= 0:
        raise ApiConfigError(
            f"poll_interval and heartbeat_interval must be > 0, got {poll_interval} and {heartbeat_interval}"
        )
    names = [t.tree for t in trees]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ApiConfigError(f"trees given more than once: {', '.join(duplicates)}")

    registry = CollectorRegistry()
    SnapshotCollector(store, trees, cache_seconds=metrics_cache_seconds, registry=registry)
    context = routes.Context.build(store, list(trees), registry, poll_interval, heartbeat_interval)

    middlewares: list[Middleware] = [error_middleware, body_limit_middleware(CLIENT_MAX_SIZE)]
    if token is not None:
        middlewares.append(bearer_middleware(token))
    app = web.Application(middlewares=middlewares, client_max_size=CLIENT_MAX_SIZE)
    app[routes.CONTEXT] = context
    routes.setup(app)
    app.cleanup_ctx.append(_run_hub)
    app.on_shutdown.append(_stop_streams)
    return app


async def _run_hub(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[routes.CONTEXT].hub.run(), name="northstar-snapshot-hub")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _stop_streams(app: web.Application) -> None:
    # runs before aiohttp waits for open requests, so streams end at once
    app[routes.CONTEXT].hub.close()
