"""Real ``northstar worker`` processes against the brute-force reference.

Each test runs workers as subprocesses (``streamer.testing.worker``) on the
session's Kafka-compatible broker and Redis, on topics, groups, Redis
namespaces and dead-letter topics of its own, produces randomized logs
(tests/eventlog.py: late, duplicate, out-of-order and malformed events), waits
until every state unit's applied offset reached the end of every partition,
and compares every metric at every evaluation midnight with
tests/reference.py.

The generated logs live in 2024; the worker decodes with the real clock, so
the reference is computed with the real clock too (events the generator meant
as "from the future" are past by now: both sides accept them; the future-time
rejection is covered by tests/worker/test_dead_letters.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis

from streamer.events.decode import Decoder
from streamer.events.types import Event
from streamer.kafka.produce import produce_sync
from streamer.replay import replay
from streamer.spec.horizon import lateness_horizon
from streamer.spec.model import Tree
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.testing import create_topic
from streamer.testing.services import KafkaService, RedisClusterService, RedisService
from streamer.testing.worker import (
    WorkerProcess,
    all_applied,
    load_tree,
    topic_end_offsets,
    tree_on_topic,
    value_differences,
)
from streamer.windows.units import Plan, compile_tree
from tests.eventlog import GeneratedLog, default_knobs, generate
from tests.reference import evaluate as reference_evaluate
from tests.reference import ingest

pytestmark = pytest.mark.services

DEFINITIONS = Path(__file__).resolve().parents[2] / "definitions"
TREES = ("education", "learning_users")
SESSION_MS = 3000
SEED = 20_240_604
N_EVENTS = 2500


@dataclass
class Source:
    """One tree on a topic of its own, with the log produced to it."""

    tree: Tree
    plan: Plan
    topic: str
    log: GeneratedLog
    ends: dict[int, int]  # partition -> offset of its last record


def now_ms() -> int:
    return int(time.time() * 1000)


def kafka_client(broker: KafkaService) -> dict[str, Any]:
    return {"bootstrap_servers": broker.bootstrap}


def without_late(log: GeneratedLog, tree: Tree, clock_ms: int) -> GeneratedLog:
    """``log`` without the lines that would be late. The running maximum also
    counts duplicates (the reference's watermark does not), so at least every
    late line goes; whatever else is kept, the rest keeps its mischief."""
    decoder = Decoder(tree.source)
    horizon_ms = lateness_horizon(tree) * 1000
    kept: list[bytes] = []
    high: int | None = None
    for line in log.lines:
        event = decoder.decode(line, clock_ms)
        if isinstance(event, Event):
            if high is not None and event.time_ms < high - horizon_ms:
                continue
            high = event.time_ms if high is None else max(high, event.time_ms)
        kept.append(line)
    return replace(log, lines=kept)


def make_sources(
    broker: KafkaService,
    base_topic: str,
    definitions: Path,
    *,
    partitions: int,
    seed: int,
    drop_late_ms: int | None = None,
    **knobs: Any,
) -> list[Source]:
    """Every example tree copied onto its own topic (``partitions`` partitions)
    in ``definitions``, and a generated log produced to it (with
    ``drop_late_ms``, a clock: without the lines that would be late)."""
    sources = []
    for i, name in enumerate(TREES):
        topic = f"{base_topic}-{name}"
        create_topic(broker.bootstrap, topic, partitions)
        tree = load_tree(tree_on_topic(DEFINITIONS / f"{name}.yaml", topic, definitions))
        log = generate(tree, seed + i, replace(default_knobs(tree), n_events=N_EVENTS, **knobs))
        if drop_late_ms is not None:
            log = without_late(log, tree, drop_late_ms)
        assert produce_sync(log.lines, topic, kafka_client(broker)) == len(log.lines)
        ends = topic_end_offsets(kafka_client(broker), topic, len(log.lines))
        sources.append(Source(tree, compile_tree(tree), topic, log, ends))
    return sources


def worker_env(namespace: str, base_topic: str, **more: str) -> dict[str, str]:
    return {
        "NORTHSTAR_NAMESPACE": namespace,
        "NORTHSTAR_DEAD_LETTER_TOPIC": f"{base_topic}-dead-letters",
        "NORTHSTAR_APP_ID": f"app-{base_topic}",
        **more,
    }


def wait_applied(
    workers: Sequence[WorkerProcess], store: Store, sources: Sequence[Source], timeout: float
) -> float:
    """Wait until every unit applied every partition to its end; the seconds waited."""

    def done() -> bool:
        for w in workers:
            if not w.is_running():  # pytest.fail is not an Exception: stops the wait
                pytest.fail(f"{w.name} exited:\n{w.log_tail()}")
        return all(all_applied(store, [s.plan], s.topic, s.ends) for s in sources)

    return workers[0].wait_for(done, timeout, "every unit applied to the end of its topic")


def check_values(store: Store, sources: Sequence[Source], clock_ms: int) -> None:
    """Every metric at every evaluation midnight equals the reference."""
    problems: list[str] = []
    for s in sources:
        accepted = ingest(s.log.lines, s.tree, clock_ms).accepted
        midnights = s.log.midnights()
        for at, got in zip(midnights, evaluate(store, s.plan, midnights), strict=True):
            want = reference_evaluate(s.tree, accepted, at)
            problems += value_differences(want, got, label=f"{s.tree.tree} @ {at}: ")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- 1


@pytest.mark.timeout(180)
def test_worker_equals_reference(
    kafka_broker: KafkaService,
    redis_server: RedisService,
    redis_client: redis.Redis,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    """One worker, two trees on two 1-partition topics (per-partition order =
    log order): values and accepted/late/duplicate/rejected counts equal the
    reference, and each tree saw only its own topic."""
    clock = now_ms()
    sources = make_sources(
        kafka_broker, unique_topic, tmp_path / "definitions", partitions=1, seed=SEED
    )
    store = Store(redis_client, namespace="ref")
    started = time.monotonic()
    with WorkerProcess(
        [tmp_path / "definitions"],
        bootstrap=kafka_broker.bootstrap,
        redis_url=redis_server.url,
        group=f"g-{unique_topic}",
        # 6 s, not 3: the counters are compared exactly, and a rebalance from a
        # late heartbeat on a loaded machine would re-deliver and count twice
        session_timeout_ms=6000,
        env=worker_env("ref", unique_topic),
        workdir=tmp_path / "worker",
    ) as worker:
        ready = time.monotonic() - started
        wait_applied([worker], store, sources, timeout=60)
        total = time.monotonic() - started
        records = sum(len(s.log.lines) for s in sources)
        print(f"\n{records} records: ready after {ready:.1f}s, all applied after {total:.1f}s")

        check_values(store, sources, clock)
        # counted after the Kafka commit that follows the apply: let it catch up
        worker.wait_for(lambda: worker.total("northstar_events_total") >= records, 30, "every record counted")

        rejected: Counter[str] = Counter()
        for s in sources:
            want = ingest(s.log.lines, s.tree, clock).counts
            assert want.get("late") and want.get("duplicate"), f"a tame log: {want}"
            for kind in ("accepted", "late", "duplicate"):
                got = worker.sample(f"northstar_events_{kind}_total", {"tree": s.tree.tree})
                assert (got or 0) == want.get(kind, 0), (s.tree.tree, kind)
            rejected.update({k.split(":", 1)[1]: v for k, v in want.items() if k.startswith("rejected:")})
        assert worker.by_label("northstar_events_invalid_total", "reason") == {
            k: float(v) for k, v in rejected.items()
        }
        assert worker.total("northstar_events_total") == records
        assert worker.total("northstar_dead_letters_total") == sum(rejected.values())
        assert all(v > 0 for v in rejected.values()) and rejected, "the logs had no malformed lines"


# --------------------------------------------------------------------------- 4


@pytest.mark.timeout(180)
def test_two_workers_equal_one(
    kafka_broker: KafkaService,
    redis_server: RedisService,
    redis_client: redis.Redis,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    """Two workers in one group split 4-partition topics; their state equals a
    single worker's (another group, another namespace) and the reference.

    Lateness is per partition while the reference keeps one watermark for the
    whole log; with no event late in the whole log, none is late in any
    partition either (a partition's watermark never exceeds the log's), and one
    user's events (and so an event's re-sends) share a partition, so the
    per-partition answers equal the reference's."""
    clock = now_ms()
    definitions = tmp_path / "definitions"
    sources = make_sources(
        kafka_broker,
        unique_topic,
        definitions,
        partitions=4,
        seed=SEED + 10,
        drop_late_ms=clock,
    )
    for s in sources:
        assert ingest(s.log.lines, s.tree, clock).counts.get("late", 0) == 0
        assert len(s.ends) == 4, f"{s.topic}: records in partitions {sorted(s.ends)} only"

    def worker(name: str, group: str, namespace: str) -> WorkerProcess:
        return WorkerProcess(
            [definitions],
            bootstrap=kafka_broker.bootstrap,
            redis_url=redis_server.url,
            group=group,
            session_timeout_ms=SESSION_MS,
            env=worker_env(namespace, unique_topic),
            name=name,
            workdir=tmp_path / name,
        )

    pair = [worker(f"pair-{i}", f"pair-{unique_topic}", "pair") for i in range(2)]
    single = worker("single", f"single-{unique_topic}", "single")
    everyone = [*pair, single]
    try:
        for w in everyone:
            w.launch()
        # each of the pair gets partitions once the group has both members
        assigned = {w.name: 0.0 for w in pair}

        def split() -> bool:
            for w in pair:
                assigned[w.name] = max(assigned[w.name], w.sample("northstar_assigned_partitions") or 0)
            return all(v > 0 for v in assigned.values())

        pair[0].wait_for(split, 60, "both workers of the pair own partitions")
        single.wait_ready()
        wait_applied(pair, Store(redis_client, namespace="pair"), sources, timeout=90)
        wait_applied([single], Store(redis_client, namespace="single"), sources, timeout=60)
        assert all(w.total("northstar_events_total") > 0 for w in pair), "one worker did all the work"
        records = sum(len(s.log.lines) for s in sources)
        # a batch is counted after its Kafka commit, which follows the apply
        # (and can wait for a rebalance): the count catches up with the state
        pair[0].wait_for(
            lambda: sum(w.total("northstar_events_total") for w in pair) >= records,
            30,
            f"the pair counted all {records} records",
        )
        pair[0].wait_for(
            lambda: sum(w.total("northstar_assigned_partitions") for w in pair) == 4 * len(sources),
            30,
            "the pair owns every partition",
        )
    finally:
        for w in everyone:
            w.stop()

    pair_store, single_store = Store(redis_client, "pair"), Store(redis_client, "single")
    problems: list[str] = []
    for s in sources:
        midnights = s.log.midnights()
        for at, a, b in zip(
            midnights,
            evaluate(pair_store, s.plan, midnights),
            evaluate(single_store, s.plan, midnights),
            strict=True,
        ):
            problems += value_differences(b, a, rel_tol=0, abs_tol=0, label=f"{s.tree.tree} @ {at}: ")
    assert not problems, "two workers differ from one:\n" + "\n".join(problems)
    check_values(single_store, sources, clock)


# --------------------------------------------------------------------------- 5


@pytest.mark.timeout(180)
def test_redis_cluster_equals_standalone(
    kafka_broker: KafkaService,
    redis_cluster: RedisClusterService,
    redis_client: redis.Redis,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    """A worker writing to a 3-master Redis Cluster ends with the values that
    ``replay`` computes in a standalone Redis, and the reference's; the units'
    hash tags spread the state over more than one master, each unit on one."""
    clock = now_ms()
    namespace = f"cl-{unique_topic[-8:]}"
    sources = make_sources(
        kafka_broker, unique_topic, tmp_path / "definitions", partitions=1, seed=SEED + 20
    )
    cluster = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        store = Store(cluster, namespace=namespace)
        with WorkerProcess(
            [tmp_path / "definitions"],
            bootstrap=kafka_broker.bootstrap,
            redis_url=redis_cluster.url,
            group=f"g-{unique_topic}",
            session_timeout_ms=SESSION_MS,
            env=worker_env(namespace, unique_topic),
            workdir=tmp_path / "worker",
        ) as worker:
            wait_applied([worker], store, sources, timeout=60)
        check_values(store, sources, clock)

        for s in sources:
            midnights = s.log.midnights()
            standalone = replay(s.log.lines, [s.tree], redis_client, at_ms=midnights, now_ms=clock)
            problems: list[str] = []
            for at, on_cluster, alone in zip(
                midnights, evaluate(store, s.plan, midnights), standalone, strict=True
            ):
                problems += value_differences(
                    alone.metrics, on_cluster, rel_tol=0, abs_tol=0, label=f"{s.tree.tree} @ {at}: "
                )
            assert not problems, "cluster differs from standalone:\n" + "\n".join(problems)
    finally:
        cluster.close()

    tags_by_node: dict[tuple[str, int], set[str]] = {}
    for host, port in redis_cluster.startup_nodes:
        with redis.Redis(host=host, port=port) as node:
            keys = [k.decode() for k in node.scan_iter(match=f"{namespace}:*", count=1000)]
        tags_by_node[(host, port)] = {k[k.index("{") : k.index("}") + 1] for k in keys}
    units = [u for s in sources for u in s.plan.units]
    unit_tags = {u.tag for u in units}
    on_nodes = [node for node, tags in tags_by_node.items() if tags & unit_tags]
    assert len(on_nodes) > 1, f"every unit landed on one node: {tags_by_node}"
    found: Counter[str] = Counter(t for tags in tags_by_node.values() for t in tags)
    assert unit_tags <= set(found), f"units without keys: {unit_tags - set(found)}"
    assert all(found[t] == 1 for t in unit_tags), "a unit's keys are spread over nodes"
