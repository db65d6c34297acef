"""Lets a lane's judge and apply run their Python before batch preparation does.

A worker's threads share one GIL. A batch's commit is a chain: verdicts
(Redis, the lane's judge stage), then the pre-aggregation (Python), then the
apply (Redis; both the lane's apply stage). While its Python runs, the next batches' preparation (decoding, also Python)
competes for the same GIL and stretches the chain, although preparation has
time to spare (docs/performance.md, proposal 21). A commit brackets its
Python part with ``enter()`` and ``leave()``; preparation calls ``defer()``
between chunks and waits (GIL released) while any commit is in such a part,
at most ``max_wait_s`` at a time, so that it never starves. The worker's
``NORTHSTAR_COMMIT_FIRST`` turns it off.
"""

from __future__ import annotations

import threading


class Courtesy:
    def __init__(self, max_wait_s: float = 0.05) -> None:
        self.max_wait_s = max_wait_s
        self._urgent = 0
        self._lock = threading.Lock()
        self._clear = threading.Event()
        self._clear.set()

    def enter(self) -> None:
        """A commit's Python starts: preparation waits from its next ``defer``."""
        with self._lock:
            self._urgent += 1
            self._clear.clear()

    def leave(self) -> None:
        with self._lock:
            self._urgent -= 1
            if self._urgent == 0:
                self._clear.set()

    def defer(self) -> bool:
        """Wait while a commit's Python runs, at most ``max_wait_s``; whether
        preparation may go on because none runs (False: it waited in vain)."""
        if self._clear.is_set():
            return True
        return self._clear.wait(self.max_wait_s)

    @property
    def urgent(self) -> int:
        """Commits whose Python runs now."""
        return self._urgent
