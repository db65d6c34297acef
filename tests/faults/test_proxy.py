"""The fault-injection proxy itself (streamer/testing/proxy.py) against a
local echo server: it forwards, ``cut`` resets live connections, ``block``
refuses new ones until ``unblock``."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from streamer.testing import TcpProxy, wait_until


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def pump(c: socket.socket = conn) -> None:
                with c:
                    while data := c.recv(4096):
                        c.sendall(data)

            threading.Thread(target=pump, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()
    finally:
        server.close()


def roundtrip(port: int, payload: bytes = b"ping") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(payload)
    assert sock.recv(100) == payload
    return sock


def test_forwards_cuts_and_blocks(echo: tuple[str, int]) -> None:
    with TcpProxy(echo) as proxy:
        live = roundtrip(proxy.port)
        assert proxy.live == 1 and proxy.accepted == 1

        assert proxy.cut() == 1
        with pytest.raises(OSError):  # reset by the proxy: the next read fails or sees EOF
            if live.recv(100) == b"":
                raise ConnectionResetError("closed")
        live.close()
        wait_until(lambda: proxy.live == 0, 5, "the cut connection gone")

        proxy.block()
        with pytest.raises(OSError):
            # the reset may come before connect() returns (EPIPE/ECONNRESET
            # there), or on the first send or read after it
            refused = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            try:
                refused.sendall(b"x" * 100_000)
                if refused.recv(100) == b"":
                    raise ConnectionResetError("closed")
            finally:
                refused.close()
        wait_until(lambda: proxy.refused >= 1, 5, "the blocked connection counted as refused")

        proxy.unblock()
        roundtrip(proxy.port, b"again").close()
        assert proxy.accepted == 2
