"""``northstar worker`` as a child process, for end-to-end tests and the demo.

:class:`WorkerProcess` starts ``python -m streamer.cli worker`` with the flags
and ``NORTHSTAR_*`` environment it is given, logs to a file in its own
directory, and is ready once its operational ``/metrics`` endpoint reports
``northstar_assigned_partitions > 0`` (the consumer group gave it work).
``kill()`` is a crash (SIGKILL: no shutdown handler runs, nothing is
committed), ``terminate()`` a clean stop, ``restart()`` starts it again on the
same metrics port with the same settings. Like every manager in this package
it signals only the process it started itself.

The helpers below read what a worker did from the outside: a topic's end
offsets (by reading it, not by ListOffsets, which Tansu gets wrong), the
units' applied offsets in Redis, and a tree copied onto another source topic
so that a test owns its topic.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from streamer.testing.process import (
    ManagedProcess,
    ServiceBase,
    ServiceError,
    ServiceNotReadyError,
    free_port,
    log_tail,
    wait_until,
)

if TYPE_CHECKING:
    from streamer.spec.model import Tree
    from streamer.state.store import Store
    from streamer.windows.units import Plan, Unit

HOST = "127.0.0.1"
ASSIGNED = "northstar_assigned_partitions"
_ENV_PREFIX = "NORTHSTAR_"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""Prometheus samples: (name, sorted label pairs) -> value."""


class WorkerProcess(ServiceBase):
    """One ``northstar worker`` process; ``start()`` returns once it is ready.

    ``env`` holds ``NORTHSTAR_*`` settings (e.g. ``NORTHSTAR_NAMESPACE``,
    ``NORTHSTAR_DEAD_LETTER_TOPIC``, ``NORTHSTAR_BATCH_MAX_RECORDS``); every
    ``NORTHSTAR_*`` variable of the calling environment is dropped first, so
    the test's own shell cannot change what the worker does. ``args`` are
    extra command-line flags. The log of every incarnation goes to one file,
    ``log_path``, each start marked by a line ``--- start N ---``.
    """

    service_name = "worker"

    def __init__(
        self,
        definitions: Sequence[Path],
        *,
        bootstrap: str,
        redis_url: str,
        group: str,
        session_timeout_ms: int = 6000,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        metrics_port: int | None = None,
        ready_timeout: float = 60.0,
        name: str = "worker",
        workdir: Path | None = None,
        keep_workdir: bool = False,
    ) -> None:
        if not definitions:
            raise ValueError("a worker needs at least one definitions path")
        super().__init__(workdir, keep_workdir=keep_workdir)
        self.definitions = [Path(p) for p in definitions]
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.group = group
        self.session_timeout_ms = session_timeout_ms
        self.env = dict(env or {})
        self.args = list(args)
        self.metrics_port = free_port(HOST) if metrics_port is None else metrics_port
        self.ready_timeout = ready_timeout
        self.name = name
        self.starts = 0
        self._process: ManagedProcess | None = None

    # ------------------------------------------------------------------ shape

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "streamer.cli",
            "worker",
            "--definitions",
            *map(str, self.definitions),
            "--kafka",
            self.bootstrap,
            "--redis",
            self.redis_url,
            "--group",
            self.group,
            "--metrics-port",
            str(self.metrics_port),
            "--web-port",
            "0",
            "--session-timeout-ms",
            str(self.session_timeout_ms),
            *self.args,
        ]

    def environment(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIX)}
        return {**base, "PYTHONUNBUFFERED": "1", **self.env}

    # ------------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        if self.is_running():
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
        self._process = ManagedProcess(
            f"{self.name} (metrics :{self.metrics_port})",
            self.argv(),
            log_path=self.log_path,
            cwd=self.workdir,
            env=self.environment(),
        )
        self._process.start()
        self._started = True

    def wait_ready(self, timeout: float | None = None) -> float:
        """Poll ``/metrics`` until ``northstar_assigned_partitions > 0``; return
        the seconds waited. Raises :class:`ServiceNotReadyError` (with the log
        tail) at the deadline or as soon as the process exits."""
        return self.wait_for(
            lambda: (self.sample(ASSIGNED) or 0) > 0,
            self.ready_timeout if timeout is None else timeout,
            f"{ASSIGNED} > 0",
        )

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """:func:`wait_until` bound to this worker: fails early if the process
        exits, names the worker and quotes its log. Returns the seconds waited."""
        if self._process is None:
            raise ServiceError(f"{self.name} is not started")
        started = time.monotonic()
        wait_until(
            predicate,
            timeout,
            f"{self.name} (pid {self.pid}): {what}",
            interval=0.05,
            log_path=self.log_path,
            process=self._process.popen,
        )
        return time.monotonic() - started

    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running()

    def kill(self) -> int | None:
        """SIGKILL the worker (a crash); return its exit code (-9)."""
        process, self._process = self._process, None
        self._started = False
        return None if process is None else process.kill()

    def terminate(self, grace: float = 15.0) -> int | None:
        """SIGTERM the worker (it finishes its batch and leaves the group),
        SIGKILL after ``grace`` seconds; return its exit code."""
        process, self._process = self._process, None
        self._started = False
        return None if process is None else process.stop(grace)

    def restart(self, *, kill: bool = False, wait: bool = True) -> Self:
        """Stop (``kill=True``: SIGKILL) and start again with the same settings."""
        if kill:
            self.kill()
        else:
            self.terminate()
        self.launch()
        if wait:
            self.wait_ready()
        return self

    def _stop(self) -> None:
        self.terminate()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log (every incarnation's)."""
        return log_tail(self.log_path, lines)

    # ------------------------------------------------------------------ metrics

    def probe(self, path: str, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of ``/healthz`` or ``/readyz`` (503 is an answer, not an error)."""
        import json
        import urllib.error

        url = f"http://{HOST}:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def rss_bytes(self) -> int:
        """Resident memory of the worker process now (Linux ``/proc``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise ServiceError(f"{self.name}: no VmRSS in /proc/{self.pid}/status")

    def samples(self, timeout: float = 2.0) -> Samples:
        """Every sample on ``/metrics`` now (raises if the endpoint does not answer)."""
        with urllib.request.urlopen(self.metrics_url, timeout=timeout) as response:
            return parse_samples(response.read().decode())

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's value, None when the worker does not export it (yet)."""
        return self.samples().get((name, tuple(sorted((labels or {}).items()))))

    def total(self, name: str) -> float:
        """Sum of every sample called ``name`` (all label values); 0 when none."""
        return sum(v for (n, _), v in self.samples().items() if n == name)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """``{label value: value}`` of the samples called ``name``."""
        out: dict[str, float] = {}
        for (n, labels), v in self.samples().items():
            if n == name:
                key = dict(labels).get(label, "")
                out[key] = out.get(key, 0.0) + v
        return out


def parse_samples(text: str) -> Samples:
    """Prometheus text exposition -> samples (histogram/summary parts by their own names)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


# ---------------------------------------------------------------------- definitions


def tree_on_topic(source: Path, topic: str, dest_dir: Path) -> Path:
    """Copy definitions file ``source`` into ``dest_dir`` with ``source.topic``
    set to ``topic`` (so that a test owns the topic its tree reads)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    doc: Any = yaml.load(source.read_text())
    doc.setdefault("source", {})["topic"] = topic
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / source.name
    with dest.open("w") as handle:
        yaml.dump(doc, handle)
    return dest


def load_tree(path: Path) -> Tree:
    """The :class:`streamer.spec.model.Tree` in one definitions file (no lint)."""
    from ruamel.yaml import YAML

    from streamer.spec.model import Tree

    tree: Tree = Tree.model_validate(YAML(typ="safe").load(path.read_text()))
    return tree


# ---------------------------------------------------------------------- Kafka


def topic_end_offsets(
    client: Mapping[str, Any], topic: str, expected_records: int, timeout: float = 60.0
) -> dict[int, int]:
    """``{partition: offset of its last record}`` of ``topic``, found by reading
    every record from the beginning until ``expected_records`` were seen.

    Reading, not ListOffsets: Tansu answers ListOffsets(latest) with the base
    offset of the last batch + 1. Partitions without records are left out."""
    records = read_records(client, topic, lambda got: len(got) >= expected_records, timeout)
    if len(records) != expected_records:
        raise ServiceError(f"topic {topic!r} holds {len(records)} records, expected {expected_records}")
    last: dict[int, int] = {}
    for r in records:
        last[r.partition] = max(last.get(r.partition, -1), r.offset)
    return last


def read_records(
    client: Mapping[str, Any],
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout: float = 60.0,
) -> list[Any]:
    """Every record of ``topic`` from the beginning (aiokafka ``ConsumerRecord``:
    ``partition``, ``offset``, ``key``, ``value``, ``headers``), read until
    ``until(records so far)`` holds; :class:`ServiceNotReadyError` at the deadline."""
    return asyncio.run(_read(dict(client), topic, until, timeout))


async def _read(
    client: dict[str, Any], topic: str, until: Callable[[list[Any]], bool], timeout: float
) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**client, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata partitions_for_topic reads
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            raise ServiceError(f"topic {topic!r} does not exist or has no partitions")
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while not until(records):
            if time.monotonic() > deadline:
                raise ServiceNotReadyError(
                    f"topic {topic!r}", f"condition not met after reading {len(records)} records in {timeout:.0f}s"
                )
            batches = await consumer.getmany(timeout_ms=200, max_records=50_000)
            for batch in batches.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def committed_offsets(
    client: Mapping[str, Any], group: str, topics: Sequence[str]
) -> dict[tuple[str, int], int]:
    """``{(topic, partition): committed offset}`` of consumer group ``group`` on
    ``topics`` (the next offset the group reads; never committed: left out).
    Read with a consumer that names the group but never joins it (aiokafka's
    admin client speaks an OffsetFetch version Tansu answers wrongly)."""
    return asyncio.run(_committed(dict(client), group, list(topics)))


async def _committed(
    client: dict[str, Any], group: str, topics: list[str]
) -> dict[tuple[str, int], int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**client, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        out: dict[tuple[str, int], int] = {}
        for topic in topics:
            for p in sorted(consumer.partitions_for_topic(topic) or ()):
                offset = await consumer.committed(TopicPartition(topic, p))
                if offset is not None and offset >= 0:
                    out[(topic, p)] = offset
        return out
    finally:
        await consumer.stop()


# ---------------------------------------------------------------------- Redis


def applied_offsets(store: Store, plans: Sequence[Plan], partition: str) -> list[int]:
    """Every unit's applied offset in ``partition`` (``"<topic>:<n>"``), -1 for none."""
    return store.applied_offsets([u for plan in plans for u in plan.units], partition)


def all_applied(store: Store, plans: Sequence[Plan], topic: str, ends: Mapping[int, int]) -> bool:
    """True when every unit of every plan applied every partition up to its end offset."""
    return units_applied(store, [u for plan in plans for u in plan.units], topic, ends)


def units_applied(store: Store, units: Sequence[Unit], topic: str, ends: Mapping[int, int]) -> bool:
    """True when every one of ``units`` applied every partition up to its end offset."""
    return all(min(store.applied_offsets(units, f"{topic}:{p}")) >= end for p, end in ends.items())


# ---------------------------------------------------------------------- comparison


def value_differences(
    expected: Mapping[str, float | None],
    got: Mapping[str, float | None],
    *,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-9,
    label: str = "",
) -> list[str]:
    """Human-readable differences between two ``{metric: value}`` maps
    (``rel_tol=abs_tol=0`` demands bit-identical floats)."""
    problems: list[str] = []
    for name in sorted(set(expected) | set(got)):
        want, have = expected.get(name), got.get(name)
        if name not in got or name not in expected:
            problems.append(f"{label}{name}: expected {want!r}, got {have!r} (missing)")
        elif want is None or have is None:
            if want is not have:
                problems.append(f"{label}{name}: expected {want!r}, got {have!r}")
        elif not (
            want == have
            if rel_tol == 0 and abs_tol == 0
            else math.isclose(want, have, rel_tol=rel_tol, abs_tol=abs_tol)
        ):
            problems.append(f"{label}{name}: expected {want!r}, got {have!r}")
    return problems
