"""``northstar bench --json`` in a tiny configuration: every figure is there,
and each peer computed the same values as northstar on the same records.
Correctness, not speed: no timing is asserted (benchmarks never fail on a
number; see docs/performance.md for the figures)."""

from __future__ import annotations

import importlib.util
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.bench.ceiling import READ_NAMES
from streamer.bench.run import BenchConfig
from streamer.bench.workload import education_workload
from streamer.engine import tree_reads
from streamer.windows.units import compile_tree
from tests.perf.peer_metrics import METRICS
from tests.trees import example

pytestmark = pytest.mark.services

FIELDS = (
    ("machine", "cpus"), ("machine", "redis"), ("machine", "broker"),
    ("load_average_start",), ("load_average_end",), ("wall_seconds",),
    ("workload", "records"),
    ("ceiling", "consume", "events_per_s"), ("ceiling", "redis_pipeline", "commands_per_s"),
    ("ceiling", "floor", "events_per_s"),
    ("ceiling", "consume", "cpu", "total_us_per_event"), ("ceiling", "floor", "cpu", "redis_us_per_event"),
    ("northstar", "one_worker", "cpu", "client_us_per_event"), ("northstar", "one_worker", "cpu", "broker_us_per_event"),
    ("cpu_budget", "budget_us_per_event"), ("cpu_budget", "northstar_one_worker", "at_most_events_per_s"),
    ("northstar", "one_worker", "events_per_s"), ("northstar", "one_worker", "worker_rss_max_mib"),
    ("northstar", "two_workers", "events_per_s"), ("northstar", "state", "dedupe_bytes_per_event"),
    ("peers", "northstar", "events_per_s"), ("peers", "northstar", "values"),
    ("peers", "faust", "events_per_s"), ("peers", "faust", "values"),
    ("freshness", "snapshot", "p50_s"), ("freshness", "snapshot", "p99_s"),
    ("freshness", "metrics_endpoint", "p50_s"), ("freshness", "metrics_endpoint", "p99_s"),
    ("freshness", "rate_produced_events_per_s"), ("freshness", "worker_rss_mib"),
    ("freshness", "parts", "produced_to_applied", "p99_s"), ("freshness", "parts", "applied_to_snapshot", "p99_s"),
    ("evaluation", "rows"), ("evaluation", "eval_ms_fit", "predicted"), ("evaluation", "eval_ms_largest_vs_smallest"),
    ("evaluation", "more_events", "eval_ms_more_events_vs_same_users"),
    ("memory", "per_unit", "metrics"), ("memory", "per_unit", "all_units_bytes_per_user"),
    ("memory", "distinct", "exact", "used_memory_bytes_per_user"),
    ("memory", "distinct", "hll", "used_memory_bytes_per_user"),
    ("restart", "northstar", "kill_to_processing_median_s"), ("restart", "northstar", "session_timeout_ms"),
    ("restart", "northstar_without_instance_id", "kill_to_processing_median_s"),
    ("restart", "faust", "kill_to_processing_s"),
    ("ratios", "northstar_vs_ceiling"), ("ratios", "northstar_vs_ceiling_lowest_pair"), ("ratios", "floor_vs_ceiling"), ("ratios", "northstar_vs_floor"),
    ("ratios", "two_workers_vs_one"), ("ratios", "northstar_vs_faust"),
    ("ratios", "northstar_vs_quixstreams"), ("ratios", "restart_faust_vs_northstar"),
    ("targets",), ("started_utc",), ("ended_utc",),
)
HAVE_QUIX = importlib.util.find_spec("quixstreams") is not None


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        assert isinstance(data, dict) and key in data, f"missing {'.'.join(path)}"
        data = data[key]
    return data


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("bench")
    argv = [sys.executable, "-m", "streamer.cli", "bench", "--json", "--workdir", str(workdir),
            "--events", "4000", "--peer-events", "2500", "--eval-users", "500", "2000",
            "--memory-users", "2000", "--freshness-seconds", "6", "--freshness-rate", "1000",
            "--restart-trials", "1", "--pairs", "2"]
    done = subprocess.run(argv, capture_output=True, timeout=900, check=False, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr.decode()[-4000:]
    parsed: dict[str, Any] = orjson.loads(done.stdout)
    return parsed


@pytest.mark.timeout(900)
def test_every_figure_is_reported(result: dict[str, Any]) -> None:
    for path in FIELDS:
        if path == ("ratios", "northstar_vs_quixstreams") and not HAVE_QUIX:
            continue
        assert _get(result, path) is not None, f"{'.'.join(path)} is null"
    assert {t["name"] for t in result["targets"]} >= {
        "northstar_vs_ceiling", "northstar_vs_faust_same_events", "northstar_vs_quixstreams_same_events",
        "freshness_snapshot_p99_s",
        "freshness_metrics_p99_s", "eval_ms_1m_users", "eval_ms_largest_vs_smallest", "restart_s",
        "eval_ms_more_events_vs_same_users",
    }
    assert all(t["status"] in ("met", "missed", "n/a") for t in result["targets"])
    assert result["freshness"]["snapshot"]["markers"] > 0
    assert result["freshness"]["snapshot"]["unseen"] == 0
    # the parts: every marker seen applied, before it was seen in a snapshot
    parts = result["freshness"]["parts"]
    assert parts["produced_to_applied"]["markers"] == result["freshness"]["snapshot"]["markers"]
    assert parts["applied_to_snapshot"]["p50_s"] >= 0
    # two (ceiling, one worker) pairs, the first the sections' own runs, each pair over every record
    pairs = result["pairs"]
    assert len(pairs) == 2
    assert pairs[0]["ceiling_events_per_s"] == result["ceiling"]["consume"]["events_per_s"]
    assert pairs[1]["ceiling_events_per_s"] > 0 and pairs[1]["one_worker_events_per_s"] > 0
    for pair in pairs:
        assert pair["ratio"] == round(pair["one_worker_events_per_s"] / pair["ceiling_events_per_s"], 3)
    assert result["ratios"]["northstar_vs_ceiling"] == round(statistics.median(p["ratio"] for p in pairs), 3)
    assert result["started_utc"] <= result["ended_utc"] and result["started_utc"].endswith("Z")
    # the same users again with 10x the events per user
    more = result["evaluation"]["more_events"]
    same = next(r for r in result["evaluation"]["rows"] if r["users"] == more["users"])
    assert more["factor"] == 10 and more["row"]["users"] == same["users"]
    assert more["row"]["events_per_user"] > 5 * same["events_per_user"]
    assert more["eval_ms_more_events_vs_same_users"] == round(more["row"]["eval_ms_median"] / same["eval_ms_median"], 3)
    # the restart is measured as deployed (an instance id) and without one
    assert result["restart"]["northstar"]["instance_id"] is True
    assert result["restart"]["northstar_without_instance_id"]["instance_id"] is False


@pytest.mark.timeout(900)
def test_the_floor_wrote_the_least_state_of_every_record(result: dict[str, Any]) -> None:
    """The floor's figure counts only if it did its work: every insert id of
    an event the tree reads in its dedupe set, every (user, UTC day) with a
    completed lesson in its day sets, every user who signed up in its funnel
    starts."""
    load = education_workload(4000, 2, seed=BenchConfig().seed)
    events = [orjson.loads(line) for line in load.lines]
    floor = result["ceiling"]["floor"]
    assert floor["records"] == result["workload"]["records"] == len(events)
    reads = tree_reads(compile_tree(example("education")).units)
    assert reads == READ_NAMES
    assert floor["insert_ids"] == len({e["insert_id"] for e in events if e["event_type"] in reads}) > 0
    completed = [e for e in events if e["event_type"] == "lesson_completed"]
    assert floor["user_days"] == len({(e["user_id"], e["time"] // 86_400_000) for e in completed})
    assert floor["starts"] == len({e["user_id"] for e in events if e["event_type"] == "signed_up"}) > 0


@pytest.mark.timeout(900)
@pytest.mark.parametrize("peer", ["faust", "quixstreams"])
def test_peers_compute_northstars_values(result: dict[str, Any], peer: str) -> None:
    data = result["peers"][peer]
    if peer == "quixstreams" and not HAVE_QUIX:
        assert data == {"available": False, "reason": data["reason"]}
        pytest.skip("quixstreams is not installed (pip install -e '.[bench]')")
    expected = result["peers"]["northstar"]["values"]
    assert data["available"] and data["equal"], data["differences"]
    assert set(data["metrics_checked"]) == set(METRICS) >= {"weekly_learning_minutes", "paid_conversions"}
    assert data["records"] == result["peers"]["records"]
    _same(expected, data["values"])
    assert expected["weekly_learning_minutes"] > 0 and expected["paid_conversions"] > 0
    if peer == "quixstreams":  # also over the main topic, against northstar's values there
        main = result["peers"]["quixstreams_main_topic"]
        assert main["equal"], main["differences"]
        _same(result["northstar"]["state"]["values"], main["values"])


def _same(expected: dict[str, Any], got: dict[str, Any]) -> None:
    for name in METRICS:
        want, have = expected[name], got[name]
        assert (want is None) == (have is None), name
        if want is not None:
            assert math.isclose(want, have, rel_tol=1e-9), (name, want, have)
