"""Peers: the same events and tree processed by other stream processors.

The peer implementations live in ``tests/perf/`` (kept out of the product):
``faust_peer.py`` (faust-streaming windowed tables, per-event updates) and
``quix_peer.py`` (Quix Streams windows). Each runs as its own process on the
benchmark's topic and writes JSON lines: ``first`` when it processes its
first record, ``done`` with its events/s and metric values. A peer's rate is
timed by the peer, from its first record to its last.

A comparison is void unless the peer computed the same values as northstar:
``compare`` lists every metric that differs.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from streamer.testing.process import ManagedProcess, wait_until

PEERS_DIR = Path(__file__).resolve().parents[2] / "tests" / "perf"
PEERS = {"faust": "faust_peer.py", "quixstreams": "quix_peer.py"}
REQUIRES = {"faust": "faust", "quixstreams": "quixstreams"}


@dataclass(frozen=True)
class PeerRun:
    """A peer process's log of JSON lines (``out``) and the process itself."""

    name: str
    process: ManagedProcess
    out: Path

    def lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [orjson.loads(line) for line in self.out.read_bytes().splitlines() if line.strip()]

    def last(self, event: str) -> dict[str, Any] | None:
        found = [line for line in self.lines() if line.get("event") == event]
        return found[-1] if found else None

    def count(self, event: str) -> int:
        return sum(1 for line in self.lines() if line.get("event") == event)


def unavailable(name: str, peers_dir: Path = PEERS_DIR) -> str | None:
    """Why peer ``name`` cannot run here, or None."""
    script = peers_dir / PEERS[name]
    if not script.is_file():
        return f"{script} not found (run from a source checkout)"
    if importlib.util.find_spec(REQUIRES[name]) is None:
        return f"python package {REQUIRES[name]!r} is not installed (pip install -e '.[bench]')"
    return None


def start_peer(
    name: str, *, bootstrap: str, topic: str, records: int, at_ms: int, partitions: int,
    workdir: Path, group: str, session_timeout_s: float, exit_when_done: bool,
    peers_dir: Path = PEERS_DIR,
) -> PeerRun:
    """Launch peer ``name`` (not waiting for anything)."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"{group}.jsonl"
    argv = [sys.executable, str(peers_dir / PEERS[name]), "--bootstrap", bootstrap, "--topic", topic,
            "--records", str(records), "--at-ms", str(at_ms), "--out", str(out)]
    if name == "faust":
        argv += ["--app-id", group, "--partitions", str(partitions),
                 "--session-timeout", str(session_timeout_s)]
        if exit_when_done:
            argv.append("--exit-when-done")
    else:
        argv += ["--group", group, "--session-timeout", str(session_timeout_s)]
    process = ManagedProcess(f"peer {name}", argv, log_path=workdir / f"{group}.log", cwd=workdir)
    process.start()
    return PeerRun(name, process, out)


def run_peer(
    name: str, *, bootstrap: str, topic: str, records: int, at_ms: int, partitions: int,
    workdir: Path, group: str, session_timeout_s: float, timeout: float = 1800.0,
) -> dict[str, Any]:
    """Run peer ``name`` over the whole topic; its ``done`` line plus wall times."""
    launched = time.monotonic()
    run = start_peer(name, bootstrap=bootstrap, topic=topic, records=records, at_ms=at_ms,
                     partitions=partitions, workdir=workdir, group=group,
                     session_timeout_s=session_timeout_s, exit_when_done=True)
    try:
        run.process.wait_ready(lambda: run.last("first") is not None, 180, f"peer {name}: first record")
        first_seen = time.monotonic()
        wait_until(lambda: run.last("done") is not None, timeout, f"peer {name}: every record",
                   interval=0.1, log_path=run.process.log_path)
        done = run.last("done")
        assert done is not None
    finally:
        run.process.kill()
    return {**done, "startup_s": round(first_seen - launched, 2)}


def compare(
    expected: Mapping[str, float | None], got: Mapping[str, Any], rel_tol: float = 1e-9
) -> list[str]:
    """Metrics of ``got`` whose value differs from northstar's ``expected``."""
    problems = []
    for name, value in got.items():
        want = expected.get(name)
        if want is None or value is None:
            if want is not value:
                problems.append(f"{name}: northstar {want!r}, peer {value!r}")
        elif not math.isclose(float(value), want, rel_tol=rel_tol, abs_tol=1e-9):
            problems.append(f"{name}: northstar {want!r}, peer {value!r}")
    return problems
