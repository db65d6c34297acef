"""``northstar api``: serve the HTTP read side (JSON API, server-sent events,
Prometheus ``/metrics``, OpenAPI) from the snapshots in Redis."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path
from typing import Any

from streamer.cli.common import (
    load_trees_or_exit,
    redis_client_or_exit,
    settings_problems,
    usage_error,
)

HELP = "serve the HTTP API, server-sent events and /metrics from Redis"
logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "api", help=HELP,
        description=HELP + ". Settings also come from NORTHSTAR_* env vars; see docs/api.md.",
    )
    p.add_argument("--definitions", "-d", type=Path, nargs="+", default=None,
                   help="definitions files or directories ($NORTHSTAR_DEFINITIONS; default definitions/)")
    p.add_argument("--redis", default=None, help="Redis URL ($NORTHSTAR_REDIS_URL)")
    p.add_argument("--namespace", default=None, help="Redis key namespace ($NORTHSTAR_NAMESPACE; default ns)")
    p.add_argument("--host", default=None, help="address to bind ($NORTHSTAR_API_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port ($NORTHSTAR_API_PORT; default 8080)")
    p.add_argument("--token", default=None,
                   help="require `Authorization: Bearer TOKEN` on /api/* ($NORTHSTAR_API_TOKEN, "
                        "preferred: a flag is visible in the process list)")
    p.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from aiohttp import web
    from pydantic import ValidationError

    from streamer.api import create_app
    from streamer.api.settings import ApiSettings
    from streamer.state.store import Store

    overrides = {field: value for field, value in (
        ("definitions", args.definitions), ("namespace", args.namespace), ("api_host", args.host),
        ("api_port", args.port), ("api_token", args.token),
    ) if value is not None}
    try:
        settings = ApiSettings(**overrides)
    except ValidationError as exc:
        return usage_error(settings_problems(exc))  # never the value: the token is secret
    trees = load_trees_or_exit(settings.definitions)
    client = redis_client_or_exit(args.redis)
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    app = create_app(
        Store(client, namespace=settings.namespace), trees, token=token,
        poll_interval=settings.api_poll_interval, heartbeat_interval=settings.api_heartbeat_interval,
        metrics_cache_seconds=settings.api_metrics_cache_s,
    )
    if token is None and not _is_loopback(settings.api_host):
        logger.warning("serving /api/* without authentication on %s; set NORTHSTAR_API_TOKEN",
                       settings.api_host)
    sys.stderr.write(
        f"northstar api: {len(trees)} tree(s) on http://{settings.api_host}:{settings.api_port} "
        f"(auth: {'bearer token' if token else 'off'})\n"
    )
    web.run_app(app, host=settings.api_host, port=settings.api_port, print=None, shutdown_timeout=5.0)
    return 0
