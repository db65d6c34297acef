"""The hardware ceiling on this machine: what a Python process can do with the
same topic and the same Redis when it does nothing else.

- consumption: aiokafka ``getmany(max_records=10000)`` over every partition of
  the topic, with the lean records the worker reads too
  (``streamer/kafka/lean.py``), each value decoded with orjson, nothing else;
- Redis: pipelined ``HINCRBY`` from one redis-py client (the per-command
  client cost is what limits it, not the server);
- the floor: the consumption loop plus the least Redis state that any exact
  implementation of the education tree over this Redis must write
  (``floor_rate``). Everything northstar does beyond it (lateness, windows,
  retention, the funnel, exactly-once bookkeeping) is left out, so no such
  implementation can run faster than the floor on the same machine.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from streamer.bench.cpu import Probe, per_event


@dataclass(frozen=True)
class Consumption:
    records: int
    seconds: float
    last_offsets: dict[int, int]
    """Offset of the last record read, per partition (the topic's end)."""
    cpu: dict[str, float | None] | None = None
    """CPU per record of this process, Redis and the broker (``cpu.per_event``), when probed."""

    @property
    def events_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def consume_rate(
    bootstrap: str, topic: str, records: int, timeout: float = 300.0, probe: Probe | None = None
) -> Consumption:
    """Read ``records`` records of ``topic`` from the beginning with aiokafka
    batches and decode every value; timed from the first fetch to the last
    record (and the CPU of this process, Redis and the broker over the same
    span when a ``probe`` is given)."""
    return asyncio.run(_consume(bootstrap, topic, records, timeout, probe))


async def _consume(bootstrap: str, topic: str, records: int, timeout: float, probe: Probe | None) -> Consumption:
    last: dict[int, int] = {}
    seen = 0
    loads = orjson.loads
    before = probe.sample() if probe else None
    started = time.perf_counter()
    async for partition, batch in _batches(bootstrap, topic, records, timeout):
        for record in batch:
            loads(record.value)
        seen += len(batch)
        last[partition] = batch[-1].offset
    seconds = time.perf_counter() - started
    cpu = per_event(before, probe.sample(), seen) if probe and before else None
    return Consumption(seen, seconds, last, cpu)


async def _batches(bootstrap: str, topic: str, records: int, timeout: float) -> AsyncIterator[tuple[int, list[Any]]]:
    """(partition, records) batches of ``topic`` from the beginning, from
    ``getmany(max_records=10000)`` over every partition, until ``records``
    records were read; an error once ``timeout`` seconds have passed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streamer.kafka.lean import lean

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    lean(consumer)  # the records the worker reads: a ceiling must not be slower than the worker's own reads
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            raise RuntimeError(f"topic {topic!r} has no partitions")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        deadline = time.perf_counter() + timeout
        while seen < records:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"read {seen} of {records} records of {topic!r} in {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, batch in batches.items():
                if batch:
                    seen += len(batch)
                    yield tp.partition, batch
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class RedisWrites:
    commands: int
    seconds: float
    pipeline: int

    @property
    def commands_per_s(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0


def redis_pipeline_rate(client: Any, seconds: float = 2.0, pipeline: int = 10_000) -> RedisWrites:
    """Pipelined ``HINCRBY`` on random fields of a few hashes for about ``seconds``."""
    rng = random.Random(1)
    keys = [f"bench:ceiling:{i}" for i in range(16)]
    fields = [[rng.choice(keys), f"f{rng.randrange(100_000)}"] for _ in range(pipeline)]
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        pipe = client.pipeline(transaction=False)
        for key, field in fields:
            pipe.hincrby(key, field, 1)
        pipe.execute()
        done += pipeline
    elapsed = time.perf_counter() - started
    client.delete(*keys)
    return RedisWrites(done, elapsed, pipeline)


# Dedupe answered per insert id of an event the tree reads: any exact dedupe
# across partitions and restarts must ask shared state whether each such id
# is new, and record it (the ids of other events do not count: semantics.md §2).
_FLOOR_DEDUPE = """
local out = {}
for i, id in ipairs(ARGV) do out[i] = redis.call('SADD', KEYS[1], id) end
return #out
"""
DAY_MS = 86_400_000
FUNNEL_START, FUNNEL_END = "signed_up", "lesson_completed"  # the education tree's funnel
READ_NAMES = frozenset(
    {"lesson_completed", "lesson_abandoned", "signed_up", "subscription_purchased", "refund_issued"}
)
"""The event names the education tree's measures read (``tests/perf`` checks
them against the tree's units)."""


@dataclass(frozen=True)
class Floor:
    records: int
    seconds: float
    insert_ids: int
    """Distinct insert ids in Redis afterwards (the dedupe set's size)."""
    user_days: int
    """(user, UTC day) pairs in Redis afterwards (the distinct-count sets' sizes)."""
    starts: int
    """Users with a funnel start in Redis afterwards."""
    cpu: dict[str, float | None] | None = None
    """CPU per record of this process, Redis and the broker (``cpu.per_event``), when probed."""

    @property
    def events_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def floor_rate(
    bootstrap: str, topic: str, records: int, redis_url: str, timeout: float = 300.0, probe: Probe | None = None
) -> Floor:
    """The ceiling's loop plus, per partition batch, the least state the
    education tree needs in Redis: one script call that adds every insert id
    to a set answering per id (dedupe); one variadic ``SADD`` per UTC day of
    the batch's users (the distinct learners, whose day sets retention and
    learning days can share); for the time-to-first-lesson funnel, one
    ``HSET`` of the batch's sign-ups (user -> time) and one ``HMGET`` of the
    starts of its lesson completers. Sums and counts per day, lateness,
    windows and exactly-once bookkeeping are left out. One batch's writes are in
    flight while the next batch is read and decoded; timed from the first
    fetch to the last write's reply (and the CPU of this process, Redis and
    the broker over the same span when a ``probe`` is given). Uses the keys
    ``bench:floor:*`` of ``redis_url`` and deletes them afterwards."""
    return asyncio.run(_floor(bootstrap, topic, records, redis_url, timeout, probe))


async def _floor(
    bootstrap: str, topic: str, records: int, redis_url: str, timeout: float, probe: Probe | None
) -> Floor:
    import redis.asyncio as aredis

    client = aredis.from_url(redis_url)
    ids_key, day_prefix, start_key = "bench:floor:ids", "bench:floor:day:", "bench:floor:start"
    try:
        await _delete_floor_keys(client)
        dedupe = await client.script_load(_FLOOR_DEDUPE)

        async def write(ids: list[Any], days: dict[int, set[Any]], starts: dict[Any, int], ends: set[Any]) -> None:
            pipe = client.pipeline(transaction=False)
            if ids:
                pipe.evalsha(dedupe, 1, ids_key, *ids)
            for day, users in days.items():
                pipe.sadd(f"{day_prefix}{day}", *users)
            if starts:
                pipe.hset(start_key, mapping=starts)
            if ends:
                pipe.hmget(start_key, list(ends))
            await pipe.execute()

        seen = 0
        loads = orjson.loads
        in_flight: asyncio.Task[None] | None = None
        before = probe.sample() if probe else None
        started = time.perf_counter()
        async for _, batch in _batches(bootstrap, topic, records, timeout):
            ids: list[Any] = []
            days: dict[int, set[Any]] = {}
            starts: dict[Any, int] = {}
            ends: set[Any] = set()
            for record in batch:
                event = loads(record.value)
                user, t, name = event.get("user_id"), event.get("time"), event.get("event_type")
                if name in READ_NAMES and event.get("insert_id"):
                    ids.append(event["insert_id"])
                if user and type(t) is int:
                    if name == FUNNEL_START:
                        starts.setdefault(user, t)
                    elif name == FUNNEL_END:
                        ends.add(user)
                        days.setdefault(t // DAY_MS, set()).add(user)
            seen += len(batch)
            if in_flight is not None:
                await in_flight
            in_flight = asyncio.create_task(write(ids, days, starts, ends))
        if in_flight is not None:
            await in_flight
        seconds = time.perf_counter() - started
        cpu = per_event(before, probe.sample(), seen) if probe and before else None
        insert_ids = int(await client.scard(ids_key))
        user_days = 0
        async for key in client.scan_iter(match=f"{day_prefix}*", count=1000):
            user_days += int(await client.scard(key))
        return Floor(seen, seconds, insert_ids, user_days, int(await client.hlen(start_key)), cpu)
    finally:
        await _delete_floor_keys(client)
        await client.aclose()


async def _delete_floor_keys(client: Any) -> None:
    keys = [key async for key in client.scan_iter(match="bench:floor:*", count=1000)]
    for start in range(0, len(keys), 1000):
        await client.delete(*keys[start:start + 1000])
