"""Exactly-once effect under crashes: a worker SIGKILLed at random points,
again and again, while events keep arriving, ends with state equal to the
same engine run without interruption, bit for bit, and the reference
(docs/worker.md, "Exactly once").

Both example trees, each on a 2-partition topic of its own; the simulator's
logs (a few tens of thousands of events) with re-sent lines (duplicates) and
malformed lines mixed in, produced in chunks by a background thread while the
main thread kills and restarts the worker (same group, same metrics port).
Small batches (``NORTHSTAR_BATCH_MAX_RECORDS``) make a kill land inside the
apply -> dead letters -> commit sequence more often; every kill records whether
it left applied-but-uncommitted records (re-delivered on restart) and units of
one partition at different offsets (a kill inside a batch's apply).

``NORTHSTAR_SIGKILL_SEED`` and ``NORTHSTAR_SIGKILL_KILLS`` change the seed and
the number of kills (default 10).
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from streamer.kafka.produce import produce_sync
from streamer.replay import replay
from streamer.sim.models import simulate
from streamer.sim.scenarios import Drift
from streamer.spec.model import Tree
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.testing import create_topic
from streamer.testing.services import KafkaService, RedisService
from streamer.testing.worker import (
    WorkerProcess,
    all_applied,
    applied_offsets,
    committed_offsets,
    load_tree,
    read_records,
    topic_end_offsets,
    tree_on_topic,
    value_differences,
)
from streamer.windows.units import Plan, compile_tree
from streamer.worker.deadletter import SOURCE_HEADER
from tests.reference import evaluate as reference_evaluate
from tests.reference import ingest

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("NORTHSTAR_SIGKILL_SEED", "1337"))
KILLS = int(os.environ.get("NORTHSTAR_SIGKILL_KILLS", "10"))
SESSION_MS = 3000
PARTITIONS = 2
CHUNKS = 30
START_MS = 1_709_510_400_000  # 2024-03-04T00:00:00Z
DAY_MS = 86_400_000
DAYS = {"education": 45, "learning_users": 45}
MODEL_ARGS: dict[str, dict[str, Any]] = {"education": {"users": 600}, "learning_users": {"users": 400}}
MALFORMED = (
    b"not json {",
    b"[1, 2, 3]",
    b'{"event_type": "lesson_completed", "time": 1717100000000}',
    b'{"event_type": "lesson_completed", "user_id": "u1", "time": "yesterday"}',
    b'{"user_id": "u1", "time": 1717100000000}',
)


@dataclass
class Source:
    tree: Tree
    plan: Plan
    topic: str
    lines: list[bytes]


@dataclass
class Kill:
    at_s: float  # since the test started
    mode: str  # "start-up", "busy" (just after it applied a batch) or "random"
    before_ready: bool  # killed before it owned partitions
    ahead_of_commit: bool = False  # applied records not committed: re-delivered
    units_apart: bool = False  # units of one partition at different offsets
    restart_ready_s: float | None = None  # kill -> the new worker owns partitions
    restart_busy_s: float | None = None  # kill -> the new worker applied a batch


@dataclass
class Run:
    kills: list[Kill] = field(default_factory=list)
    produced: int = 0
    producer_error: BaseException | None = None


def simulated_lines(name: str, rng: random.Random) -> list[bytes]:
    """The simulator's events for tree ``name`` with ~3% re-sent lines and ~1%
    malformed lines mixed in."""
    lines: list[bytes] = []
    events = simulate(name, START_MS, DAYS[name], Drift(noise=0.1), seed=rng.randrange(1 << 30),
                      **MODEL_ARGS[name])
    for event in events:
        lines.append(orjson.dumps(event))
        roll = rng.random()
        if roll < 0.03:
            lines.append(rng.choice(lines[-50:]))
        elif roll < 0.04:
            lines.append(rng.choice(MALFORMED))
    return lines


def chunks(lines: list[bytes], n: int) -> Iterator[list[bytes]]:
    size = -(-len(lines) // n)
    for i in range(0, len(lines), size):
        yield lines[i : i + size]


@pytest.mark.timeout(300)
def test_sigkill_exactly_once(
    kafka_broker: KafkaService,
    redis_server: RedisService,
    redis_client: redis.Redis,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    test_started = time.monotonic()
    rng = random.Random(SEED)
    clock = int(time.time() * 1000)
    client = {"bootstrap_servers": kafka_broker.bootstrap}
    group = f"g-{unique_topic}"
    sources: list[Source] = []
    for name in ("education", "learning_users"):
        topic = f"{unique_topic}-{name}"
        create_topic(kafka_broker.bootstrap, topic, PARTITIONS)
        tree = load_tree(tree_on_topic(ROOT / "definitions" / f"{name}.yaml", topic, tmp_path / "defs"))
        sources.append(Source(tree, compile_tree(tree), topic, simulated_lines(name, rng)))
    total = sum(len(s.lines) for s in sources)
    store = Store(redis_client, namespace="kill")
    dead_letters = f"{unique_topic}-dead-letters"

    worker = WorkerProcess(
        [tmp_path / "defs"],
        bootstrap=kafka_broker.bootstrap,
        redis_url=redis_server.url,
        group=group,
        session_timeout_ms=SESSION_MS,
        env={
            "NORTHSTAR_NAMESPACE": "kill",
            "NORTHSTAR_DEAD_LETTER_TOPIC": dead_letters,
            "NORTHSTAR_APP_ID": f"app-{unique_topic}",
            "NORTHSTAR_BATCH_MAX_RECORDS": "250",
            # as deployed: each restart first leaves the group for the killed process
            "NORTHSTAR_INSTANCE_ID": "sigkill",
        },
        workdir=tmp_path / "worker",
        ready_timeout=90,
    )
    run = Run()
    producer_rng = random.Random(rng.randrange(1 << 30))

    def produce_in_chunks() -> None:
        try:
            parts = [list(chunks(s.lines, CHUNKS)) for s in sources]
            for i in range(CHUNKS):
                for s, part in zip(sources, parts, strict=True):
                    if i < len(part):
                        run.produced += produce_sync(part[i], s.topic, client)
                time.sleep(producer_rng.uniform(0.3, 2.5))
        except BaseException as exc:  # reported by the main thread
            run.producer_error = exc

    def progress() -> list[list[int]]:
        return [
            applied_offsets(store, [s.plan], f"{s.topic}:{p}")
            for s in sources
            for p in range(PARTITIONS)
        ]

    producer = threading.Thread(target=produce_in_chunks, name="producer", daemon=True)
    try:
        worker.launch()
        producer.start()
        killed: float | None = None
        before: list[list[int]] = []
        for _ in range(KILLS):
            mode = rng.choices(("start-up", "busy", "random"), weights=(2, 4, 4))[0]
            kill = Kill(at_s=0.0, mode=mode, before_ready=False)
            if mode == "start-up":  # a random point of start-up and group join
                time.sleep(rng.uniform(0.5, 4.0))
            else:
                worker.wait_ready()
                if killed is not None:
                    run.kills[-1].restart_ready_s = time.monotonic() - killed
                # "busy": right after the worker applied something (it is catching
                # up on what arrived while it was down); "random": any time soon
                span = 3.0 if mode == "busy" else rng.uniform(0.0, 1.2)
                deadline = time.monotonic() + span
                while time.monotonic() < deadline:
                    if progress() != before:
                        if killed is not None and run.kills[-1].restart_busy_s is None:
                            run.kills[-1].restart_busy_s = time.monotonic() - killed
                        if mode == "busy":
                            time.sleep(rng.uniform(0.0, 0.05))
                            break
                    time.sleep(0.01)
            kill.before_ready = not (_assigned(worker) > 0)
            worker.kill()
            killed = time.monotonic()
            kill.at_s = killed - test_started
            run.kills.append(kill)
            # what the crash left behind, before anyone touches it again
            before = progress()
            done = committed_offsets(client, group, [s.topic for s in sources])
            for (s, p), units in zip(
                [(s, p) for s in sources for p in range(PARTITIONS)], before, strict=True
            ):
                kill.units_apart |= len(set(units)) > 1
                kill.ahead_of_commit |= max(units) + 1 > done.get((s.topic, p), 0)
            worker.launch()
        worker.wait_ready()
        if killed is not None:
            run.kills[-1].restart_ready_s = time.monotonic() - killed
        producer.join(timeout=120)
        assert not producer.is_alive(), "the producer thread did not finish"
        if run.producer_error is not None:
            raise run.producer_error
        assert run.produced == total

        ends = {s.topic: topic_end_offsets(client, s.topic, len(s.lines)) for s in sources}
        final = time.monotonic()
        worker.wait_for(
            lambda: all(all_applied(store, [s.plan], s.topic, ends[s.topic]) for s in sources),
            120,
            "every unit applied every partition to its end",
        )
        catch_up = time.monotonic() - final
    finally:
        worker.stop()

    # state: bit-for-bit what an uninterrupted run of the same engine holds
    # (replay, in-process), at every third midnight; and the reference's values.
    # The reference is compared to 1e-12, not bit for bit: it interpolates
    # percentiles in seconds, the engine in milliseconds and divides after, and
    # the two can differ in the last bit (13823.594000000001 vs 13823.594).
    problems: list[str] = []
    for s in sources:
        accepted = ingest(s.lines, s.tree, clock).accepted
        midnights = [START_MS + d * DAY_MS for d in range(3, DAYS[s.tree.tree] + 1, 3)]
        calm = replay(s.lines, [s.tree], redis_client, at_ms=midnights, now_ms=clock, namespace="calm")
        for at, got, uninterrupted in zip(midnights, evaluate(store, s.plan, midnights), calm, strict=True):
            label = f"{s.tree.tree} @ {at}: "
            problems += value_differences(uninterrupted.metrics, got, rel_tol=0, abs_tol=0, label=label)
            want = reference_evaluate(s.tree, accepted, at)
            problems += value_differences(want, got, rel_tol=1e-12, abs_tol=0, label="reference " + label)
    assert not problems, "\n".join(problems)

    # dead letters: at least once, every malformed record
    wanted: set[str] = set()
    for s in sources:
        n = len(s.lines)
        records = read_records(client, s.topic, lambda got: len(got) >= n)  # noqa: B023
        wanted |= {f"{s.topic}:{r.partition}:{r.offset}" for r in records if r.value in MALFORMED}
    assert len(wanted) == sum(line in MALFORMED for s in sources for line in s.lines)
    letters = read_records(
        client,
        dead_letters,
        lambda got: wanted <= {dict(r.headers)[SOURCE_HEADER].decode() for r in got},
        30,
    )
    sources_seen = [dict(r.headers)[SOURCE_HEADER].decode() for r in letters]

    wall = time.monotonic() - test_started
    ready = [k.restart_ready_s for k in run.kills if k.restart_ready_s is not None]
    busy = [k.restart_busy_s for k in run.kills if k.restart_busy_s is not None]
    print(
        f"\nSIGKILL x{len(run.kills)} over {total} records (seed {SEED}): wall {wall:.1f}s, "
        f"final catch-up {catch_up:.1f}s; kill -> partitions back: median "
        f"{statistics.median(ready):.1f}s, max {max(ready):.1f}s; kill -> first batch applied: "
        f"{_summary(busy)}; kills by mode {dict(Counter(k.mode for k in run.kills))}, "
        f"before owning partitions {sum(k.before_ready for k in run.kills)}, "
        f"leaving applied-but-uncommitted records {sum(k.ahead_of_commit for k in run.kills)}, "
        f"inside an apply (units apart) {sum(k.units_apart for k in run.kills)}; "
        f"dead letters {len(letters)} for {len(wanted)} malformed records "
        f"({len(sources_seen) - len(set(sources_seen))} written twice)"
    )
    assert len(run.kills) >= KILLS
    # the restarts ran as deployed: each that got far enough left the group for the killed process
    assert "(this instance's killed process): left" in worker.log_path.read_text(), worker.log_tail()


def _summary(values: list[float]) -> str:
    if not values:
        return "no backlog at any restart"
    return f"median {statistics.median(values):.1f}s, max {max(values):.1f}s (n={len(values)})"


def _assigned(worker: WorkerProcess) -> float:
    try:
        return worker.sample("northstar_assigned_partitions") or 0.0
    except OSError:  # not listening yet
        return 0.0
