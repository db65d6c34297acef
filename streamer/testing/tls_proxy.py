"""A TLS-terminating TCP proxy for tests: TLS on ``port``, plain TCP to ``upstream``.

Used in front of Tansu, whose own TLS (``--cert``/``--key``) is unusable in
the shipped 0.6.0 (see :class:`streamer.testing.TansuBroker`). The server side
is Python's ``ssl`` (OpenSSL): clients still do a real handshake, verify the
certificate chain and host name against the CA they were given, and, with
``require_client_cert``, present a client certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path

from streamer.testing.process import ServiceBase, ServiceError, free_port
from streamer.testing.tls import TlsFiles

HOST = "127.0.0.1"


class TlsProxy(ServiceBase):
    service_name = "tls-proxy"

    def __init__(
        self,
        upstream: tuple[str, int],
        tls: TlsFiles,
        *,
        port: int | None = None,
        require_client_cert: bool = False,
        workdir: Path | None = None,
    ) -> None:
        super().__init__(workdir)
        self.upstream = upstream
        self.tls = tls
        self.port = free_port(HOST) if port is None else port
        self.require_client_cert = require_client_cert
        self.handshake_failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "tls-proxy.log"

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
        if self.require_client_cert:
            context.load_verify_locations(self.tls.ca_cert)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def _exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        # failed handshakes (untrusted client, plaintext client) end up here
        self.handshake_failures += 1
        with self.log_path.open("a") as log:
            log.write(f"{context.get('message')}: {context.get('exception')}\n")

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._exception)
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            try:
                self._server = await asyncio.start_server(
                    self._handle, HOST, self.port, ssl=self.context(), ssl_handshake_timeout=10
                )
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(serve())
            if not failure:
                loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"tls-proxy:{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise ServiceError(f"TLS proxy on {HOST}:{self.port} did not start: {failure}")

    def _stop(self) -> None:
        loop, thread, server = self._loop, self._thread, self._server
        if loop is None or thread is None:
            return
        if server is not None:
            loop.call_soon_threadsafe(server.close)

        def stop_all() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.stop()

        loop.call_soon_threadsafe(stop_all)
        thread.join(10)
        self._loop = self._thread = self._server = None
