"""A restarted worker with an instance id ends its killed process's group
membership (streamer/worker/membership.py, docs/worker.md)."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from streamer.testing import create_topic
from streamer.testing.services import KafkaService, RedisService
from streamer.testing.worker import WorkerProcess, tree_on_topic
from streamer.worker.membership import Membership, instance_name, is_foreign, member_id
from streamer.worker.settings import WorkerSettings

DEFINITIONS = Path(__file__).resolve().parents[2] / "definitions"
SESSION_MS = 3000


def test_instance_name_replaces_the_hostname() -> None:
    assert instance_name("{hostname}-a", "pod-7") == "pod-7-a"
    assert instance_name("{hostname}") == socket.gethostname()
    assert instance_name("worker-1", "pod-7") == "worker-1"


def test_a_record_held_by_another_live_worker_is_foreign() -> None:
    assert not is_foreign(None, set(), None)  # first record
    assert not is_foreign("m1", {"m1", "m2"}, None)  # this process's own earlier id
    assert not is_foreign("dead", {"m2"}, "dead")  # the killed process's, left for at start
    assert is_foreign("m9", {"m2"}, "dead")  # someone else wrote it meanwhile


@pytest.mark.parametrize("bad", ["", "two words"])
def test_an_empty_or_spaced_instance_id_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="instance_id"):
        WorkerSettings(instance_id=bad)


def _worker(kafka: KafkaService, redis_url: str, topic: str, tmp_path: Path, instance: str | None) -> WorkerProcess:
    definitions = tmp_path / "definitions"
    tree_on_topic(DEFINITIONS / "education.yaml", topic, definitions)
    env = {"NORTHSTAR_NAMESPACE": "mb", "NORTHSTAR_DEAD_LETTER_TOPIC": f"{topic}-dl", "NORTHSTAR_APP_ID": f"app-{topic}"}
    if instance is not None:
        env["NORTHSTAR_INSTANCE_ID"] = instance
    return WorkerProcess([definitions], bootstrap=kafka.bootstrap, redis_url=redis_url, group=f"g-{topic}",
                         session_timeout_ms=SESSION_MS, env=env, name="w", workdir=tmp_path / "w", ready_timeout=60)


@pytest.mark.services
@pytest.mark.timeout(120)
def test_a_restarted_worker_leaves_the_group_for_its_killed_process(
    kafka_broker: KafkaService, redis_server: RedisService, redis_client: redis.Redis, unique_topic: str,
    tmp_path: Path,
) -> None:
    create_topic(kafka_broker.bootstrap, unique_topic, 2)
    key = f"mb:member:g-{unique_topic}:{socket.gethostname()}-w"
    group = f"g-{unique_topic}"
    with _worker(kafka_broker, redis_server.url, unique_topic, tmp_path, "{hostname}-w") as worker:
        worker.wait_for(lambda: redis_client.get(key) is not None, 30, "its member id recorded")
        recorded = redis_client.get(key)
        worker.kill()
        first = _joined_as(worker.log_path.read_text(), group)
        assert recorded is not None and recorded.decode() == first[-1], (recorded, first)
        worker.launch()
        worker.wait_ready()
        log = worker.log_path.read_text()
        restarted = _joined_as(log.split("--- start 2 ---")[1], group)
        assert restarted and first[-1] not in restarted
        # before it joined, the restarted process left the group for the killed one
        line = f"previous member {first[-1]} (this instance's killed process): left"
        assert line in log, worker.log_tail()
        assert log.index(line) < log.index(f"with member_id {restarted[0]}")
        assert worker.by_label("northstar_previous_member_leaves_total", "outcome") == {
            "left": 1.0, "refused": 0.0, "failed": 0.0}
        worker.wait_for(lambda: redis_client.get(key) == restarted[-1].encode(), 30, "the new member id recorded")
        worker.terminate()
    assert redis_client.get(key) is None, "a clean stop deletes the record"


def _joined_as(log: str, group: str) -> list[str]:
    """The member ids aiokafka logged joining ``group`` with, in order."""
    return re.findall(rf"Joined group '{re.escape(group)}' \(generation \d+\) with member_id (\S+)", log)


@pytest.mark.services
@pytest.mark.timeout(120)
def test_without_an_instance_id_nothing_is_recorded_or_left(
    kafka_broker: KafkaService, redis_server: RedisService, redis_client: redis.Redis, unique_topic: str,
    tmp_path: Path,
) -> None:
    create_topic(kafka_broker.bootstrap, unique_topic, 1)
    with _worker(kafka_broker, redis_server.url, unique_topic, tmp_path, None) as worker:
        worker.kill()
        worker.launch()
        worker.wait_ready()
        worker.terminate()  # well after its assignments: a record would have been written by now
    assert list(redis_client.scan_iter(match="mb:member:*")) == []
    log = worker.log_path.read_text()
    assert "assigned [" in log and "previous member" not in log


async def _leave_with(bootstrap: str, client: redis.Redis, key: str, group: str) -> str | None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await Membership(client, key, group, timeout_s=10).leave_for_previous(consumer)
    finally:
        await consumer.stop()


async def _leave_removes(bootstrap: str, client: redis.Redis, key: str, group: str, topic: str) -> tuple[str, str]:
    from aiokafka import AIOKafkaConsumer

    def consumer(**kwargs: object) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                session_timeout_ms=30_000, rebalance_timeout_ms=30_000, heartbeat_interval_ms=300,
                                **kwargs)

    member = consumer()
    await member.start()
    other = consumer()
    await other.start()
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 60
        while not member.assignment():
            assert time.monotonic() < deadline, "the member never joined"
            await member.getmany(timeout_ms=100)
        joined = member_id(member)
        assert joined is not None
        client.set(key, joined)
        assert await Membership(client, key, group, timeout_s=10).leave_for_previous(other) == "left"
        # the member is out of the group: its next heartbeat is refused and it
        # joins again under a new id, long before its 30 s session could expire
        deadline = time.monotonic() + 15
        while member_id(member) in (None, joined):
            assert time.monotonic() < deadline, "the member is still in the group"
            await member.getmany(timeout_ms=100)
        return joined, str(member_id(member))
    finally:
        await other.stop()
        await member.stop()


@pytest.mark.services
@pytest.mark.timeout(120)
def test_the_leave_removes_a_member_from_the_group(
    kafka_broker: KafkaService, redis_client: redis.Redis, unique_topic: str,
) -> None:
    create_topic(kafka_broker.bootstrap, unique_topic, 1)
    group = f"g-{unique_topic}"
    before, after = asyncio.run(_leave_removes(kafka_broker.bootstrap, redis_client, f"mb:member:{group}:x", group,
                                               unique_topic))
    assert before != after


@pytest.mark.services
@pytest.mark.timeout(120)
def test_an_unknown_member_and_an_unreachable_redis_are_answers_not_failures(
    kafka_broker: KafkaService, redis_client: redis.Redis, unique_topic: str,
) -> None:
    group = f"g-{unique_topic}"
    key = f"mb:member:{group}:x"
    assert asyncio.run(_leave_with(kafka_broker.bootstrap, redis_client, key, group)) is None  # nothing recorded
    redis_client.set(key, "aiokafka-0-not-a-member")
    # Apache Kafka answers UNKNOWN_MEMBER_ID; Tansu answers without an error
    answer = asyncio.run(_leave_with(kafka_broker.bootstrap, redis_client, key, group))
    assert answer in ("left", "UnknownMemberIdError"), answer
    unreachable = redis.Redis(port=1, socket_connect_timeout=1)
    assert asyncio.run(_leave_with(kafka_broker.bootstrap, unreachable, key, group)) is None
