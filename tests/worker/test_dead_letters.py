"""Dead letters from a real worker: the decoder corpus's malformed messages,
mixed into valid events on one partition, go to the dead-letter topic
unchanged with their reason; the valid events around them (same batch) and
after them are applied; the worker keeps running."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from streamer.events.types import REASONS
from streamer.kafka.produce import event_key, produce_sync
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.testing import create_topic
from streamer.testing.services import KafkaService, RedisService
from streamer.testing.worker import (
    WorkerProcess,
    all_applied,
    load_tree,
    read_records,
    topic_end_offsets,
    tree_on_topic,
    value_differences,
)
from streamer.windows.units import compile_tree
from streamer.worker.deadletter import DETAIL_HEADER, REASON_HEADER, SOURCE_HEADER
from tests.eventlog import default_knobs, generate
from tests.reference import evaluate as reference_evaluate
from tests.reference import ingest

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "events" / "corpus" / "cases.jsonl"
YEAR_MS = 365 * 86_400_000
SEED = 4711


def message(case: dict[str, Any]) -> bytes:
    """The corpus case's message bytes (as tests/events/test_decode.py sends them)."""
    if "raw_hex" in case:
        return bytes.fromhex(case["raw_hex"])
    if "raw" in case:
        return str(case["raw"]).encode("utf-8")
    return orjson.dumps(case["obj"])


def bad_cases(clock_ms: int, max_event_bytes: int) -> list[tuple[str, bytes, str]]:
    """(case, message, expected reason) of every malformed corpus case that the
    tree's default source rejects at the real clock: cases with ``source``
    overrides need another source, and a ``future_time`` case is kept only when
    its time stays in the future (the corpus decodes at 2024-06-01). Plus an
    event one byte over ``max_event_bytes`` (the corpus's own oversize cases
    use a 256-byte limit)."""
    out = []
    for line in CORPUS.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        case = orjson.loads(line)
        if case["expect"] == "event" or "source" in case:
            continue
        if case["expect"] == "future_time":
            t = case.get("obj", {}).get("time")
            if not (isinstance(t, int) and t > clock_ms + YEAR_MS):
                continue
        out.append((case["case"], message(case), case["expect"]))
    big = {"event_type": "lesson_completed", "user_id": "u-big", "time": 1_717_100_000_000}
    padding = max_event_bytes + 1 - len(orjson.dumps({**big, "event_properties": {"pad": ""}}))
    oversize = orjson.dumps({**big, "event_properties": {"pad": "x" * padding}})
    assert len(oversize) == max_event_bytes + 1
    out.append(("one byte over max_event_bytes", oversize, "oversize"))
    return out


@pytest.mark.timeout(120)
def test_dead_letters(
    kafka_broker: KafkaService,
    redis_server: RedisService,
    redis_client: redis.Redis,
    unique_topic: str,
    tmp_path: Path,
) -> None:
    clock = int(time.time() * 1000)
    client = {"bootstrap_servers": kafka_broker.bootstrap}
    create_topic(kafka_broker.bootstrap, unique_topic, 1)
    dead_letter_topic = f"{unique_topic}-dead-letters"
    tree = load_tree(tree_on_topic(ROOT / "definitions" / "education.yaml", unique_topic, tmp_path))
    plan = compile_tree(tree)
    store = Store(redis_client, namespace="dlq")

    bad = bad_cases(clock, tree.source.max_event_bytes)
    assert {reason for _, _, reason in bad} >= set(REASONS) - {"unsupported_type"}
    # the generator's own malformed lines are left out: every rejection is a corpus case
    knobs = replace(default_knobs(tree), n_events=1200, p_malformed=0.0)
    valid = generate(tree, SEED, knobs).lines
    first, after = valid[:900], valid[900:]
    rng = random.Random(SEED)
    mixed: list[bytes] = list(first)
    positions = sorted(rng.sample(range(len(first) + len(bad)), len(bad)))
    for position, (_, raw, _) in zip(positions, bad, strict=True):
        mixed.insert(position, raw)
    # offsets of the bad records: the topic is new and has one partition
    expected = {
        mixed.index(raw): (name, raw, reason) for name, raw, reason in bad
    }
    assert len(expected) == len(bad), "two corpus cases send the same bytes"

    # produced before the worker starts: its first fetch holds bad and good records together
    assert produce_sync(mixed, unique_topic, client) == len(mixed)
    ends = topic_end_offsets(client, unique_topic, len(mixed))
    assert ends == {0: len(mixed) - 1}

    with WorkerProcess(
        [tmp_path],
        bootstrap=kafka_broker.bootstrap,
        redis_url=redis_server.url,
        group=f"g-{unique_topic}",
        session_timeout_ms=6000,  # exact counters: no rebalance from a late heartbeat
        env={
            "NORTHSTAR_NAMESPACE": "dlq",
            "NORTHSTAR_DEAD_LETTER_TOPIC": dead_letter_topic,
            "NORTHSTAR_APP_ID": f"app-{unique_topic}",
        },
        workdir=tmp_path / "worker",
    ) as worker:
        worker.wait_for(lambda: all_applied(store, [plan], unique_topic, ends), 60, "corpus applied")

        letters = read_records(client, dead_letter_topic, lambda got: len(got) >= len(bad), 30)
        assert worker.total("northstar_dead_letters_total") == len(bad) == len(letters)
        seen: dict[int, Any] = {}
        for letter in letters:
            headers = {k: v for k, v in letter.headers}
            topic, partition, offset = headers[SOURCE_HEADER].decode().rsplit(":", 2)
            assert (topic, partition) == (unique_topic, "0")
            assert int(offset) not in seen, f"offset {offset} dead-lettered twice"
            seen[int(offset)] = letter
            name, raw, reason = expected[int(offset)]
            assert (letter.value or b"") == raw, name
            assert letter.key == event_key(raw), name
            assert headers[REASON_HEADER].decode() == reason, name
            assert headers[DETAIL_HEADER], name
        assert sorted(seen) == sorted(expected)

        # everything was on the topic before the worker started: one fetch, one
        # batch, bad and good records side by side
        assert worker.total("northstar_batches_total") == 1
        # the batch's time per stage: each stage once, inside its fetch-to-commit time
        assert worker.by_label("northstar_batch_stage_seconds_count", "stage") == {
            "prepare": 1.0, "verdicts": 1.0, "aggregate": 1.0, "apply": 1.0
        }
        stages = worker.by_label("northstar_batch_stage_seconds_sum", "stage")
        assert all(seconds > 0 for seconds in stages.values()), stages
        assert sum(stages.values()) <= worker.total("northstar_batch_processing_seconds_sum"), stages
        per_reason = Counter(reason for _, _, reason in bad)
        assert worker.by_label("northstar_events_invalid_total", "reason") == {
            k: float(v) for k, v in per_reason.items()
        }

        # still alive, still applying what comes after the corpus
        assert produce_sync(after, unique_topic, client) == len(after)
        later = {0: len(mixed) + len(after) - 1}
        worker.wait_for(lambda: all_applied(store, [plan], unique_topic, later), 60, "later events applied")
        assert worker.is_running()
        # the counter moves after the Kafka commit, which follows the Redis apply: poll
        total = len(mixed) + len(after)
        worker.wait_for(lambda: worker.total("northstar_events_total") == total, 30, "events counted")

    lines = mixed + after
    want_counts = ingest(lines, tree, clock).counts
    assert {k.split(":", 1)[1]: v for k, v in want_counts.items() if k.startswith("rejected:")} == per_reason
    accepted = ingest(lines, tree, clock).accepted
    midnights = generate(tree, SEED, knobs).midnights()
    problems: list[str] = []
    for at, got in zip(midnights, evaluate(store, plan, midnights), strict=True):
        problems += value_differences(reference_evaluate(tree, accepted, at), got, label=f"@ {at}: ")
    assert not problems, "\n".join(problems)
