"""Fault: the worker running the evaluator (the faust leader) is SIGKILLed while
the divergence alert is pending / firing (docs/alerts.md, "Leader fail-over
and delivery guarantees").

Two workers in one group read the education tree (2 partitions) while the
simulator streams a Goodhart inflation on a compressed clock; alert events go
to a Kafka topic and a webhook. When the first alert event (``pending``)
reaches the webhook, the worker whose ``northstar_evaluations_total`` moves
(the leader) is killed. The survivor must become leader and evaluate within a
bounded time, and the alert's transitions must all be delivered, to both
sinks, in order:

- the delivered transitions form one unbroken chain from ``inactive`` (each
  event's ``previous_state`` is the state of the one before) that ends in the
  state stored in Redis, and they are exactly the state changes in the
  evaluator's own history of committed evaluations: none lost, none invented;
- each transition carries a deterministic ``event_id``; a sink receives an
  event twice only if a leader died between that sink's acknowledgement and
  the acknowledgement mark in Redis (at most once per sink per kill), and the
  repeat has the same ``event_id``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from streamer.evaluate.delivery import event_key
from streamer.state.keys import Keys
from streamer.testing import create_topic
from streamer.testing.services import KafkaService, RedisService
from streamer.testing.worker import WorkerProcess, read_records, tree_on_topic

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
SESSION_MS = 3000
SPEED = "20000"  # one wall second = 5.6 simulated hours
KILLS = 1


class Webhook:
    """Records every JSON body POSTed to it (``url``), from a thread."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[dict[str, Any]]
        lock = self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:
                    received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    hook.thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()


def history_transitions(client: redis.Redis, keys: Keys, tree: str) -> list[tuple[str, str]]:
    """``(previous state, state)`` of every divergence state change in the
    evaluator's committed history, in evaluation order."""
    rows = [orjson.loads(blob) for blob, _ in client.zrange(keys.tree(tree, "history"), 0, -1, withscores=True)]
    rows.sort(key=lambda r: (r["at"], r["evaluated_at"]))
    out: list[tuple[str, str]] = []
    state = "inactive"
    for row in rows:
        now = row["divergence"]["state"]
        if now != state:
            out.append((state, now))
            state = now
    return out


def chain(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` without repeats (same ``event_id``), in delivery order."""
    seen: set[str] = set()
    out = []
    for e in events:
        if event_key(e) not in seen:
            seen.add(event_key(e))
            out.append(e)
    return out


@pytest.mark.timeout(240)
def test_leader_killed_while_alert_pending(
    kafka_broker: KafkaService,
    redis_server: RedisService,
    redis_client: redis.Redis,
    unique_topic: str,
    webhook: Webhook,
    tmp_path: Path,
) -> None:
    client = {"bootstrap_servers": kafka_broker.bootstrap}
    create_topic(kafka_broker.bootstrap, unique_topic, 2)
    alerts = f"{unique_topic}-alerts"
    definitions = tree_on_topic(ROOT / "definitions" / "education.yaml", unique_topic, tmp_path / "defs")
    keys = Keys("lk")

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(
            [definitions],
            bootstrap=kafka_broker.bootstrap,
            redis_url=redis_server.url,
            group=f"g-{unique_topic}",
            session_timeout_ms=SESSION_MS,
            env={
                "NORTHSTAR_NAMESPACE": "lk",
                "NORTHSTAR_APP_ID": f"app-{unique_topic}",
                "NORTHSTAR_DEAD_LETTER_TOPIC": f"{unique_topic}-dead",
                "NORTHSTAR_ALERTS_TOPIC": alerts,
                "NORTHSTAR_SNAPSHOTS_TOPIC": f"{unique_topic}-snapshots",
            },
            args=["--evaluate-interval", "0.5", "--webhook", webhook.url],
            name=name,
            workdir=tmp_path / name,
        )

    workers = [worker("w1"), worker("w2")]
    sim = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "simulate", "--tree", "education", "--kafka",
         kafka_broker.bootstrap, "--topic", unique_topic, "--backfill-days", "28", "--speed", SPEED,
         "--scenario", "healthy", "--switch-to", "goodhart", "--switch-after-days", "0",
         "--duration", "200", "--seed", "3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )

    def evaluations(w: WorkerProcess) -> float:
        return w.total("northstar_evaluations_total") if w.is_running() else 0.0

    def snapshot() -> dict[str, Any]:
        raw = redis_client.get(keys.tree("education", "snapshot"))
        return orjson.loads(raw) if raw else {}

    try:
        for w in workers:
            w.launch()
        workers[0].wait_for(
            lambda: sum((w.sample("northstar_assigned_partitions") or 0) for w in workers) == 2
            and all(w.is_running() for w in workers),
            60,
            "the two workers own the 2 partitions",
        )
        last = {w.name: 0.0 for w in workers}
        mover: list[WorkerProcess] = []

        def pending() -> bool:
            # the kill follows the evaluation that made the alert pending by
            # ~0.1 s, before the next one (0.5 s) can make it fire
            for w in workers:
                count = evaluations(w)
                if count > last[w.name]:
                    last[w.name] = count
                    mover[:] = [w]
            return snapshot().get("divergence", {}).get("state") == "pending"

        workers[0].wait_for(pending, 150, "the divergence alert pending (in Redis)")
        assert mover, "no worker evaluated"
        victim = mover[0]
        survivor = next(w for w in workers if w is not victim)
        delivered_at_kill = len(webhook.events())
        state_at_kill = snapshot()["divergence"]["state"]
        killed_wall = time.time()
        killed = time.monotonic()
        victim.kill()
        survivor.wait_for(lambda: evaluations(survivor) > 0, 60, "the survivor evaluates")
        first_eval_s = time.monotonic() - killed
        survivor.wait_for(lambda: snapshot()["evaluated_at"] > killed_wall * 1000, 30,
                          "a snapshot written after the kill")
        snapshot_s = time.monotonic() - killed
        at_first = snapshot()["at"]
        survivor.wait_for(lambda: any(e["state"] == "firing" for e in webhook.events()), 90,
                          "the divergence alert firing (an event on the webhook)")
        survivor.wait_for(lambda: snapshot()["at"] > at_first, 30, "evaluation time moving on")
    finally:
        sim.kill()
        sim.wait(timeout=30)
    try:
        # nothing left to deliver, then one more evaluation (so a last transition is in)
        def drained() -> bool:
            return redis_client.llen(keys.tree("education", "outbox")) == 0 and \
                redis_client.llen(keys.tree("education", "inflight")) == 0

        # the workers still apply the simulator's backlog after it stopped, and
        # each evaluation may move the alert on: compare once the evaluation
        # time and the history stay the same over two evaluations
        settled: tuple[Any, Any] | None = None
        deadline = time.monotonic() + 90
        while True:
            survivor.wait_for(drained, 30, "the outbox and in-flight list empty")
            count = evaluations(survivor)
            survivor.wait_for(lambda: evaluations(survivor) >= count + 2 and drained(), 30,  # noqa: B023
                              "two more evaluations, everything delivered")
            now = (snapshot()["at"], history_transitions(redis_client, keys, "education"))
            if now == settled:
                break
            settled = now
            assert time.monotonic() < deadline, f"the evaluation never settled: last {now}"
        final_state = orjson.loads(redis_client.get(keys.tree("education", "evalstate")) or b"{}")
        transitions = settled[1]
        hooked = webhook.events()
        records = read_records(client, alerts, lambda got: len(got) >= len(chain(hooked)), 30)
    finally:
        for w in workers:
            w.stop()

    kafka_events = [orjson.loads(r.value) for r in records]
    assert all(r.key == orjson.loads(r.value)["id"].encode() for r in records), "Kafka key != alert id"
    for sink, events in (("kafka", kafka_events), ("webhook", hooked)):
        unique = chain(events)
        pairs = [(e["previous_state"], e["state"]) for e in unique]
        assert pairs == transitions, f"{sink}: delivered {pairs}, the evaluator's history {transitions}"
        assert unique[-1]["state"] == final_state["divergence"]["state"], sink
        states = [e["state"] for e in unique]
        assert states[0] == "pending" and "firing" in states, f"{sink}: {states}"
        repeats = Counter(event_key(e) for e in events)
        twice = {k: n for k, n in repeats.items() if n > 1}
        assert all(n == 2 for n in twice.values()) and len(twice) <= KILLS, f"{sink} repeats: {twice}"
    hours = [(e["state"], round((e["since"] - at_first) / 3.6e6, 1)) for e in chain(hooked)]
    print(
        f"\nleader {victim.name} killed with the alert {state_at_kill} ({delivered_at_kill} events "
        f"delivered to the webhook by then); survivor {survivor.name}: "
        f"first evaluation {first_eval_s:.1f}s after the kill, first snapshot written "
        f"{snapshot_s:.1f}s after; transitions (state, simulated hours since the survivor's first "
        f"evaluation): {hours}; delivered: kafka "
        f"{len(kafka_events)} messages for {len(chain(kafka_events))} transitions, webhook "
        f"{len(hooked)} for {len(chain(hooked))}"
    )
