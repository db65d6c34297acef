"""An in-process TCP proxy for fault injection: cut or refuse connections.

:class:`TcpProxy` listens on a free 127.0.0.1 port and pipes every accepted
connection to ``upstream`` (one thread per direction). ``cut()`` closes every
live connection at once (both sides see a reset, as when a network path or a
broker dies under a client); ``block()`` refuses new connections (accepted and
reset at once) until ``unblock()``, so clients see a broker that is down.

To put a Kafka client's broker connections through it, start the broker with
its *advertised* listener on the proxy's port (``TansuBroker(advertised_port=
proxy.port)``): metadata then sends every client, bootstrap or not, to the
proxy. Only the process that owns the proxy can cut it; it signals nothing.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from types import TracebackType
from typing import Self

from streamer.testing.process import ServiceError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
_CHUNK = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (SO_LINGER 0), not a graceful FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One proxied connection: the client's socket and ours to upstream."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._closed = threading.Event()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            _reset(self.client)
            _reset(self.upstream)

    def pump(self, source: socket.socket, dest: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                data = source.recv(_CHUNK)
                if not data:
                    break
                dest.sendall(data)
        except OSError:
            pass
        finally:
            self.close()


class TcpProxy:
    """Forwards ``HOST:port`` to ``upstream``; ``cut``, ``block``, ``unblock``.

    Counters: ``accepted`` (connections proxied), ``refused`` (reset while
    blocked), ``cut_connections`` (closed by ``cut``)."""

    def __init__(self, upstream: tuple[str, int], *, port: int = 0) -> None:
        self.upstream = upstream
        self._requested_port = port
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._blocked = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.accepted = 0
        self.refused = 0
        self.cut_connections = 0

    @property
    def port(self) -> int:
        if self._listener is None:
            raise ServiceError("the proxy is not started")
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def live(self) -> int:
        """Connections open now."""
        with self._lock:
            return len(self._pairs)

    def start(self) -> Self:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self._requested_port))
        listener.listen(128)
        self._listener = listener
        self._stopping = False
        self._thread = threading.Thread(target=self._accept_loop, name=f"proxy :{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        listener, self._listener = self._listener, None
        if listener is not None:
            _reset(listener)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.cut()

    def cut(self) -> int:
        """Reset every live connection; return how many were closed."""
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            pair.close()
        self.cut_connections += len(pairs)
        return len(pairs)

    def block(self) -> int:
        """Refuse new connections and cut the live ones (the broker "goes away");
        return how many were cut."""
        with self._lock:
            self._blocked = True
        return self.cut()

    def unblock(self) -> None:
        with self._lock:
            self._blocked = False

    @property
    def blocked(self) -> bool:
        return self._blocked

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping:
            try:
                client, _ = listener.accept()
            except OSError:
                break  # the listener was closed by stop()
            with self._lock:
                blocked = self._blocked
            if blocked:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError as exc:
                logger.debug("proxy: upstream %s unreachable: %s", self.upstream, exc)
                self.refused += 1
                _reset(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, upstream)
            with self._lock:
                if self._blocked:  # blocked while we connected
                    pair.close()
                    self.refused += 1
                    continue
                self._pairs.add(pair)
                self.accepted += 1
            for source, dest in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(pair, source, dest), daemon=True).start()

    def _pump(self, pair: _Pair, source: socket.socket, dest: socket.socket) -> None:
        pair.pump(source, dest)
        with self._lock:
            self._pairs.discard(pair)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
