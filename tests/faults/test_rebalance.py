"""Fault: the consumer group rebalances while batches are in flight
(docs/worker.md, "Failure behaviour").

Two workers consume both example trees, each on a 6-partition topic, while a
background thread keeps producing; a third worker joins mid-stream (its
partitions are revoked from the other two), then one worker leaves gracefully
(SIGTERM: it finishes its batch, commits and leaves the group) and one crashes
(SIGKILL: its applied-but-uncommitted batch is re-delivered to the survivor).
Small batches keep a batch in flight at every rebalance.

A revoked partition's old owner may still apply the batch it holds while the
new owner starts from the last commit: the per-unit applied-offset CAS
(streamer/engine.py) makes the overlap a no-op, and the old owner's commit is
refused (``CommitFailedError``, logged) instead of moving the group's offset.
So the end state must equal the reference exactly, and the group's committed
offsets must be exactly the end of every partition.

No event in the logs is late (lateness is per partition, the reference keeps
one watermark: see tests/worker/test_worker.py::test_two_workers_equal_one).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import redis

from streamer.kafka.produce import produce_sync
from streamer.state.store import Store
from streamer.testing import create_topic, wait_until
from streamer.testing.services import KafkaService, RedisService
from streamer.testing.worker import (
    WorkerProcess,
    applied_offsets,
    committed_offsets,
    load_tree,
    topic_end_offsets,
    tree_on_topic,
)
from streamer.windows.units import compile_tree
from tests.eventlog import default_knobs, generate
from tests.reference import ingest
from tests.worker.test_worker import (
    DEFINITIONS,
    TREES,
    Source,
    check_values,
    now_ms,
    wait_applied,
    without_late,
    worker_env,
)

pytestmark = pytest.mark.services

SESSION_MS = 3000
PARTITIONS = 6
N_EVENTS = 5000
CHUNKS = 50
PAUSE_S = 0.5  # between chunks: the stream lasts through every rebalance
SEED = 20_261_123
REFUSED = "refused after a rebalance"


@dataclass
class Producer:
    """Produces ``chunks`` (``[(topic, lines), ...]`` each) from a thread, paced."""

    chunks: list[list[tuple[str, list[bytes]]]]
    client: dict[str, str]
    done: int = 0
    error: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="producer", daemon=True)

    def _run(self) -> None:
        try:
            for chunk in self.chunks:
                for topic, lines in chunk:
                    produce_sync(lines, topic, self.client)
                self.done += 1
                time.sleep(PAUSE_S)  # pacing of the stream, not a wait for a condition
        except BaseException as exc:  # reported by the main thread
            self.error = exc


@pytest.mark.timeout(240)
def test_rebalance_with_batches_in_flight(
    kafka_broker: KafkaService,
    redis_server: RedisService,
    redis_client: redis.Redis,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    clock = now_ms()
    client = {"bootstrap_servers": kafka_broker.bootstrap}
    definitions = tmp_path / "definitions"
    sources: list[Source] = []
    for i, name in enumerate(TREES):
        topic = f"{unique_topic}-{name}"
        create_topic(kafka_broker.bootstrap, topic, PARTITIONS)
        tree = load_tree(tree_on_topic(DEFINITIONS / f"{name}.yaml", topic, definitions))
        log = without_late(generate(tree, SEED + i, replace(default_knobs(tree), n_events=N_EVENTS)), tree, clock)
        assert ingest(log.lines, tree, clock).counts.get("late", 0) == 0
        sources.append(Source(tree, compile_tree(tree), topic, log, {}))
    size = [-(-len(s.log.lines) // CHUNKS) for s in sources]
    producer = Producer(
        [[(s.topic, s.log.lines[k * n : (k + 1) * n]) for s, n in zip(sources, size, strict=True)]
         for k in range(CHUNKS)],
        client=client,
    )
    store = Store(redis_client, namespace="rb")
    group = f"g-{unique_topic}"
    total_partitions = PARTITIONS * len(sources)

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(
            [definitions],
            bootstrap=kafka_broker.bootstrap,
            redis_url=redis_server.url,
            group=group,
            session_timeout_ms=SESSION_MS,
            env=worker_env("rb", unique_topic, NORTHSTAR_BATCH_MAX_RECORDS="10"),
            name=name,
            workdir=tmp_path / name,
            ready_timeout=60,
        )

    a, b, c = worker("a"), worker("b"), worker("c")
    everyone = [a, b, c]
    read: dict[str, float] = {}
    timings: dict[str, float] = {}

    def assigned(ws: list[WorkerProcess]) -> float:
        return sum(w.sample("northstar_assigned_partitions") or 0 for w in ws)

    def owned_by(ws: list[WorkerProcess], what: str) -> float:
        """Wait until ``ws`` own every partition, each at least one; seconds waited."""
        return ws[0].wait_for(
            lambda: assigned(ws) == total_partitions
            and all((w.sample("northstar_assigned_partitions") or 0) > 0 for w in ws),
            60,
            what,
        )

    def chunk_reached(k: int) -> None:
        wait_until(lambda: producer.done >= k or not producer.thread.is_alive(), 60, f"chunk {k} produced")

    try:
        a.launch()
        b.launch()
        owned_by([a, b], "a and b split the partitions")
        producer.thread.start()
        chunk_reached(4)

        at_chunk = {"join": producer.done}
        c.launch()  # joins mid-stream: a and b lose partitions with batches in flight
        timings["join"] = owned_by([a, b, c], "a, b and c split the partitions")
        chunk_reached(producer.done + 3)

        at_chunk["leave"] = producer.done
        read["a"] = a.total("northstar_events_total")
        started = time.monotonic()
        assert a.terminate() == 0, a.log_tail()  # graceful: last batch applied and committed
        owned_by([b, c], "b and c own a's partitions")
        timings["leave"] = time.monotonic() - started
        chunk_reached(producer.done + 3)

        # kill b busy: right after it applied a batch, while the chunk's next
        # batches are fetched and applied
        batches = b.total("northstar_batches_total")
        b.wait_for(lambda: b.total("northstar_batches_total") > batches, 30, "b applying a batch")
        at_chunk["crash"] = producer.done
        read["b"] = b.total("northstar_events_total")
        started = time.monotonic()
        b.kill()  # a crash: whatever it applied but did not commit is re-delivered to c
        # what the crash left: partitions whose units applied records beyond the commit
        applied = {(s.topic, p): min(applied_offsets(store, [s.plan], f"{s.topic}:{p}"))
                   for s in sources for p in range(PARTITIONS)}
        done = committed_offsets(client, group, [s.topic for s in sources])
        ahead = sum(off + 1 > done.get(tp, 0) for tp, off in applied.items())
        c.wait_for(lambda: assigned([c]) == total_partitions, 60, "c owns every partition")
        timings["crash"] = time.monotonic() - started

        producer.thread.join(timeout=120)
        assert not producer.thread.is_alive(), "the producer did not finish"
        if producer.error is not None:
            raise producer.error
        for s in sources:
            s.ends = topic_end_offsets(client, s.topic, len(s.log.lines))
            assert len(s.ends) == PARTITIONS, f"{s.topic}: records in partitions {sorted(s.ends)} only"
        wait_applied([c], store, sources, timeout=90)
        want = {(s.topic, p): end + 1 for s in sources for p, end in s.ends.items()}
        c.wait_for(lambda: committed_offsets(client, group, [s.topic for s in sources]) == want,
                   30, "the group committed the end of every partition")
        # b's count is from just before its kill (a lower bound): no total to wait for
        read["c"] = c.total("northstar_events_total")
        records = sum(len(s.log.lines) for s in sources)
    finally:
        for w in everyone:
            w.stop()

    check_values(store, sources, clock)
    assert all(v > 0 for v in read.values()), f"a worker read nothing: {read}"
    refused = {w.name: w.log_path.read_text().count(REFUSED) for w in everyone}
    print(
        f"\n{records} records on {total_partitions} partitions; c joined: partitions split "
        f"{timings['join']:.1f}s after its launch; a left (SIGTERM): its partitions moved in "
        f"{timings['leave']:.1f}s; b crashed (SIGKILL): c owned everything {timings['crash']:.1f}s "
        f"after; records read {sum(read.values()):.0f} (a {read['a']:.0f}, b >= {read['b']:.0f}, "
        f"c {read['c']:.0f}) = at least {max(0.0, sum(read.values()) - records):.0f} re-read; "
        f"commits refused after a rebalance: {refused}; partitions applied beyond their commit "
        f"right after the SIGKILL: {ahead}; faults at chunks {at_chunk} of {CHUNKS}"
    )
