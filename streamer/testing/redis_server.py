"""Local ``redis-server`` processes: one standalone server, or a 3-master Redis Cluster."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamer.testing.process import (
    ManagedProcess,
    ServiceBase,
    ServiceError,
    find_binary,
    free_port,
    wait_until,
)

if TYPE_CHECKING:  # cryptography is only needed by tests that make certificates
    from streamer.testing.tls import TlsFiles

HOST = "127.0.0.1"
_CLUSTER_READY_KEYS = ("cluster_state", "cluster_slots_ok", "cluster_known_nodes")
REDIS_HINT = "install the Debian package: apt-get install -y redis-server (Redis >= 7)"


def redis_server_binary() -> str:
    return find_binary("redis-server", REDIS_HINT)


def redis_cli_binary() -> str:
    return find_binary("redis-cli", REDIS_HINT)


class RedisServer(ServiceBase):
    """A ``redis-server`` on 127.0.0.1 with its data and log in its own directory.

    No persistence by default (``--save '' --appendonly no``); ``appendonly=True``
    turns on the AOF with ``appendfsync always`` so a ``kill()`` loses nothing that
    was acknowledged. ``restart()`` keeps port and data directory. Faults:
    ``terminate()`` (SIGTERM), ``kill()`` (SIGKILL), ``pause()``/``resume()``
    (SIGSTOP/SIGCONT: a server that answers nothing).
    """

    service_name = "redis"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        appendonly: bool = False,
        password: str | None = None,
        username: str | None = None,
        tls: TlsFiles | None = None,
        tls_client_auth: bool = False,
        cluster_enabled: bool = False,
        startup_timeout: float = 20.0,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(workdir, keep_workdir=keep_workdir)
        if username is not None and not password:
            raise ValueError("an ACL user needs a password")
        if tls_client_auth and tls is None:
            raise ValueError("tls_client_auth needs tls")
        self.port = free_port(HOST) if port is None else port
        self.appendonly = appendonly
        self.password = password
        self.username = username
        self.tls = tls
        self.tls_client_auth = tls_client_auth
        self.cluster_enabled = cluster_enabled
        # Redis 7 lets the cluster bus port be chosen; the default (port + 10000)
        # could collide with another process or exceed 65535.
        self.cluster_bus_port = free_port(HOST) if cluster_enabled else None
        self.startup_timeout = startup_timeout
        self._process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return HOST

    @property
    def url(self) -> str:
        """The URL a northstar client needs (credentials and CA file included)."""
        user = quote(self.username, safe="") if self.username else ""
        auth = f"{user}:{quote(self.password, safe='')}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}{HOST}:{self.port}/0"
        return f"rediss://{auth}{HOST}:{self.port}/0?{urlencode(self.tls_query())}"

    def tls_query(self) -> dict[str, str]:
        """redis-py URL query parameters for this server's TLS (empty without TLS)."""
        if self.tls is None:
            return {}
        query = {"ssl_ca_certs": str(self.tls.ca_cert)}
        if self.tls_client_auth:
            query |= {"ssl_certfile": str(self.tls.client_cert), "ssl_keyfile": str(self.tls.client_key)}
        return query

    def client_kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments equivalent to ``url``."""
        kwargs: dict[str, Any] = {"host": HOST, "port": self.port, "password": self.password}
        if self.username:
            kwargs["username"] = self.username
        if self.tls is not None:
            kwargs |= {"ssl": True, **self.tls_query()}
        return kwargs

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def options(self) -> dict[str, str]:
        """redis-server options (each passed as ``--name value``)."""
        options = {
            "port": str(self.port),
            "bind": HOST,
            "dir": str(self.workdir),
            "daemonize": "no",
            "logfile": "",  # log to stdout, which goes to log_path
            "save": "",
            "appendonly": "yes" if self.appendonly else "no",
        }
        if self.appendonly:
            options["appendfsync"] = "always"
        if self.username:
            options["aclfile"] = str(self._write_acl())
        elif self.password:
            options["requirepass"] = self.password
        if self.tls is not None:
            options |= {
                "port": "0",
                "tls-port": str(self.port),
                "tls-cert-file": str(self.tls.server_cert),
                "tls-key-file": str(self.tls.server_key),
                "tls-ca-cert-file": str(self.tls.ca_cert),
                "tls-auth-clients": "yes" if self.tls_client_auth else "no",
            }
            if self.cluster_enabled:
                options |= {"tls-cluster": "yes", "tls-replication": "yes"}
        if self.cluster_enabled:
            options["cluster-enabled"] = "yes"
            options["cluster-config-file"] = str(self.workdir / "nodes.conf")
            options["cluster-port"] = str(self.cluster_bus_port)
            options["cluster-node-timeout"] = "5000"
        return options

    def _write_acl(self) -> Path:
        path = self.workdir / "users.acl"
        assert self.username is not None and self.password is not None
        if any(c.isspace() for c in self.username + self.password):
            raise ValueError("ACL user names and passwords here must not contain whitespace")
        path.write_text(f"user default off\nuser {self.username} on >{self.password} ~* &* +@all\n")
        path.chmod(0o600)
        return path

    def argv(self) -> list[str]:
        argv = [redis_server_binary()]
        for name, value in self.options().items():
            argv += [f"--{name}", value]
        return argv

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new redis-py client on this server (the caller closes it)."""
        return redis.Redis(**self.client_kwargs(), **kwargs)

    def ping(self) -> bool:
        """One PING without client retries, so a probe never outlasts ~1 s."""
        with self.client(
            socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        ) as client:
            return bool(client.ping())

    def _start(self) -> None:
        self._process = ManagedProcess(
            f"redis-server :{self.port}", self.argv(), log_path=self.log_path, cwd=self.workdir
        )
        self._process.start()
        self._process.wait_ready(
            self.ping, self.startup_timeout, f"redis-server on {HOST}:{self.port} (PING)"
        )

    def _stop(self) -> None:
        if self._process is not None:
            if self._process.is_running() and self._process.pid is not None:
                os.kill(self._process.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self._process.stop()
            self._process = None

    def kill(self) -> None:
        """SIGKILL the server (a crash); ``restart()`` brings it back on the same port."""
        if self._process is not None:
            self._process.kill()
            self._process = None

    def terminate(self) -> None:
        """SIGTERM the server (a clean shutdown: with the AOF on, it syncs and
        exits); ``restart()`` brings it back on the same port and data."""
        self._stop()

    def pause(self) -> None:
        """SIGSTOP the server: it keeps its port and connections (the kernel
        still accepts new ones) but answers nothing, like a hung or
        unreachable Redis, until ``resume()``."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a ``pause()``d server: it executes what was sent meanwhile."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        process = self._process
        if process is None or process.pid is None or not process.is_running():
            raise ServiceError(f"redis-server :{self.port} is not running")
        os.kill(process.pid, signum)

    def restart(self) -> None:
        self._stop()
        self._start()


class RedisCluster(ServiceBase):
    """A local Redis Cluster of ``masters`` masters (no replicas), all slots assigned.

    Built with ``redis-cli --cluster create``; ready once every node reports
    ``cluster_state:ok`` and ``cluster_slots_ok:16384``.
    """

    service_name = "redis-cluster"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        masters: int = 3,
        password: str | None = None,
        username: str | None = None,
        tls: TlsFiles | None = None,
        startup_timeout: float = 30.0,
        keep_workdir: bool = False,
    ) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        super().__init__(workdir, keep_workdir=keep_workdir)
        self.password = password
        self.username = username
        self.tls = tls
        self.startup_timeout = startup_timeout
        self.nodes = [
            RedisServer(
                self.workdir / f"node{index}",
                password=password,
                username=username,
                tls=tls,
                cluster_enabled=True,
                startup_timeout=startup_timeout,
            )
            for index in range(masters)
        ]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """URL of the first node; ``redis.cluster.RedisCluster.from_url`` discovers the rest."""
        return self.nodes[0].url

    @property
    def log_path(self) -> Path:
        return self.workdir / "cluster-create.log"

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        self._create()
        for node in self.nodes:
            wait_until(
                functools.partial(_cluster_ok, node, len(self.nodes)),
                self.startup_timeout,
                f"Redis Cluster node {HOST}:{node.port} (cluster_state:ok)",
                interval=0.1,
                log_path=node.log_path,
            )

    def _create(self) -> None:
        argv = [redis_cli_binary()]
        if self.tls is not None:
            argv += ["--tls", "--cacert", str(self.tls.ca_cert)]
        if self.username:
            argv += ["--user", self.username]
        if self.password:
            argv += ["--no-auth-warning", "-a", self.password]
        argv += ["--cluster", "create"]
        argv += [f"{host}:{port}" for host, port in self.startup_nodes]
        argv += ["--cluster-replicas", "0", "--cluster-yes"]
        with self.log_path.open("ab") as log:
            try:
                result = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=self.startup_timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise ServiceError(
                    f"redis-cli --cluster create did not finish in {self.startup_timeout}s"
                ) from exc
        if result.returncode != 0:
            tail = self.log_path.read_text(errors="replace")[-4000:]
            raise ServiceError(
                f"redis-cli --cluster create failed with exit code {result.returncode}:\n{tail}"
            )

    def _stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_ok(node: RedisServer, expected_nodes: int) -> bool:
    with node.client(
        socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
    ) as client:
        info: dict[str, Any] = client.cluster("INFO")
    state = {key: str(info.get(key)) for key in _CLUSTER_READY_KEYS}
    ready = (
        state["cluster_state"] == "ok"
        and state["cluster_slots_ok"] == "16384"
        and state["cluster_known_nodes"] == str(expected_nodes)
    )
    if not ready:
        # Raised, not returned, so a timeout quotes the last state seen.
        raise ServiceError(f"CLUSTER INFO says {state}")
    return True
