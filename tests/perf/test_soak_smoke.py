"""``northstar soak`` for ~20 s on the local services: every series is
sampled and judged, nothing errs, the rate is half the measured maximum and
the worker drains what was produced. No figure is asserted (a soak reports;
docs/reliability.md has a 30-minute run)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from streamer.bench.soak import SERIES

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("soak")
    out = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "soak", "--json", "--duration", "20", "--interval", "4",
         "--calibrate-events", "5000", "--pool-events", "3000", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    data: dict[str, Any] = orjson.loads(out.stdout)
    return data


def test_every_series_is_sampled_and_judged(result: dict[str, Any]) -> None:
    rows = result["rows"]
    assert len(rows) == 5
    for series in SERIES:
        assert all(row[series.name] is not None for row in rows), series.name
    verdicts = {v["series"]: v["verdict"] for v in result["verdicts"]}
    assert set(verdicts) == {s.name for s in SERIES}
    for series in SERIES:
        allowed = {"zero"} if series.kind == "errors" else {"flat", "growing"}
        assert verdicts[series.name] in allowed, (series.name, verdicts[series.name])


def test_no_errors_and_everything_applied(result: dict[str, Any]) -> None:
    assert result["ok"] is True
    assert result["drained_s"] is not None
    assert result["produced"] > 5000
    assert all(v == 0 for k, v in result["final_errors"].items() if k != "redis_up")


def test_rate_is_half_the_measured_maximum(result: dict[str, Any]) -> None:
    rate = result["rate"]
    assert rate["measured_max_events_per_s"] > 0
    assert abs(rate["target_events_per_s"] - rate["measured_max_events_per_s"] / 2) <= 1


def test_bad_arguments_exit_2() -> None:
    for args in (["--duration", "0"], ["--rate", "-5"], ["--interval", "60", "--duration", "10"], ["--user-seconds", "0"]):
        out = subprocess.run([sys.executable, "-m", "streamer.cli", "soak", *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2, (args, out.stderr)
        assert "error" in out.stderr
