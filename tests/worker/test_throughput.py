"""Opt-in benchmark (not pass/fail): how fast one ``northstar worker`` process
applies a backlog of simulated events, both example trees.

    NORTHSTAR_BENCH=1 python -m pytest -s tests/worker/test_throughput.py

``NORTHSTAR_BENCH_EVENTS`` (default 200000) sets the size per tree; the
figures go to docs/worker.md.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest
import redis

from streamer.kafka.produce import produce_sync
from streamer.sim.models import simulate
from streamer.sim.scenarios import Drift
from streamer.state.store import Store
from streamer.testing import create_topic
from streamer.testing.services import KafkaService, RedisService
from streamer.testing.worker import (
    WorkerProcess,
    all_applied,
    load_tree,
    topic_end_offsets,
    tree_on_topic,
)
from streamer.windows.units import compile_tree

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not os.environ.get("NORTHSTAR_BENCH"), reason="benchmark: set NORTHSTAR_BENCH=1"),
]

ROOT = Path(__file__).resolve().parents[2]
EVENTS = int(os.environ.get("NORTHSTAR_BENCH_EVENTS", "200000"))
START_MS = 1_709_510_400_000
# users per simulated tree so that 60 days give about EVENTS events
USERS_PER_1K = {"education": 14, "learning_users": 47}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["education", "learning_users"])
def test_worker_throughput(
    name: str,
    kafka_broker: KafkaService,
    redis_server: RedisService,
    redis_client: redis.Redis,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    client = {"bootstrap_servers": kafka_broker.bootstrap}
    create_topic(kafka_broker.bootstrap, unique_topic, 1)
    tree = load_tree(tree_on_topic(ROOT / "definitions" / f"{name}.yaml", unique_topic, tmp_path))
    plan = compile_tree(tree)
    users = max(50, EVENTS * USERS_PER_1K[name] // 1000)
    lines = [orjson.dumps(e) for e in simulate(name, START_MS, 60, Drift(), seed=5, users=users)]
    produced = time.monotonic()
    assert produce_sync(lines, unique_topic, client) == len(lines)
    produce_s = time.monotonic() - produced
    ends = topic_end_offsets(client, unique_topic, len(lines))
    store = Store(redis_client, namespace="bench")

    started = time.monotonic()
    with WorkerProcess(
        [tmp_path],
        bootstrap=kafka_broker.bootstrap,
        redis_url=redis_server.url,
        group=f"g-{unique_topic}",
        session_timeout_ms=3000,
        env={"NORTHSTAR_NAMESPACE": "bench", "NORTHSTAR_APP_ID": f"app-{unique_topic}",
             "NORTHSTAR_DEAD_LETTER_TOPIC": f"{unique_topic}-dlq"},
        workdir=tmp_path / "worker",
        ready_timeout=120,
    ) as worker:
        ready = time.monotonic() - started
        applied_s = worker.wait_for(lambda: all_applied(store, [plan], unique_topic, ends), 600, "backlog applied")
        batches = worker.total("northstar_batches_total")
        latency_sum = worker.total("northstar_batch_processing_seconds_sum")
    used = redis_client.info("memory")["used_memory"]
    print(
        f"\n{name}: {len(lines)} events ({len(plan.units)} units); produce {produce_s:.1f}s "
        f"({len(lines) / produce_s:,.0f}/s); worker ready after {ready:.1f}s; backlog applied in "
        f"{applied_s:.1f}s after ready ({len(lines) / applied_s:,.0f} events/s); {batches:.0f} batches, "
        f"mean {latency_sum / max(batches, 1) * 1000:.0f} ms per batch; Redis used_memory {used / 1e6:.0f} MB"
    )
