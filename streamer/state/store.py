"""The Redis store: lateness/duplicate verdicts, unit applies guarded by
applied offsets, and reading raw state for evaluation.

Scripts are loaded once (``SCRIPT LOAD``) and called with ``EVALSHA`` inside
pipelines; a Redis that lost its script cache (restart) answers NOSCRIPT and
the store reloads and retries once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import orjson
import redis

from streamer.state.keys import Keys
from streamer.state.scripts import APPLY_KINDS, apply_source, labels_source, verdict_source
from streamer.windows.units import Unit

RedisClient = Any  # redis.Redis | redis.cluster.RedisCluster (same command API)

pack = msgspec.msgpack.Encoder().encode
"""How the scripts' bulk arguments (verdict requests, unit payloads) travel:
MessagePack, which Redis's bundled ``cmsgpack.unpack`` decodes in about
half the time ``cjson.decode`` takes (docs/performance.md, proposal 37).
MessagePack has no null inside an array (Lua's ``nil`` leaves a hole), so a
payload carries ``False`` where it means "none". The small ``params`` stay
JSON."""


def born_field(partition: str) -> str:
    """Applied-hash field: the offset of ``partition`` after which a unit's live
    history starts (written when the unit first applies in that partition)."""
    return f"born:{partition}"


def backfill_field(partition: str) -> str:
    """Applied-hash field: how far a backfill applied ``partition`` to the unit
    (its own exactly-once guard, distinct from the live one)."""
    return f"bf:{partition}"


def verdict_events(rows: Iterable[Sequence[Any]]) -> list[Any]:
    """The events of a verdict request: (insert id or "", event time ms,
    offset) rows laid end to end in one flat list, the layout the verdict
    script decodes without a table per event."""
    return [x for row in rows for x in row]


class StateError(Exception):
    """Base of the state package's errors."""


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode("utf-8")).hexdigest()


class _Recorder:
    """Stands in for a pipeline: records calls to replay per cluster node."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return record


class Store:
    def __init__(self, client: RedisClient, namespace: str = "ns", verdict_namespace: str | None = None) -> None:
        self.client = client
        self.keys = Keys(namespace)
        # watermarks and insert ids: the namespace's own, or a scratch copy (a backfill
        # re-derives verdicts without touching the live ones: streamer/backfill.py)
        self.verdict_keys = Keys(verdict_namespace or namespace)
        self._sources = {kind: apply_source(kind) for kind in APPLY_KINDS}
        self._sources["verdict"] = verdict_source()
        self._sources["labels"] = labels_source()
        self._shas = {name: _sha(src) for name, src in self._sources.items()}
        self.load_scripts()

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.client, redis.cluster.RedisCluster)

    def load_scripts(self) -> None:
        if self.is_cluster:
            for node in self.client.get_primaries():
                connection = self.client.get_redis_connection(node)
                for source in self._sources.values():
                    connection.script_load(source)
            return
        for source in self._sources.values():
            self.client.script_load(source)

    def execute(self, build: Any) -> list[Any]:
        """Run the commands ``build(pipe)`` queues in one round trip (per node in a
        Cluster): keys may belong to any slots."""
        return self._execute(build)

    def _execute(self, build: Any, *, block: bool = False) -> list[Any]:
        """Run a pipeline built by ``build(pipe)``; reload scripts once on NOSCRIPT.
        ``block``: on a standalone Redis, as one MULTI/EXEC block, which Redis
        runs without taking other clients' commands in between (a Cluster
        refuses a block over several slots: there it is a plain pipeline)."""
        for attempt in (1, 2):
            try:
                if self.is_cluster:
                    return self._execute_per_node(build)
                pipe = self.client.pipeline(transaction=block)
                build(pipe)
                return list(pipe.execute())
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self.load_scripts()
        raise AssertionError("unreachable")

    def node_client(self, key: str) -> Any:
        """A plain client for the node owning ``key`` (the client itself when
        standalone): for transactions and scripts within one slot."""
        if not self.is_cluster:
            return self.client
        return self.client.get_redis_connection(self.client.get_node_from_key(key))

    def _execute_per_node(self, build: Any) -> list[Any]:
        """Redis Cluster: redis-py refuses EVALSHA in cluster pipelines, so
        commands are grouped by the node owning their first key and sent as
        one plain pipeline per node (one round trip per node involved)."""
        recorder = _Recorder()
        build(recorder)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for index, (name, args, _) in enumerate(recorder.calls):
            key = args[2] if name == "evalsha" else args[0]
            node = self.client.get_node_from_key(key)
            by_node.setdefault(node.name, (node, []))[1].append(index)
        replies: list[Any] = [None] * len(recorder.calls)
        for node, indexes in by_node.values():
            pipe = self.client.get_redis_connection(node).pipeline(transaction=False)
            for i in indexes:
                name, args, kwargs = recorder.calls[i]
                getattr(pipe, name)(*args, **kwargs)
            for i, reply in zip(indexes, pipe.execute(), strict=True):
                replies[i] = reply
        return replies

    # ------------------------------------------------------------------ write path
    def verdicts_and_offsets(
        self,
        requests: Sequence[tuple[str, int, int, Sequence[Any]]],
        partition: str,
        units: Sequence[Unit],
        field: str | None = None,
    ) -> tuple[list[tuple[str, int | None, int | None]], list[int]]:
        """One round trip: for every (tree, horizon_ms, dedupe_ms, events) (events
        flat, as ``verdict_events`` lays them out) the verdict string, the partition's stored watermark and the lowest stored
        watermark of the tree's partitions; for every unit its applied
        offset (field ``field`` of its applied hash, default ``partition``; -1
        when none)."""
        verdicts, offsets, _ = self.first_round_trip(requests, partition, units, (), field)
        return verdicts, offsets

    def first_round_trip(
        self,
        requests: Sequence[tuple[str, int, int, Sequence[Any]]],
        partition: str,
        units: Sequence[Unit],
        scripts: Sequence[tuple[str, str, Sequence[Any]]] = (),
        field: str | None = None,
    ) -> tuple[list[tuple[str, int | None, int | None]], list[int], list[Any]]:
        """``verdicts_and_offsets`` plus, in the same round trip, the replies of
        ``scripts``: (script name, its one key, its arguments) calls, e.g. the
        breakdown label admissions (``labels``)."""

        def build(pipe: Any) -> None:
            for tree, horizon, dedupe, events in requests:
                pipe.evalsha(
                    self._shas["verdict"],
                    6,
                    self.verdict_keys.watermark(tree),
                    self.verdict_keys.insert_ids(tree),
                    self.verdict_keys.insert_id_gc(tree),
                    self.verdict_keys.insert_id_days(tree),
                    self.verdict_keys.verdict_log(tree, partition),
                    self.verdict_keys.judged_watermark(tree),
                    partition,
                    horizon,
                    dedupe,
                    pack(events),
                )
            for unit in units:
                pipe.hget(self.keys.applied(unit), field or partition)
            for name, key, args in scripts:
                pipe.evalsha(self._shas[name], 1, key, *args)

        replies = self._execute(build)
        verdicts: list[tuple[str, int | None, int | None]] = []
        for reply in replies[: len(requests)]:
            text, stored, low = (v.decode() if isinstance(v, bytes) else v for v in reply)
            verdicts.append((text, int(stored) if stored else None, int(low) if low else None))
        after = len(requests) + len(units)
        offsets = [int(v) if v is not None else -1 for v in replies[len(requests) : after]]
        return verdicts, offsets, replies[after:]

    def apply(
        self,
        calls: Sequence[tuple[Unit, int, int, dict[str, Any], dict[str, Any]]],
        partition: str,
        watermarks: Sequence[tuple[str, int]] = (),
        *,
        field: str | None = None,
        born: Sequence[tuple[Unit, int]] = (),
        expire: Sequence[tuple[str, int]] = (),
    ) -> list[bool]:
        """Apply (unit, expected_offset, new_offset, payload, params) calls in one
        round trip (standalone: one MULTI/EXEC block, so no other client sees
        part of it); each returns False when the unit's applied offset (field
        ``field`` of its applied hash, default ``partition``) was not
        ``expected_offset`` any more (another worker got there first). Watermarks
        ``(tree, wm)`` are advanced after the applies (standalone: same round trip,
        in order; cluster: a second round trip). ``born`` ``(unit, offset)``:
        record, unless already recorded, that the unit's history in ``partition``
        starts after ``offset`` (queued before the applies). ``expire``
        ``(key, ttl_ms)``: PEXPIREs queued after the applies."""

        def build(pipe: Any) -> None:
            for unit, offset in born:
                pipe.hsetnx(self.keys.applied(unit), born_field(partition), str(offset))
            for unit, expected, new, payload, params in calls:
                pipe.evalsha(
                    self._shas[unit.kind],
                    1,
                    self.keys.applied(unit),
                    field or partition,
                    str(expected),
                    str(new),
                    pack(payload),
                    orjson.dumps(params),
                )
            if not self.is_cluster:
                self._advance(pipe, partition, watermarks)
            for key, ttl_ms in expire:
                pipe.pexpire(key, ttl_ms)

        # one block: Redis runs a lane's apply, the step its next batch waits
        # on, in one go instead of interleaved with the other lanes' requests
        # (docs/performance.md, proposal 40)
        results = self._execute(build, block=True)[len(born) : len(born) + len(calls)]
        ok = [int(r) == 1 for r in results]
        if self.is_cluster and watermarks and all(ok):
            self._execute(lambda pipe: self._advance(pipe, partition, watermarks))
        return ok

    def _advance(self, pipe: Any, partition: str, watermarks: Sequence[tuple[str, int]]) -> None:
        for tree, wm in watermarks:
            pipe.hset(self.verdict_keys.watermark(tree), partition, str(wm))

    def applied_offsets(self, units: Sequence[Unit], partition: str, field: str | None = None) -> list[int]:
        def build(pipe: Any) -> None:
            for unit in units:
                pipe.hget(self.keys.applied(unit), field or partition)

        return [int(v) if v is not None else -1 for v in self._execute(build)]

    # ------------------------------------------------------------------ read path
    def read_raw(self, requests: Sequence[tuple[str, Unit, Any]]) -> list[Any]:
        """Pipelined raw reads: ("hgetall", unit, suffix) | ("hmget", unit, (suffix, fields))
        | ("pfcount", unit, [suffixes]) | ("zpercentile", unit, suffix)."""

        def build(pipe: Any) -> None:
            for op, unit, arg in requests:
                if op == "hgetall":
                    pipe.hgetall(self.keys.unit(unit, arg))
                elif op == "hmget":
                    suffix, fields = arg
                    pipe.hmget(self.keys.unit(unit, suffix), fields)
                elif op == "pfcount":
                    keys = [self.keys.unit(unit, s) for s in arg]
                    pipe.pfcount(*keys)
                elif op == "zall":
                    pipe.zcard(self.keys.unit(unit, arg))
                else:
                    raise StateError(f"unknown read {op}")

        return self._execute(build)

    def zrange_by_rank(self, unit: Unit, suffix: str, lo: int, hi: int) -> list[float]:
        values = self.client.zrange(self.keys.unit(unit, suffix), lo, hi, withscores=True)
        return [float(score) for _, score in values]

    def delete_namespace(self) -> int:
        """Delete every key of this namespace (replay starts from scratch)."""
        deleted = 0
        for key in self.client.scan_iter(match=self.keys.pattern(), count=1000):
            deleted += int(self.client.delete(key))
        return deleted
