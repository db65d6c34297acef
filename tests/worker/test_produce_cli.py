"""``northstar produce`` as a subprocess: every non-blank line of the file
reaches the topic unchanged, keyed by its user, one user's events in one
partition and in file order."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from streamer.kafka.produce import event_key
from streamer.testing.services import KafkaService
from streamer.testing.worker import read_records

pytestmark = pytest.mark.services

PARTITIONS = 3


def events(rng: random.Random, n: int) -> list[bytes]:
    """Amplitude and Segment events of 25 users, and lines without a user."""
    out: list[bytes] = []
    for i in range(n):
        user = f"user-{rng.randrange(25)}"
        roll = rng.random()
        if roll < 0.7:
            doc: dict[str, object] = {
                "event_type": "lesson_completed",
                "user_id": user,
                "time": 1_717_100_000_000 + i,
                "insert_id": f"i-{i}",
                "event_properties": {"minutes": rng.randrange(60)},
            }
        elif roll < 0.9:
            doc = {"type": "track", "event": "Lesson Completed", "userId": user, "messageId": f"m-{i}"}
        elif roll < 0.95:
            doc = {"event_type": "lesson_completed", "time": 1_717_100_000_000 + i}  # no user
        else:
            out.append(b"not json, no user {" + str(i).encode())
            continue
        out.append(orjson.dumps(doc))
    return out


@pytest.mark.timeout(120)
def test_produce_cli_keys_by_user(kafka_broker: KafkaService, unique_topic: str, tmp_path: Path) -> None:
    lines = events(random.Random(99), 3000)
    path = tmp_path / "events.jsonl"
    # blank lines are skipped, not sent
    path.write_bytes(b"\n".join(lines[:1000]) + b"\n\n  \n" + b"\n".join(lines[1000:]) + b"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NORTHSTAR_")}
    done = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "produce", str(path), "--topic", unique_topic,
         "--kafka", kafka_broker.bootstrap, "--partitions", str(PARTITIONS)],
        capture_output=True,
        timeout=90,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert f"produced {len(lines)} events to {unique_topic}".encode() in done.stderr

    client = {"bootstrap_servers": kafka_broker.bootstrap}
    records = read_records(client, unique_topic, lambda got: len(got) >= len(lines), 60)
    assert sorted(r.value for r in records) == sorted(lines)
    assert len({r.partition for r in records}) == PARTITIONS

    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    in_order: dict[bytes, list[bytes]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert r.key == event_key(r.value)
        if r.key is not None:
            partitions_of[r.key].add(r.partition)
            in_order[r.key].append(r.value)
    assert len(partitions_of) == 25
    assert all(len(p) == 1 for p in partitions_of.values()), "a user's events in several partitions"
    for key, values in in_order.items():
        assert values == [line for line in lines if event_key(line) == key], key
