"""Backfill units whose history is missing after a definition change
(``northstar backfill``, docs/operating.md "Changing a definition").

A changed definition has a new fingerprint: its unit starts empty when the
workers first apply a batch with it, and records there, per partition,
``born:<partition>`` = the offset before that batch. The backfill reads the
partition again from its first record (a file or the topic's retention) and
applies to each such unit only the records at or below its ``born`` offset:

- exactly once: the unit script's offset check runs on a field of its own
  (``bf:<partition>``), so a backfill that is stopped and started again
  resumes, and the live field (the workers' guard) is never touched;
- with the verdicts the records got live: lateness and duplicate verdicts are
  re-derived in a scratch copy of the verdict state (``<ns>:backfill``),
  rebuilt from the partition's first record, never in the live one (running
  verdict.lua a second time on live state would misjudge old records as late,
  and rewrite the insert ids a later live event is checked against);
- live units (and units already backfilled) receive nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.engine import Backfill, BatchApplier
from streamer.spec.model import Tree
from streamer.state.store import Store, backfill_field, born_field
from streamer.windows.units import Unit

SCRATCH_TTL_MS = 86_400_000  # a scratch verdict state left by a crashed backfill


@dataclass(frozen=True)
class Missing:
    """A unit whose records of a partition up to ``born`` are missing; the
    backfill has applied them up to ``done``."""

    unit: Unit
    born: int
    done: int


def missing_history(store: Store, units: Sequence[Unit], partition: str) -> dict[int, Missing]:
    """unit index -> what it misses in ``partition`` (only incomplete units)."""

    def build(pipe: Any) -> None:
        for unit in units:
            pipe.hmget(store.keys.applied(unit), [born_field(partition), backfill_field(partition)])

    out: dict[int, Missing] = {}
    for i, (unit, (born, done)) in enumerate(zip(units, store.execute(build), strict=True)):
        if born is None:
            continue
        missing = Missing(unit, int(born), int(done) if done is not None else -1)
        if missing.done < missing.born:
            out[i] = missing
    return out


@dataclass
class PartitionReport:
    partition: str
    units: list[Missing]
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    first_offset: int | None = None  # of the source; > 0: older records were gone (retention)


def scratch_namespace(namespace: str) -> str:
    return f"{namespace}:backfill"


class Backfiller:
    """Backfills the units of ``trees`` in ``namespace``, one partition at a time."""

    def __init__(self, client: Any, trees: Sequence[Tree], namespace: str = "ns",
                 now_ms: Callable[[], int] | None = None) -> None:
        self.store = Store(client, namespace, verdict_namespace=scratch_namespace(namespace))
        self.applier = BatchApplier(self.store, trees)
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        # every key of the scratch verdict state: watermarks, insert ids and
        # whatever the verdict script keeps to forget them
        self.scratch_patterns = [self.store.verdict_keys.tree(t.tree, "*") for t in trees]

    def scratch_keys(self) -> list[Any]:
        return [k for p in self.scratch_patterns for k in self.store.client.scan_iter(match=p, count=1000)]

    def clear_scratch(self) -> None:
        """Forget the scratch verdict state (call before and after a run)."""
        keys = self.scratch_keys()
        if keys:
            self.store.execute(lambda pipe: [pipe.delete(k) for k in keys])

    def missing(self, partition: str) -> dict[int, Missing]:
        return missing_history(self.store, self.applier.units, partition)

    def start(self, partition: str) -> PartitionRun:
        return PartitionRun(self, partition, self.missing(partition))

    def run_partition(self, partition: str, batches: Iterable[Sequence[tuple[int, bytes]]]) -> PartitionReport:
        """Read ``batches`` (offset order, from the partition's first record)
        until every incomplete unit has its history; returns what was done."""
        run = self.start(partition)
        if not run.finished:
            for batch in batches:
                if run.feed(batch):
                    break
        return run.report


class PartitionRun:
    """One partition's backfill, fed batch by batch (``feed`` says when it is done)."""

    def __init__(self, backfiller: Backfiller, partition: str, missing: dict[int, Missing]) -> None:
        self.backfiller = backfiller
        self.partition = partition
        self.report = PartitionReport(partition, list(missing.values()))
        self.limits = {i: m.born for i, m in missing.items()}
        self.target = max(self.limits.values(), default=-1)
        self.finished = not missing

    def feed(self, batch: Sequence[tuple[int, bytes]], now_ms: int | None = None) -> bool:
        """Apply ``batch``; True once the partition is done. ``now_ms``: the
        processing clock for this batch (default the backfiller's)."""
        if self.report.first_offset is None and batch:
            self.report.first_offset = batch[0][0]
        records = [r for r in batch if r[0] <= self.target]
        if records:
            b = self.backfiller
            now = b.now_ms() if now_ms is None else now_ms
            result = b.applier.apply(self.partition, records, now, Backfill(self.limits))
            self.report.records += len(records)
            for k, v in result.counts.items():
                self.report.counts[k] = self.report.counts.get(k, 0) + v
            scratch = b.scratch_keys()  # a stopped backfill's scratch state cleans itself up
            b.store.execute(lambda pipe: [pipe.pexpire(k, SCRATCH_TTL_MS) for k in scratch])
        self.finished = len(records) < len(batch) or bool(records and records[-1][0] >= self.target)
        return self.finished


def batched(records: Iterable[tuple[int, bytes]], size: int) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def file_records(lines: Iterable[bytes], first_offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines numbered from ``first_offset``: the offsets ``northstar
    replay`` gives them (or a dump of one partition from ``first_offset``)."""
    kept = (line for line in lines if line.strip())
    return ((first_offset + i, line) for i, line in enumerate(kept))


def backfill_file(
    client: Any,
    trees: Sequence[Tree],
    lines: Iterable[bytes],
    *,
    namespace: str,
    partition: str,
    first_offset: int = 0,
    batch_size: int = 5000,
    now_ms: Callable[[], int] | None = None,
) -> PartitionReport:
    """Backfill from a file holding ``partition``'s records in offset order."""
    backfiller = Backfiller(client, trees, namespace, now_ms)
    backfiller.clear_scratch()
    try:
        return backfiller.run_partition(partition, batched(file_records(lines, first_offset), batch_size))
    finally:
        backfiller.clear_scratch()
