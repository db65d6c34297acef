"""Redis faults with real processes: a ``northstar worker`` consumes two trees'
streams (each on a 1-partition topic of its own, produced in chunks by a
background thread) while the test stops, crashes or freezes the Redis it
writes to (a ``redis-server`` of this module, AOF on with ``appendfsync
always``), or fills it up. Each test ends with every metric at every
evaluation midnight equal to the brute-force reference, and the
accepted/late/duplicate counters summing to the reference's counts (nothing
lost, applied twice or re-read; ``redis_harness.finish`` explains the one
known shift from accepted to late or duplicate after a lost reply, bounded
here; tests/faults/test_verdict_retries.py pins it down).

Throughout, a watcher thread reads the group's committed offsets, then the
units' applied offsets: a committed offset may never pass what every unit
applied (committed = next offset to read <= applied + 1). While Redis is down
the worker must not advance at all: no record counted, no offset committed.

``NORTHSTAR_FAULT_REDIS_OUTAGE_S`` (default 30) sets the length of the
unreachable-Redis outage of ``test_redis_unreachable``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamer.state.store import Store
from streamer.testing import MissingBinaryError, RedisServer, ServiceError
from streamer.testing.services import KafkaService
from streamer.testing.stream import ChunkedProducer
from streamer.testing.worker import WorkerProcess, committed_offsets
from tests.faults.redis_harness import (
    BATCH,
    OUTAGE_S,
    POLL_INTERVAL_S,
    check_held,
    counted,
    finish,
    make_sources,
    now_ms,
    read_state,
    start_worker,
    watching,
)

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module (the tests stop it), AOF with ``appendfsync always``."""
    server = RedisServer(tmp_path_factory.mktemp("redis-aof"), appendonly=True)
    try:
        server.start()
    except MissingBinaryError as exc:
        pytest.fail(f"required service binary is missing: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def store(aof_redis: RedisServer) -> Iterator[Store]:
    """A Store on the module's Redis, emptied first; its client gives up after
    1 s without retries, so reading it while Redis is down fails fast."""
    with contextlib.suppress(ServiceError):  # a test that failed mid-fault may have left it
        aof_redis.resume()  # frozen,
    try:
        aof_redis.ping()
    except redis.exceptions.RedisError:
        aof_redis.restart()  # or stopped
    client = aof_redis.client(
        socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )
    client.flushall()
    client.config_set("maxmemory", "0")  # test_redis_full may have failed with it set
    try:
        yield Store(client, namespace="faults")
    finally:
        client.close()


# --------------------------------------------------------------------------- 1


@pytest.mark.timeout(180)
def test_redis_restarted_mid_stream(
    kafka_broker: KafkaService,
    aof_redis: RedisServer,
    store: Store,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    """Redis stopped twice while the worker consumes a stream, first SIGTERM
    (clean shutdown), then SIGKILL (a crash: safe with ``appendfsync always``,
    every acknowledged write is on disk before the reply), each time for a few
    seconds, and started again on the same port and data directory. The
    worker backs off, commits nothing while Redis is away, reloads its scripts
    (NOSCRIPT after a restart) and resumes; a SIGKILL that lands between a
    unit's script and its reply is made harmless by the applied-offset guard."""
    clock = now_ms()
    client = {"bootstrap_servers": kafka_broker.bootstrap}
    sources = make_sources(kafka_broker, unique_topic, tmp_path / "definitions", 4000, seed=8_001)
    group = f"g-{unique_topic}"
    topics = [s.topic for s in sources]
    worker = start_worker(kafka_broker, aof_redis.url, unique_topic, tmp_path)
    producer = ChunkedProducer(
        client, {s.topic: s.log.lines for s in sources}, chunks=40, interval=0.4
    )
    figures: list[str] = []
    try:
        with watching(client, group, store, sources) as watch:
            producer.start()
            for how in ("SIGTERM", "SIGKILL"):
                # mid-stream: the worker is applying what keeps arriving
                seen = read_state(worker)[1]
                worker.wait_for(
                    lambda: read_state(worker)[1] > seen,  # noqa: B023 - called before seen changes
                    30,
                    "records applied before the fault",
                )
                assert not producer.done, "the stream ended before the fault: make it longer"
                stopped = time.monotonic()
                if how == "SIGTERM":
                    aof_redis.terminate()
                else:
                    aof_redis.kill()
                detect = worker.wait_for(
                    lambda: read_state(worker)[0] == 0, 30, "northstar_redis_up 0"
                )
                at_detection = read_state(worker)
                committed = committed_offsets(client, group, topics)
                # down for 3 s more while records keep arriving: the worker holds still
                while time.monotonic() - stopped < detect + 3.0:
                    check_held(worker, at_detection, committed, client, group, topics)
                    time.sleep(0.3)
                aof_redis.restart()
                back = time.monotonic()
                resume = worker.wait_for(
                    lambda: read_state(worker)[0] == 1 and read_state(worker)[1] > at_detection[1],  # noqa: B023
                    60,
                    "records applied after Redis returned",
                )
                status, body = worker.probe("/readyz")
                assert status == 200 and body["ready"], body
                figures.append(
                    f"{how}: detected {detect:.1f}s after the stop, down {back - stopped:.1f}s, "
                    f"resumed {resume:.1f}s after Redis returned"
                )
            catch_up, _, shifted = finish(worker, producer, store, sources, clock, client, faults=2)
    finally:
        worker.stop()
    print(
        f"\nRedis restarted mid-stream ({producer.produced} records, batches of {BATCH}): "
        + "; ".join(figures)
        + f"; final catch-up {catch_up:.1f}s; {shifted} events counted late/duplicate "
        f"instead of accepted (a lost reply); commit checks {len(watch.samples)}"
    )


# --------------------------------------------------------------------------- 2


@pytest.mark.timeout(max(180, int(OUTAGE_S * 2 + 120)))
@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_redis_unreachable(
    how: str,
    kafka_broker: KafkaService,
    aof_redis: RedisServer,
    store: Store,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    """Redis unreachable for ``OUTAGE_S`` seconds while records keep arriving:
    ``stopped`` (SIGTERM: connections refused) or ``frozen`` (SIGSTOP: the
    kernel still accepts connections, nothing answers, calls time out; on
    SIGCONT Redis runs whatever was sent meanwhile, so a script the worker gave
    up on may run after all: the applied-offset guard makes that harmless).

    Backpressure: after detection the worker counts no record, applies no
    batch and commits no offset until Redis returns, and its memory does not
    grow with what is produced meanwhile (aiokafka fetches a partition again
    only once the previous fetch was consumed); /readyz answers 503
    ``redis_unavailable``, /healthz 200, ``northstar_redis_up`` 0. Then it
    resumes and ends equal to the reference."""
    clock = now_ms()
    client = {"bootstrap_servers": kafka_broker.bootstrap}
    sources = make_sources(kafka_broker, unique_topic, tmp_path / "definitions", 4000, seed=8_101)
    group = f"g-{unique_topic}"
    topics = [s.topic for s in sources]
    worker = start_worker(kafka_broker, aof_redis.url, unique_topic, tmp_path)
    # the stream runs from before the outage to after it
    chunks = 30
    producer = ChunkedProducer(
        client,
        {s.topic: s.log.lines for s in sources},
        chunks=chunks,
        interval=(OUTAGE_S + 12) / chunks,
    )
    try:
        with watching(client, group, store, sources) as watch:
            producer.start()
            worker.wait_for(
                lambda: read_state(worker)[1] > 0, 30, "records applied before the fault"
            )
            rss_before = worker.rss_bytes()
            log_before = worker.log_path.stat().st_size
            stopped = time.monotonic()
            produced_at_stop = producer.produced
            if how == "stopped":
                aof_redis.terminate()
            else:
                aof_redis.pause()
            detect = worker.wait_for(
                lambda: read_state(worker)[0] == 0, OUTAGE_S, "northstar_redis_up 0"
            )
            at_detection = read_state(worker)
            committed = committed_offsets(client, group, topics)
            checks = 0
            while time.monotonic() - stopped < OUTAGE_S:
                check_held(worker, at_detection, committed, client, group, topics)
                checks += 1
                time.sleep(0.5)
            check_held(worker, at_detection, committed, client, group, topics)
            rss_outage = worker.rss_bytes()
            with worker.log_path.open("rb") as log:
                log.seek(log_before)
                outage_log = log.read().decode(errors="replace").splitlines()
            # a line or two when Redis goes away, not a traceback per retry or evaluation tick
            assert not [line for line in outage_log if "Traceback" in line], "\n".join(
                outage_log[-60:]
            )
            produced_meanwhile = producer.produced - produced_at_stop
            assert produced_meanwhile > 0, "nothing was produced during the outage"
            if how == "stopped":
                aof_redis.restart()
            else:
                aof_redis.resume()
            back = time.monotonic()
            resume = worker.wait_for(
                lambda: read_state(worker)[0] == 1 and read_state(worker)[1] > at_detection[1],
                60,
                "records applied after Redis returned",
            )
            status, body = worker.probe("/readyz")
            assert status == 200 and body["ready"], body
            # the worker stays in its group while blocked for less than the
            # poll interval, max(60 s, 2 x session); past it, it leaves and re-reads
            catch_up, reread, shifted = finish(
                worker,
                producer,
                store,
                sources,
                clock,
                client,
                faults=1,
                reread_allowed=OUTAGE_S + 10 >= POLL_INTERVAL_S,
            )
    finally:
        worker.stop()
    print(
        f"\nRedis {how} for {back - stopped:.1f}s ({producer.produced} records, batches of {BATCH}): detected "
        f"{detect:.1f}s after the fault, held still through {checks} checks while {produced_meanwhile} records "
        f"arrived, {len(outage_log)} log lines, worker RSS {rss_before / 2**20:.1f} -> {rss_outage / 2**20:.1f} MiB, resumed {resume:.1f}s "
        f"after Redis returned, final catch-up {catch_up:.1f}s, {reread} records read twice, "
        f"{shifted} events counted late/duplicate instead of accepted (a lost reply), "
        f"commit checks {len(watch.samples)}"
    )


# --------------------------------------------------------------------------- 3


@pytest.mark.timeout(180)
def test_worker_stopped_while_redis_is_down(
    kafka_broker: KafkaService,
    aof_redis: RedisServer,
    store: Store,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    """SIGTERM to a worker that is waiting for Redis: it drops the batch in
    hand unwritten and uncommitted and exits cleanly (exit code 0, leaving its
    group) instead of waiting for Redis until the grace period ends in a
    SIGKILL. A new worker of the group, started once Redis is back, reads
    that batch again; the two together count every record once and the state
    equals the reference."""
    clock = now_ms()
    client = {"bootstrap_servers": kafka_broker.bootstrap}
    sources = make_sources(kafka_broker, unique_topic, tmp_path / "definitions", 2500, seed=8_201)
    group = f"g-{unique_topic}"
    topics = [s.topic for s in sources]
    first = start_worker(kafka_broker, aof_redis.url, unique_topic, tmp_path)
    producer = ChunkedProducer(
        client, {s.topic: s.log.lines for s in sources}, chunks=20, interval=0.3
    )
    second: WorkerProcess | None = None
    try:
        with watching(client, group, store, sources):
            producer.start()
            first.wait_for(lambda: read_state(first)[1] > 0, 30, "records applied before the fault")
            aof_redis.terminate()
            first.wait_for(lambda: read_state(first)[0] == 0, 30, "northstar_redis_up 0")
            before = counted(first, sources)
            committed = committed_offsets(client, group, topics)
            stopping = time.monotonic()
            code = first.terminate(grace=30)
            stopped_in = time.monotonic() - stopping
            assert code == 0, (
                f"the worker did not stop by itself (exit code {code}):\n{first.log_tail()}"
            )
            assert "left uncommitted" in first.log_path.read_text(), first.log_tail()
            assert committed_offsets(client, group, topics) == committed, (
                "the abandoned batch was committed"
            )
            aof_redis.restart()
            second = start_worker(
                kafka_broker, aof_redis.url, unique_topic, tmp_path, name="second"
            )
            catch_up, reread, shifted = finish(
                second, producer, store, sources, clock, client, faults=1, counted_before=before
            )
    finally:
        first.stop()
        if second is not None:
            second.stop()
    print(
        f"\nworker SIGTERMed while Redis was down: exited 0 after {stopped_in:.1f}s; the next worker "
        f"caught up in {catch_up:.1f}s, {reread} records read twice, {shifted} counted late/duplicate after a lost reply"
    )


# --------------------------------------------------------------------------- 4


@pytest.mark.timeout(180)
def test_redis_full(
    kafka_broker: KafkaService,
    aof_redis: RedisServer,
    store: Store,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    """Redis at ``maxmemory`` with ``noeviction`` (the policy the deployment
    sets) refuses the units' scripts with OOM: the worker waits as for an
    outage (it used to crash on the error), commits nothing, says so, and
    resumes once memory is raised; values equal the reference."""
    clock = now_ms()
    client = {"bootstrap_servers": kafka_broker.bootstrap}
    sources = make_sources(kafka_broker, unique_topic, tmp_path / "definitions", 2500, seed=8_301)
    group = f"g-{unique_topic}"
    topics = [s.topic for s in sources]
    worker = start_worker(kafka_broker, aof_redis.url, unique_topic, tmp_path)
    producer = ChunkedProducer(
        client, {s.topic: s.log.lines for s in sources}, chunks=20, interval=0.4
    )
    admin = aof_redis.client()
    try:
        with watching(client, group, store, sources):
            producer.start()
            worker.wait_for(
                lambda: read_state(worker)[1] > 0, 30, "records applied before the fault"
            )
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", "1")  # below any real use: every write refused
            full = time.monotonic()
            detect = worker.wait_for(lambda: read_state(worker)[0] == 0, 30, "northstar_redis_up 0")
            at_detection = read_state(worker)
            committed = committed_offsets(client, group, topics)
            while time.monotonic() - full < detect + 4.0:
                assert worker.is_running(), f"the worker exited:\n{worker.log_tail()}"
                check_held(worker, at_detection, committed, client, group, topics)
                time.sleep(0.3)
            admin.config_set("maxmemory", "0")
            resume = worker.wait_for(
                lambda: read_state(worker)[0] == 1 and read_state(worker)[1] > at_detection[1],
                30,
                "records applied after memory was raised",
            )
            catch_up, reread, shifted = finish(
                worker, producer, store, sources, clock, client, faults=1
            )
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
        worker.stop()
    print(
        f"\nRedis full (OOM, noeviction): detected {detect:.1f}s after, resumed {resume:.1f}s "
        f"after memory was raised, catch-up {catch_up:.1f}s, {reread} records read twice, "
        f"{shifted} counted late/duplicate after a lost reply"
    )
