"""Helpers shared by subcommands: usage errors, loading trees, Redis clients."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from streamer.spec.model import Tree

USAGE_EXIT = 2
FAILURE_EXIT = 1


def usage_error(message: str) -> int:
    """Print a usage error and return exit code 2 (bad usage)."""
    sys.stderr.write(f"northstar: error: {message}\n")
    return USAGE_EXIT


def settings_problems(exc: Any) -> str:
    """A pydantic ``ValidationError`` of settings as one line: each field and
    what is wrong with it, never the value (it may be a secret)."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def fail(message: str, code: int = FAILURE_EXIT) -> NoReturn:
    sys.stderr.write(f"northstar: {message}\n")
    raise SystemExit(code)


def load_trees_or_exit(paths: Sequence[Path], only: Sequence[str] | None = None) -> list[Tree]:
    """Load and validate definitions; exit 2 on a missing path, 1 on invalid definitions."""
    from streamer.spec.loader import load_definitions

    for path in paths:
        if not path.exists():
            fail(f"no such definitions path: {path}", USAGE_EXIT)
    result = load_definitions(list(paths))
    errors = [i for i in result.issues if i.severity == "error"]
    if errors:
        for issue in errors:
            sys.stderr.write(f"{issue}\n")
        fail(f"{len(errors)} error(s) in definitions; run `northstar validate` for details")
    trees = [loaded.tree for loaded in result.trees]
    if only:
        known = {t.tree for t in trees}
        missing = sorted(set(only) - known)
        if missing:
            fail(
                f"unknown tree(s) {', '.join(missing)}; known: {', '.join(sorted(known))}",
                USAGE_EXIT,
            )
        trees = [t for t in trees if t.tree in only]
    if not trees:
        fail("no trees found in " + ", ".join(map(str, paths)))
    return trees


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print)."""
    from streamer.state.connection import redact_url as redact

    return redact(url)


def redis_url(explicit: str | None) -> str:
    return explicit or os.environ.get("NORTHSTAR_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_client_or_exit(explicit: str | None, stack: contextlib.ExitStack | None = None) -> Any:
    """A connected redis-py client (cluster-aware), or exit 1 with the reason.

    With no URL given (no ``--redis``, no ``$NORTHSTAR_REDIS_URL``) and a
    ``stack``, a temporary local redis-server is started and stopped with it."""
    import redis

    from streamer.state.connection import explain, redis_from_url

    if explicit is None and "NORTHSTAR_REDIS_URL" not in os.environ and stack is not None:
        from streamer.testing import MissingBinaryError, RedisServer

        try:
            server = stack.enter_context(RedisServer())
        except MissingBinaryError as exc:
            fail(f"{exc}; or pass --redis URL")
        sys.stderr.write(f"northstar: using a temporary redis-server at {server.url}\n")
        explicit = server.url
    url = redis_url(explicit)
    try:
        return redis_from_url(url)
    except (redis.exceptions.RedisError, ValueError) as exc:
        fail(explain(exc, url))
