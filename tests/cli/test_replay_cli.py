"""``northstar simulate`` and ``northstar replay`` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from streamer.cli import main
from tests.reference import reference_values
from tests.trees import example

ROOT = Path(__file__).parents[2]
DEFINITIONS = ROOT / "definitions"
DAY = 86_400_000


def test_simulate_then_replay_matches_the_reference(
    tmp_path: Path, redis_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    assert main(["simulate", "--tree", "education", "--days", "21", "--start", "2026-10-01", "-o", str(events)]) == 0
    lines = events.read_bytes().splitlines()
    assert len(lines) > 1000
    url = redis_server.url  # type: ignore[attr-defined]
    code = main(
        ["replay", str(events), "-d", str(DEFINITIONS), "--tree", "education", "--redis", url,
         "--at", "2026-10-15", "--at", "2026-10-22T00:00:00Z", "--now", "2026-10-22", "--json"]
    )
    out = capsys.readouterr().out
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["at"] for r in records] == ["2026-10-15T00:00:00Z", "2026-10-22T00:00:00Z"]
    tree = example("education")
    for record in records:
        at = int(datetime.fromisoformat(record["at"].replace("Z", "+00:00")).timestamp() * 1000)
        expected = reference_values(lines, tree, at, at)
        assert set(record["metrics"]) == set(expected)
        for name, value in expected.items():
            assert record["metrics"][name] == pytest.approx(value, rel=1e-9), name
        assert record["counts"]["accepted"] == len(lines)


def test_replay_counts_malformed_lines(tmp_path: Path, redis_server: object, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"event_type": "lesson_completed", "user_id": "u", "time": 1760000000000}\nnot json\n[1]\n\n')
    url = redis_server.url  # type: ignore[attr-defined]
    code = main(["replay", str(events), "--tree", "education", "-d", str(DEFINITIONS), "--redis", url,
                 "--at", "2025-10-10", "--now", "2025-10-10", "--json"])
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert code == 0
    assert record["counts"] == {"accepted": 1, "late": 0, "duplicate": 0, "rejected:not_json": 1, "rejected:not_object": 1}
    assert record["metrics"]["weekly_active_learners"] == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "missing.jsonl"],
        ["replay", "x.jsonl", "--at", "yesterday-ish"],
        ["replay", "x.jsonl", "--batch-size", "0"],
        ["simulate", "--tree", "nope"],
        ["simulate", "--tree", "education", "--days", "0"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text("")
    assert main(argv) == 2


def test_replay_unknown_tree_exits_2(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text("")
    assert main(["replay", str(events), "-d", str(DEFINITIONS), "--tree", "nope"]) == 2


def test_replay_console_script_with_temporary_redis(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"event_type": "lesson_completed", "user_id": "u", "time": 1760000000000, "event_properties": {"minutes": 4}}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "replay", str(events), "-d", str(DEFINITIONS), "--tree", "education",
         "--at", "2025-10-10", "--now", "2025-10-10", "--json"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "temporary redis-server" in proc.stderr
    assert json.loads(proc.stdout)["metrics"]["weekly_learning_minutes"] == 4
