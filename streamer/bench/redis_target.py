"""The Redis a benchmark writes to: a given URL, or a temporary local
redis-server that is stopped afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis


@contextlib.contextmanager
def bench_redis(url: str | None) -> Iterator[Any]:
    """A redis-py client for ``url``, or for a temporary redis-server when None."""
    if url:
        yield redis.Redis.from_url(url)
        return
    from streamer.testing.redis_server import RedisServer

    with RedisServer() as server:
        yield redis.Redis.from_url(server.url)
