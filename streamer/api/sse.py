"""Server-sent events: ``event: snapshot`` each time a tree's snapshot changes.

One :class:`SnapshotHub` per process polls Redis (every ``poll_interval``
seconds, and only while someone listens) for snapshots whose ``evaluated_at``
changed, and hands them to every subscription. However many clients listen,
Redis sees one pipelined read per interval. A subscription keeps only the
latest undelivered snapshot per tree, so a slow client skips intermediate
snapshots instead of growing a queue.

A stream starts with the current snapshot of every tree it follows, then
sends changes, and a comment line every ``heartbeat_interval`` seconds so
that proxies keep the connection open and a vanished client is noticed. It
ends when the client disconnects or the application shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import orjson
import redis
from aiohttp import web

from streamer.api import reads
from streamer.state.store import Store

logger = logging.getLogger(__name__)

RETRY_MS = 2000  # how long browsers wait before reconnecting
_DISCONNECT_CHECK_S = 1.0


class Subscription:
    """The snapshots waiting for one stream, the latest per tree."""

    def __init__(self, trees: frozenset[str]) -> None:
        self.trees = trees
        self.ready = asyncio.Event()
        self._pending: dict[str, bytes] = {}

    def offer(self, tree: str, blob: bytes) -> None:
        if tree in self.trees:
            self._pending[tree] = blob
            self.ready.set()

    def take(self) -> list[tuple[str, bytes]]:
        items = list(self._pending.items())
        self._pending.clear()
        self.ready.clear()
        return items


class SnapshotHub:
    """Polls snapshots for its subscriptions (see the module docstring)."""

    def __init__(self, store: Store, trees: Iterable[str], poll_interval: float) -> None:
        self.store = store
        self.trees = tuple(trees)
        self.poll_interval = poll_interval
        self.closed = False
        self._subscriptions: set[Subscription] = set()
        self._listening = asyncio.Event()
        # tree -> (evaluated_at, snapshot JSON) as last read; emptied when idle
        # so that the next first subscriber never starts from a stale state
        self._latest: dict[str, tuple[int, bytes]] = {}
        self._failing = False

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, trees: frozenset[str]) -> Subscription:
        subscription = Subscription(trees)
        for tree, (_, blob) in self._latest.items():
            subscription.offer(tree, blob)
        self._subscriptions.add(subscription)
        self._listening.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        if not self._subscriptions:
            self._listening.clear()

    def close(self) -> None:
        """Stop every stream (application shutdown)."""
        self.closed = True
        for subscription in self._subscriptions:
            subscription.ready.set()

    async def run(self) -> None:
        """Poll until cancelled (the application's cleanup cancels it)."""
        while not self.closed:
            if not self._subscriptions:
                self._latest.clear()
                await self._listening.wait()
                continue
            try:
                await self.poll()
            except Exception:  # a bug must not silently end every stream's updates
                if not self._failing:
                    logger.exception("snapshot stream poll failed")
                self._failing = True
            await asyncio.sleep(self.poll_interval)

    async def poll(self) -> None:
        try:
            raw = await asyncio.to_thread(reads.raw_snapshots, self.store, self.trees)
        except redis.exceptions.RedisError as exc:
            if not self._failing:  # once per outage, not every half second
                logger.warning("snapshot stream cannot read Redis: %s", exc)
            self._failing = True
            return
        if self._failing:
            logger.warning("snapshot stream polls again")
            self._failing = False
        for tree, blob in raw.items():
            if blob is None:
                continue
            try:
                evaluated_at = int(orjson.loads(blob)["evaluated_at"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                logger.warning("skipping malformed snapshot of tree %s", tree)
                continue
            known = self._latest.get(tree)
            if known is not None and known[0] == evaluated_at:
                continue
            self._latest[tree] = (evaluated_at, blob)
            for subscription in self._subscriptions:
                subscription.offer(tree, blob)


def _event(blob: bytes) -> bytes:
    # orjson never emits a newline, so the JSON is one `data:` line
    return b"event: snapshot\ndata: " + blob + b"\n\n"


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def stream(request: web.Request, hub: SnapshotHub, trees: frozenset[str],
                 heartbeat_interval: float) -> web.StreamResponse:
    """Serve one event stream of ``trees`` until the client or the app goes."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    })
    await response.prepare(request)
    subscription = hub.subscribe(trees)
    loop = asyncio.get_running_loop()
    try:
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        last_write = loop.time()
        while not hub.closed and not _gone(request):
            wait = min(_DISCONNECT_CHECK_S, last_write + heartbeat_interval - loop.time())
            if wait <= 0:
                await response.write(b": heartbeat\n\n")
                last_write = loop.time()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscription.ready.wait(), wait)
            if hub.closed:
                break
            for _, blob in subscription.take():
                await response.write(_event(blob))
                last_write = loop.time()
    except ConnectionResetError:  # the client went away mid-write
        pass
    finally:
        hub.unsubscribe(subscription)
    return response
