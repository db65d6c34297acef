"""Restart: from SIGKILL of a worker to processing again.

northstar keeps its state in Redis: a restarted worker waits for the group
and applies its next batch; nothing is rebuilt. With an instance id (as
deployed) it first leaves the group for its killed process; without one the
killed member stays until its session expires (both are measured). The
faust-table peer rebuilds its tables from their changelog topics before its
agent sees a record. Both are killed with
a backlog left (after ``fraction`` of the topic) and restarted at once with
the same group; "processing again" is northstar's first applied batch
(an applied offset in Redis moves) and the peer's first record after
recovery.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from streamer.bench.peers import start_peer
from streamer.bench.throughput import Services, worker
from streamer.spec.model import Tree
from streamer.state.store import Store
from streamer.testing.process import wait_until
from streamer.windows.units import compile_tree


def _applied_total(store: Store, units: Any, partitions: Mapping[int, int], topic: str) -> int:
    return sum(sum(store.applied_offsets(units, f"{topic}:{p}")) for p in partitions)


def more_records(bootstrap: str, topic: str, at_ms: int, count: int, tag: str) -> None:
    """Produce ``count`` new lesson events just before ``at_ms`` (never late, never duplicates)."""
    from streamer.kafka.produce import produce_sync

    lines = [
        orjson.dumps({"event_type": "lesson_completed", "user_id": f"{tag}-{i}", "time": at_ms - 1000 - i,
                      "insert_id": f"{tag}-{i}", "event_properties": {"lesson_id": "L1", "minutes": 5}})
        for i in range(count)
    ]
    produce_sync(lines, topic, {"bootstrap_servers": bootstrap})


def northstar_restart(
    services: Services, client: Any, tree: Tree, definitions: Path, topic: str,
    ends: Mapping[int, int], at_ms: int, *, session_timeout_ms: int, trials: int = 3,
    fraction: float = 0.5, fresh: int = 100, instance_id: bool = True,
) -> dict[str, Any]:
    plan = compile_tree(tree)
    label = "" if instance_id else "-anon"
    records = sum(e + 1 for e in ends.values())
    ready: list[float] = []
    processing: list[float] = []
    for trial in range(trials):
        namespace = f"restart{label}{trial}"
        store = Store(client, namespace=namespace)
        store.delete_namespace()
        proc = worker(services, definitions, name=f"restart{label}-w{trial}", group=f"g-restart{label}-{trial}",
                      namespace=namespace, session_timeout_ms=session_timeout_ms, instance_id=instance_id)
        # the per-unit offsets summed: crosses `fraction` of the records summed over units
        threshold = fraction * records * len(plan.units)
        try:
            proc.start()
            proc.wait_for(lambda: _applied_total(store, plan.units, ends, topic) >= threshold,  # noqa: B023
                          300, "half the backlog applied")
            proc.kill()
            killed = time.monotonic()
            at_kill = _applied_total(store, plan.units, ends, topic)
            proc.launch()
            more_records(services.bootstrap, topic, at_ms, fresh, f"restart-{trial}")
            proc.wait_ready()
            ready.append(time.monotonic() - killed)
            proc.wait_for(lambda: _applied_total(store, plan.units, ends, topic) > at_kill,  # noqa: B023
                          120, "a batch applied after the restart")
            processing.append(time.monotonic() - killed)
        finally:
            proc.terminate()
    return {
        "trials": trials, "session_timeout_ms": session_timeout_ms, "killed_after_fraction": fraction,
        "instance_id": instance_id,
        "kill_to_assigned_s": [round(x, 2) for x in ready],
        "kill_to_processing_s": [round(x, 2) for x in processing],
        "kill_to_processing_median_s": round(statistics.median(processing), 2),
    }


def faust_restart(
    services: Services, topic: str, records: int, at_ms: int, partitions: int, *,
    session_timeout_ms: int, fraction: float = 0.5, fresh: int = 100,
) -> dict[str, Any]:
    """Kill the faust-table peer after ``fraction`` of the topic; time its
    changelog recovery until it processes records again."""
    group = "faust-restart"
    options: dict[str, Any] = dict(
        bootstrap=services.bootstrap, topic=topic, records=records, at_ms=at_ms, partitions=partitions,
        workdir=services.workdir / "peers", group=group, session_timeout_s=session_timeout_ms / 1000,
        exit_when_done=False,
    )
    run = start_peer("faust", **options)
    try:
        def progressed() -> bool:
            last = run.last("progress")
            return last is not None and last["n"] >= fraction * records

        wait_until(progressed, 600, "faust peer: half the topic", interval=0.1, log_path=run.process.log_path)
        processed = run.last("progress")
        run.process.kill()
        killed = time.time()
        run = start_peer("faust", **options)
        more_records(services.bootstrap, topic, at_ms, fresh, "faust-restart")
        wait_until(lambda: run.count("first") >= 2, 300, "faust peer: first record after restart",
                   interval=0.05, log_path=run.process.log_path)
        first = run.last("first")
        assert first is not None
    finally:
        run.process.kill()
    return {
        "session_timeout_ms": session_timeout_ms, "killed_after_records": processed["n"] if processed else None,
        "kill_to_processing_s": round(first["t"] - killed, 2),
    }
