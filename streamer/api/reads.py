"""Blocking Redis reads of the read side. The store holds a synchronous
redis-py client (shared with the worker and the exporter), so the API runs
these in worker threads (``asyncio.to_thread``); each is one round trip.

Snapshot keys of different trees live in different Cluster slots
(``{<tree>}``), so several are read with a non-transactional pipeline, which
redis-py routes per slot, rather than ``MGET``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from streamer.evaluate.snapshot import Snapshot
from streamer.state.store import Store


def ping(store: Store) -> bool:
    return bool(store.client.ping())


def raw_snapshots(store: Store, trees: Sequence[str]) -> dict[str, bytes | None]:
    """The stored snapshot JSON of every tree in ``trees`` (None when absent)."""
    if not trees:
        return {}
    pipe = store.client.pipeline(transaction=False)
    for tree in trees:
        pipe.get(store.keys.tree(tree, "snapshot"))
    replies: list[Any] = pipe.execute()
    return {tree: (bytes(raw) if raw else None) for tree, raw in zip(trees, replies, strict=True)}


def snapshots(store: Store, trees: Sequence[str]) -> dict[str, Snapshot | None]:
    """The latest snapshot of every tree in ``trees`` (None when there is none yet)."""
    out: dict[str, Snapshot | None] = {}
    for tree, raw in raw_snapshots(store, trees).items():
        out[tree] = orjson.loads(raw) if raw else None
    return out


def history(store: Store, tree: str, limit: int) -> list[Snapshot]:
    """The newest ``limit`` snapshots of ``tree``'s history, oldest first."""
    members: list[Any] = store.client.zrange(store.keys.tree(tree, "history"), -limit, -1)
    return [orjson.loads(member) for member in members]
