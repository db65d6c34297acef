"""A producer thread that keeps a stream coming while a test injects faults.

:class:`ChunkedProducer` cuts each topic's lines into ``chunks`` pieces and
sends piece ``i`` of every topic, sleeps ``interval`` seconds, sends piece
``i + 1``..., from a daemon thread, in log order per topic. The main thread
meanwhile stops, freezes or restarts services; ``join()`` re-raises whatever
the thread failed with, so a producer error can never pass for a fault.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from streamer.kafka.produce import produce_sync


def split(lines: Sequence[bytes], n: int) -> list[list[bytes]]:
    """``lines`` in ``n`` consecutive pieces of (nearly) equal size, none empty."""
    if n < 1:
        raise ValueError(f"chunks must be >= 1, got {n}")
    size = max(1, -(-len(lines) // n))
    return [list(lines[i : i + size]) for i in range(0, len(lines), size)]


class ChunkedProducer:
    """Produces ``{topic: lines}`` in ``chunks`` pieces, ``interval`` s apart."""

    def __init__(
        self,
        client: Mapping[str, Any],
        lines: Mapping[str, Sequence[bytes]],
        *,
        chunks: int,
        interval: float,
    ) -> None:
        self.client = dict(client)
        self.pieces = {topic: split(ls, chunks) for topic, ls in lines.items()}
        self.expected = sum(len(ls) for ls in lines.values())
        self.interval = interval
        self.produced = 0
        self.chunks_sent = 0
        self.finished_at: float | None = None  # time.monotonic() of the last send
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chunked-producer", daemon=True)

    def start(self) -> ChunkedProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            rounds = max((len(p) for p in self.pieces.values()), default=0)
            for i in range(rounds):
                for topic, pieces in self.pieces.items():
                    if i < len(pieces):
                        self.produced += produce_sync(pieces[i], topic, self.client)
                self.chunks_sent += 1
                if i + 1 < rounds:
                    time.sleep(self.interval)
            self.finished_at = time.monotonic()
        except BaseException as exc:  # re-raised by join() in the test's thread
            self._error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float) -> int:
        """Wait for the last piece; raise the thread's error, or if it is still
        running after ``timeout`` s, or if fewer lines were sent than given.
        Returns how many lines were produced."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the producer thread is still sending after {timeout:.0f}s")
        if self._error is not None:
            raise self._error
        if self.produced != self.expected:
            raise AssertionError(f"produced {self.produced} of {self.expected} lines")
        return self.produced
