"""A definition change on real workers, backfilled from the topic's retention.

Workers run the education tree on a 2-partition topic; the first half of a
generated log is applied; the workers are redeployed with one metric's window
changed (7d -> 14d: a new fingerprint); the second half is applied. The
changed metric then misses history (``northstar state`` says in which
partitions) while every other metric equals the reference on the full log;
``northstar backfill --from-topic`` fills it, after which every metric equals
the reference, the live units were not applied twice, and the old
fingerprint is orphaned with a TTL the workers set."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from ruamel.yaml import YAML

from streamer.kafka.produce import produce_sync
from streamer.spec.model import Tree
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.testing import create_topic
from streamer.testing.services import KafkaService, RedisService
from streamer.testing.worker import WorkerProcess, all_applied, topic_end_offsets, value_differences
from streamer.windows.units import Plan, compile_tree
from tests.eventlog import LogKnobs, generate
from tests.reference import evaluate as reference_evaluate
from tests.reference import ingest
from tests.worker.test_worker import without_late

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
CHANGED = "time_to_first_lesson_p50_seconds"
NS = "change"


def definitions(dest: Path, topic: str, window: str) -> tuple[Path, Tree]:
    doc: Any = YAML(typ="safe").load((ROOT / "definitions" / "education.yaml").read_text())
    doc["source"]["topic"] = topic
    doc["lateness"] = "28d"  # pinned: the change moves no other fingerprint
    for metric in doc["inputs"]:
        if metric["name"] == CHANGED:
            metric["window"] = window
    dest.mkdir(parents=True)
    with (dest / "education.yaml").open("w") as handle:
        YAML(typ="safe").dump(doc, handle)
    return dest, Tree.model_validate(doc)


def northstar(*args: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NORTHSTAR_REDIS_URL": redis_url}
    return subprocess.run([sys.executable, "-m", "streamer.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def wrong_metrics(store: Store, tree: Tree, plan: Plan, lines: list[bytes], clock: int, at: list[int]) -> set[str]:
    accepted = ingest(lines, tree, clock).accepted
    problems: set[str] = set()
    for t, got in zip(at, evaluate(store, plan, at), strict=True):
        problems |= {p.split(":", 1)[0] for p in value_differences(reference_evaluate(tree, accepted, t), got)}
    return problems


@pytest.mark.timeout(300)
def test_definition_change_backfilled_from_topic(
    kafka_broker: KafkaService, redis_server: RedisService, redis_client: redis.Redis,
    unique_topic: str, tmp_path: Path,
) -> None:
    clock = int(time.time() * 1000)
    old_dir, old = definitions(tmp_path / "old", unique_topic, "7d")
    new_dir, new = definitions(tmp_path / "new", unique_topic, "14d")
    plan_old, plan_new = compile_tree(old), compile_tree(new)
    changed = plan_new.readers[CHANGED].unit  # type: ignore[union-attr]
    old_unit = plan_old.readers[CHANGED].unit  # type: ignore[union-attr]
    create_topic(kafka_broker.bootstrap, unique_topic, 2)
    log = without_late(generate(new, 5, LogKnobs(n_events=1200, n_users=30)), new, clock)
    lines = log.lines
    half = len(lines) // 2
    kafka = {"bootstrap_servers": kafka_broker.bootstrap}
    store = Store(redis_client, namespace=NS)
    env = {"NORTHSTAR_NAMESPACE": NS, "NORTHSTAR_DEAD_LETTER_TOPIC": f"{unique_topic}-dl",
           "NORTHSTAR_APP_ID": f"app-{unique_topic}", "NORTHSTAR_STATE_REFRESH_S": "0.5",
           "NORTHSTAR_EVALUATE_INTERVAL_S": "0.5"}
    old_tag = f"{NS}:{{education:{old_unit.fingerprint}}}:*"

    def old_keys_expire() -> bool:
        """Every key of the old fingerprint has a TTL (the leader's touch sets
        one on keys the apply path does not know, e.g. percentile window ends)."""
        keys = list(redis_client.scan_iter(match=old_tag))
        return bool(keys) and all(redis_client.pttl(k) > 0 for k in keys)

    def run_worker(defs: Path, plan: Plan, produced: int, name: str, until: Any = None) -> None:
        ends = topic_end_offsets(kafka, unique_topic, produced)
        with WorkerProcess([defs], bootstrap=kafka_broker.bootstrap, redis_url=redis_server.url,
                           group=f"g-{unique_topic}", session_timeout_ms=3000, env=env,
                           workdir=tmp_path / name, name=name) as worker:
            worker.wait_for(lambda: all_applied(store, [plan], unique_topic, ends), 90,
                            "every unit applied to the end of the topic")
            if until is not None:
                worker.wait_for(until, 30, until.__doc__.split(".")[0])

    assert produce_sync(lines[:half], unique_topic, kafka) == half
    run_worker(old_dir, plan_old, half, "old")
    assert produce_sync(lines[half:], unique_topic, kafka) == len(lines) - half
    run_worker(new_dir, plan_new, len(lines), "new", until=old_keys_expire)

    at = log.midnights()
    assert wrong_metrics(store, new, plan_new, lines, clock, at) == {CHANGED}
    listed = northstar("state", "-d", str(new_dir), "--namespace", NS, "--json", redis_url=redis_server.url)
    assert listed.returncode == 0, listed.stderr
    entries = {(e["tree"], e["fingerprint"]): e for e in map(orjson.loads, listed.stdout.splitlines())}
    assert entries[("education", changed.fingerprint)]["missing_history_partitions"]
    assert entries[("education", old_unit.fingerprint)]["status"] == "orphaned"
    assert all(entries[("education", u.fingerprint)]["status"] == "live" for u in plan_new.units)
    live_applied = {u.fingerprint: redis_client.hgetall(store.keys.applied(u))
                    for u in plan_new.units if u != changed}

    filled = northstar("backfill", "-d", str(new_dir), "--namespace", NS, "--from-topic",
                       "--kafka", kafka_broker.bootstrap, "--json", redis_url=redis_server.url)
    assert filled.returncode == 0, filled.stderr
    reports = [orjson.loads(line) for line in filled.stdout.splitlines()]
    assert {u["fingerprint"] for r in reports for u in r["units"]} == {changed.fingerprint}
    assert sum(r["records"] for r in reports) >= 1

    assert wrong_metrics(store, new, plan_new, lines, clock, at) == set()
    for fp, applied in live_applied.items():
        unit = next(u for u in plan_new.units if u.fingerprint == fp)
        assert redis_client.hgetall(store.keys.applied(unit)) == applied, "a live unit was backfilled"
    listed = northstar("state", "-d", str(new_dir), "--namespace", NS, "--json", redis_url=redis_server.url)
    entries = {(e["tree"], e["fingerprint"]): e for e in map(orjson.loads, listed.stdout.splitlines())}
    assert entries[("education", changed.fingerprint)]["missing_history_partitions"] == []
    old_entry = entries[("education", old_unit.fingerprint)]
    horizon_plus_grace = plan_old.horizon_ms + 86_400_000
    assert old_entry["keys_without_ttl"] == 0 and 0 < old_entry["ttl_ms_max"] <= horizon_plus_grace

    again = northstar("backfill", "-d", str(new_dir), "--namespace", NS, "--from-topic",
                      "--kafka", kafka_broker.bootstrap, "--json", redis_url=redis_server.url)
    assert again.returncode == 0, again.stderr
    assert all(orjson.loads(line)["units"] == [] for line in again.stdout.splitlines())
