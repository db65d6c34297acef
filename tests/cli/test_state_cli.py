"""``northstar state`` and ``northstar backfill --from-file`` from the command
line: listing live / orphaned / removed-tree state, giving TTLs to state that
has none, dropping orphans only when confirmed, and bad arguments (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from ruamel.yaml import YAML

from streamer.backfill import file_records
from streamer.cli import main
from streamer.cli.replay import format_time
from streamer.engine import BatchApplier
from streamer.replay import REPLAY_PARTITION
from streamer.state.store import Store
from streamer.testing.services import RedisService
from streamer.windows.units import compile_tree
from tests.eventlog import LogKnobs, generate
from tests.state.test_lifecycle import CHANGED, differences, education
from tests.trees import example

pytestmark = pytest.mark.services

NS = "cli"


def write(tree_doc: Any, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with (path / "education.yaml").open("w") as handle:
        YAML(typ="safe").dump(tree_doc, handle)
    return path


def listing(capsys: pytest.CaptureFixture[str], *args: str) -> dict[tuple[str, str | None], dict[str, Any]]:
    assert main(["state", *args, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {(r["tree"], r["fingerprint"]): r for r in rows}


def test_state_lists_touches_drops_and_backfills(
    redis_server: RedisService, redis_client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = education("7d"), education("14d")
    defs = write(new.model_dump(mode="json", by_alias=True, exclude_none=True), tmp_path / "defs")
    log = generate(new, 2, LogKnobs(n_events=300))
    records = list(file_records(log.lines))
    half = len(records) // 2
    store = Store(redis_client, namespace=NS)
    # state written before expiry existed (no refresher: no TTLs), by old then new definitions,
    # plus a tree the definitions no longer hold
    BatchApplier(store, [old]).apply(REPLAY_PARTITION, records[:half], log.now_ms)
    BatchApplier(store, [new]).apply(REPLAY_PARTITION, records[half:], log.now_ms)
    BatchApplier(store, [example("learning_users")]).apply(REPLAY_PARTITION, records[:5], log.now_ms)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(log.lines) + b"\n")
    base = ["-d", str(defs), "--redis", redis_server.url, "--namespace", NS]

    changed = compile_tree(new).readers[CHANGED].unit  # type: ignore[union-attr]
    old_fp = compile_tree(old).readers[CHANGED].unit.fingerprint  # type: ignore[union-attr]
    rows = listing(capsys, *base)
    assert rows[("education", changed.fingerprint)]["missing_history_partitions"] == [REPLAY_PARTITION]
    assert rows[("education", old_fp)]["status"] == "orphaned"
    assert rows[("education", None)]["status"] == "live"
    removed = {k: r for k, r in rows.items() if r["status"] == "removed-tree"}
    assert removed and all(t == "learning_users" for t, _ in removed)
    assert all(r["keys_without_ttl"] == r["keys"] > 0 for r in rows.values())
    assert all(r["memory_bytes"] > 0 for r in rows.values())

    # --touch: live keys get the retention, orphans get a TTL
    rows = listing(capsys, *base, "--touch", "--retention", "100")
    assert all(r["keys_without_ttl"] == 0 for r in rows.values())
    assert all(90_000 < r["ttl_ms_min"] <= 100_000 for r in rows.values() if r["status"] == "live")

    # backfill from the file: the changed metric gets its history
    now = ["--now", format_time(log.now_ms)]  # the clock the live applies used
    assert main(["backfill", *base, "--from-file", str(events), *now, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [u["fingerprint"] for u in report["units"]] == [changed.fingerprint]
    assert differences(new, store, log.lines, log.now_ms, log.midnights()) == {}
    rows = listing(capsys, *base)
    assert rows[("education", changed.fingerprint)]["missing_history_partitions"] == []

    # --drop-orphans needs --yes; it drops the orphaned fingerprint only
    assert main(["state", *base, "--drop-orphans"]) == 2
    live_keys = {k: r["keys"] for k, r in rows.items() if r["status"] != "orphaned"}
    rows = listing(capsys, *base, "--drop-orphans", "--yes")
    assert not [r for r in rows.values() if r["status"] == "orphaned"]
    assert {k: r["keys"] for k, r in rows.items()} == live_keys
    assert differences(new, store, log.lines, log.now_ms, log.midnights()) == {}


@pytest.mark.parametrize(
    "args",
    [
        ["state", "--yes"],
        ["state", "--drop-orphans"],
        ["state", "--drop-orphans", "--yes", "--touch"],
        ["state", "--retention", "5"],
        ["state", "--touch", "--retention", "0"],
        ["state", "--touch", "--grace", "-1"],
        ["state", "--bogus"],
        ["backfill"],
        ["backfill", "--from-topic", "--from-file", "x.jsonl"],
        ["backfill", "--from-file", "/nonexistent.jsonl"],
        ["backfill", "--from-topic", "--partition", "t:0"],
        ["backfill", "--from-file", "-", "--kafka", "localhost:9092"],
        ["backfill", "--from-file", "-", "--batch-size", "0"],
        ["backfill", "--from-file", "-", "--first-offset", "-1"],
        ["backfill", "--from-file", "-", "--now", "yesterday"],
    ],
)
def test_bad_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert "error" in capsys.readouterr().err
