"""Fault: the worker's broker connections cut mid-stream, then the broker
unreachable for longer than the session timeout (docs/worker.md, "Failure
behaviour").

Tansu keeps topics in memory only (``memory://``; its other engines need S3
or Postgres), so a broker restart would lose every topic: instead the broker
advertises a :class:`streamer.testing.TcpProxy` in front of it, so every
connection of the worker (bootstrap, group coordinator, fetches, the
evaluator's producer, faust's own consumer) goes through the proxy, and the
test resets them all at once (``cut``) or refuses them for a while
(``block``). The worker must reconnect by itself, rejoin its group, resume
from its committed offsets, and end with every value equal to the reference:
records re-read after a cut are applied once (applied offsets in Redis).

Two trees on 1-partition topics (the reference's order), produced in three
chunks: fault 1 (cut) lands while the worker works through chunk 1, fault 2
(block for BLOCK_S > session timeout, so the group evicts the worker) while it
works through chunk 2; chunk 3 arrives after both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis

from streamer.kafka.produce import produce_sync
from streamer.state.store import Store
from streamer.testing import TansuBroker, TcpProxy, create_topic, free_port
from streamer.testing.process import MissingBinaryError
from streamer.testing.services import RedisService
from streamer.testing.worker import (
    WorkerProcess,
    all_applied,
    applied_offsets,
    committed_offsets,
    load_tree,
    topic_end_offsets,
    tree_on_topic,
)
from streamer.windows.units import compile_tree
from tests.eventlog import default_knobs, generate
from tests.worker.test_worker import DEFINITIONS, TREES, Source, check_values, now_ms, wait_applied

pytestmark = pytest.mark.services

SESSION_MS = 3000
BLOCK_S = 8.0  # > SESSION_MS: the coordinator evicts the worker while it is away
N_EVENTS = 6000
CHUNKS = 3
SEED = 20_261_122


@dataclass
class Fault:
    kind: str
    cut: int  # connections reset
    in_backlog: bool  # the worker had records left to apply when it happened
    resumed_s: float = 0.0  # fault (or unblock) -> the next record applied


@pytest.fixture
def proxied_broker(tmp_path: Path) -> Iterator[tuple[TansuBroker, TcpProxy]]:
    """A Tansu broker of this test's own that advertises a proxy in front of it."""
    port = free_port()
    with TcpProxy(("127.0.0.1", port)) as proxy:
        broker = TansuBroker(tmp_path / "tansu", port=port, advertised_port=proxy.port)
        try:
            broker.start()
        except MissingBinaryError as exc:
            pytest.fail(f"required service binary is missing: {exc}", pytrace=False)
        try:
            yield broker, proxy
        finally:
            broker.stop()


def chunked(lines: list[bytes], n: int) -> list[list[bytes]]:
    size = -(-len(lines) // n)
    return [lines[i : i + size] for i in range(0, len(lines), size)]


@pytest.mark.timeout(150)
def test_broker_connections_cut_and_blocked_mid_stream(
    proxied_broker: tuple[TansuBroker, TcpProxy],
    redis_server: RedisService,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    broker, proxy = proxied_broker
    clock = now_ms()
    client = {"bootstrap_servers": broker.bootstrap}
    definitions = tmp_path / "definitions"
    sources: list[Source] = []
    for i, name in enumerate(TREES):
        topic = f"cut-{name}"
        create_topic(broker.bootstrap, topic, 1)
        tree = load_tree(tree_on_topic(DEFINITIONS / f"{name}.yaml", topic, definitions))
        log = generate(tree, SEED + i, replace(default_knobs(tree), n_events=N_EVENTS))
        sources.append(Source(tree, compile_tree(tree), topic, log, {}))
    parts = [chunked(s.log.lines, CHUNKS) for s in sources]
    store = Store(redis_client, namespace="cut")

    def produce(chunk: int) -> None:
        for s, p in zip(sources, parts, strict=True):
            assert produce_sync(p[chunk], s.topic, client) == len(p[chunk])

    def progress() -> list[int]:
        return [min(applied_offsets(store, [s.plan], f"{s.topic}:0")) for s in sources]

    produced = [0 for _ in sources]

    def in_backlog() -> bool:
        return any(done + 1 < n for done, n in zip(progress(), produced, strict=True))

    def produce_counted(chunk: int) -> None:
        produce(chunk)
        for k, p in enumerate(parts):
            produced[k] += len(p[chunk])

    worker = WorkerProcess(
        [definitions],
        bootstrap=broker.bootstrap,
        redis_url=redis_server.url,
        group="g-cut",
        session_timeout_ms=SESSION_MS,
        env={
            "NORTHSTAR_NAMESPACE": "cut",
            "NORTHSTAR_DEAD_LETTER_TOPIC": "cut-dead-letters",
            "NORTHSTAR_APP_ID": "app-cut",
            "NORTHSTAR_BATCH_MAX_RECORDS": "40",
        },
        workdir=tmp_path / "worker",
        ready_timeout=60,
    )
    faults: list[Fault] = []

    def wait_chunk(chunk: int, what: str) -> float:
        """Seconds until a record of ``chunk`` (the last produced) is applied."""
        first = [n - len(p[chunk]) for n, p in zip(produced, parts, strict=True)]
        return worker.wait_for(
            lambda: any(done >= f for done, f in zip(progress(), first, strict=True)), 60, what
        )

    records = sum(len(s.log.lines) for s in sources)
    try:
        produce_counted(0)
        worker.start()
        # fault 1: every connection reset while the worker applies chunk 1
        worker.wait_for(lambda: max(progress()) >= 0, 60, "the first batch applied")
        fault = Fault("cut", 0, in_backlog())
        fault.cut = proxy.cut()
        cut_at = time.monotonic()
        produce_counted(1)
        wait_chunk(1, "a record of chunk 2 applied after the cut")
        fault.resumed_s = time.monotonic() - cut_at
        faults.append(fault)

        # fault 2: the broker unreachable for longer than the session timeout
        fault = Fault("block", 0, in_backlog())
        fault.cut = proxy.block()
        refused_before = proxy.refused
        time.sleep(BLOCK_S)  # the fault's duration, not a wait for a condition
        assert proxy.refused > refused_before, "the worker never tried to reconnect while blocked"
        proxy.unblock()
        unblocked_at = time.monotonic()
        produce_counted(2)
        wait_chunk(2, "a record of chunk 3 applied after the broker came back")
        fault.resumed_s = time.monotonic() - unblocked_at
        faults.append(fault)

        ends: dict[str, dict[int, int]] = {}
        for s in sources:
            s.ends = topic_end_offsets(client, s.topic, len(s.log.lines))
            ends[s.topic] = s.ends
        wait_applied([worker], store, sources, timeout=90)
        assert all(all_applied(store, [s.plan], s.topic, s.ends) for s in sources)
        # the same process did it all: reconnected, never crashed or restarted
        assert worker.is_running() and worker.starts == 1
        worker.wait_for(
            lambda: committed_offsets(client, "g-cut", [s.topic for s in sources])
            == {(t, p): end + 1 for t, e in ends.items() for p, end in e.items()},
            30,
            "every offset committed to the end",
        )
        # counted after the commit of the last batch (apply, then commit, then count)
        worker.wait_for(lambda: worker.total("northstar_events_total") >= records, 10,
                        "every record counted")
        read = worker.total("northstar_events_total")
    finally:
        worker.stop()

    check_values(store, sources, clock)
    assert sum(f.cut for f in faults) > 0, "no connection was cut: the proxy saw no traffic"
    print(
        f"\n{records} records, faults: "
        + "; ".join(
            f"{f.kind}: {f.cut} connections reset, in backlog {f.in_backlog}, "
            f"next record applied {f.resumed_s:.1f}s after"
            + (" the unblock" if f.kind == "block" else " the cut")
            for f in faults
        )
        + f"; block {BLOCK_S:.0f}s refused {proxy.refused} connection attempts; "
        f"records read {read:.0f} = {read - records:.0f} re-read"
    )
