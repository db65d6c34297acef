"""Running blocking work in a thread pool of one's own (not asyncio's shared
default pool, where a lane's stage or the evaluator could wait for a thread
another holds through a Redis round trip: docs/performance.md, Freshness)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")


async def run_in(executor: Executor, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in one of ``executor``'s threads."""
    return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(fn, *args))
