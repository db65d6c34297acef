"""The Redis a benchmark writes to: a given URL, or a temporary local
redis-server that is stopped afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from streamer.state.connection import redis_from_url


@contextlib.contextmanager
def bench_redis(url: str | None) -> Iterator[Any]:
    """A redis-py client for ``url`` (TLS and credentials as in the URL), or for a temporary redis-server when None."""
    if url:
        yield redis_from_url(url)
        return
    from streamer.testing.redis_server import RedisServer

    with RedisServer() as server:
        yield redis_from_url(server.url)

