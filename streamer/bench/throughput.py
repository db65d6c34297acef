"""northstar end to end: ``northstar worker`` processes (the real thing, as
deployed) read a pre-filled topic until the state in Redis reflects its last
record: every unit's applied offset at every partition's end offset.

Timed from the moment the first worker owns partitions
(``northstar_assigned_partitions > 0``: process start and group join are
reported apart) to the moment the last unit applied the last record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.bench.cpu import Probe, per_event
from streamer.spec.model import Tree
from streamer.state.store import Store
from streamer.testing.worker import WorkerProcess, all_applied
from streamer.windows.units import compile_tree


@dataclass(frozen=True)
class Services:
    """Where the benchmark's broker and Redis are, and its scratch directory."""

    bootstrap: str
    redis_url: str
    workdir: Path
    broker_pid: int | None = None
    """The broker's process when the bench started it (its CPU is measured), else None."""


@dataclass
class RunResult:
    workers: int
    records: int
    seconds: float
    startup_s: float
    rss_max_mib: list[float] = field(default_factory=list)
    cpu: dict[str, float | None] | None = None
    """CPU per record of the workers, Redis and the broker (``cpu.per_event``)."""

    @property
    def events_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers, "records": self.records, "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1), "startup_s": round(self.startup_s, 2),
            "worker_rss_max_mib": [round(x, 1) for x in self.rss_max_mib], "cpu": self.cpu,
        }


def rss_mib(pid: int | None) -> float | None:
    """Resident set size of ``pid`` (Linux ``/proc``), None when unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def worker(
    services: Services, definitions: Path, *, name: str, group: str, namespace: str,
    session_timeout_ms: int, env: Mapping[str, str] | None = None, instance_id: bool = True,
) -> WorkerProcess:
    """A worker process on the benchmark's services (not started); with
    ``instance_id`` (as deployed: deploy/k8s gives the pod name), its name is
    its instance id, and a restarted worker leaves the group for its killed
    process (streamer/worker/membership.py)."""
    return WorkerProcess(
        [definitions],
        bootstrap=services.bootstrap,
        redis_url=services.redis_url,
        group=group,
        session_timeout_ms=session_timeout_ms,
        env={
            "NORTHSTAR_NAMESPACE": namespace,
            "NORTHSTAR_APP_ID": f"app-{group}",
            "NORTHSTAR_DEAD_LETTER_TOPIC": f"{group}-dead-letters",
            "NORTHSTAR_ALERTS_TOPIC": f"{group}-alerts",
            "NORTHSTAR_SNAPSHOTS_TOPIC": f"{group}-snapshots",
            **({"NORTHSTAR_INSTANCE_ID": name} if instance_id else {}),
            **(env or {}),
        },
        args=["--loglevel", "warning"],
        name=name,
        workdir=services.workdir / name,
        ready_timeout=120,
    )


def run_workers(
    services: Services, client: Any, tree: Tree, definitions: Path, topic: str,
    ends: Mapping[int, int], *, workers: int, namespace: str, session_timeout_ms: int,
    timeout: float = 3600.0,
) -> RunResult:
    """Start ``workers`` processes in one group on ``topic`` and time them until
    every unit applied every partition up to ``ends``."""
    store = Store(client, namespace=namespace)
    store.delete_namespace()
    plan = compile_tree(tree)
    procs = [
        worker(services, definitions, name=f"{namespace}-w{i}", group=f"g-{namespace}",
               namespace=namespace, session_timeout_ms=session_timeout_ms)
        for i in range(workers)
    ]
    launched = time.monotonic()
    try:
        for p in procs:
            p.launch()
        procs[0].wait_ready()
        ready = time.monotonic()
        probe = Probe(client, services.broker_pid, [p.pid for p in procs])
        before = probe.sample()
        rss = [0.0] * workers

        def done() -> bool:
            for i, p in enumerate(procs):
                rss[i] = max(rss[i], rss_mib(p.pid) or 0.0)
            return all_applied(store, [plan], topic, ends)

        procs[0].wait_for(done, timeout, "every record applied")
        finished = time.monotonic()
        records = sum(e + 1 for e in ends.values())
        cpu = per_event(before, probe.sample(), records)
    finally:
        for p in procs:
            p.terminate()
    return RunResult(workers, records, finished - ready, ready - launched, rss, cpu)
