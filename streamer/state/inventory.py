"""What a namespace holds, per unit fingerprint and per tree, compared with
the definitions (``northstar state``): live or orphaned, keys, memory, TTL,
partitions whose history a backfill still has to fill."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from streamer.state.expiry import KeyOwner, owner_of
from streamer.state.store import Store
from streamer.windows.breakdown import compile_breakdowns
from streamer.windows.units import Plan, Unit, reader_units

Status = Literal["live", "orphaned", "removed-tree"]
MEMORY_SAMPLE = 64  # MEMORY USAGE on at most this many keys per entry, extrapolated
BATCH = 500


@dataclass
class Entry:
    """One unit fingerprint (``fingerprint`` set) or one tree's own keys."""

    tree: str
    fingerprint: str | None
    status: Status
    kind: str | None = None
    metrics: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    memory_bytes: int = 0
    ttl_ms_min: int | None = None  # None: no key has a TTL
    ttl_ms_max: int | None = None
    without_ttl: int = 0
    missing_partitions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tree": self.tree, "fingerprint": self.fingerprint, "status": self.status, "kind": self.kind,
            "metrics": self.metrics, "keys": len(self.keys), "memory_bytes": self.memory_bytes,
            "ttl_ms_min": self.ttl_ms_min, "ttl_ms_max": self.ttl_ms_max, "keys_without_ttl": self.without_ttl,
            "missing_history_partitions": self.missing_partitions,
        }


def _chunks(items: Sequence[str], size: int = BATCH) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def inventory(store: Store, plans: Sequence[Plan]) -> list[Entry]:
    """Every unit and tree of ``store``'s namespace, and every live unit of ``plans``."""
    trees = {p.tree.tree for p in plans}
    units: dict[tuple[str, str], tuple[Unit, list[str]]] = {}
    for plan in plans:
        for unit in plan.units:
            units[(unit.tree, unit.fingerprint)] = (unit, [])
        for name, reader in plan.readers.items():
            for unit in {u.fingerprint: u for u in reader_units(reader)}.values():
                units[(unit.tree, unit.fingerprint)][1].append(name)
        for name, breakdown in compile_breakdowns(plan).items():
            units.setdefault((breakdown.unit.tree, breakdown.unit.fingerprint), (breakdown.unit, []))[1].append(
                f"{name} (breakdown)"
            )
    entries: dict[KeyOwner, Entry] = {}
    for (tree, fp), (unit, metrics) in units.items():
        entries[KeyOwner(tree, fp)] = Entry(tree, fp, "live", unit.kind, sorted(metrics))
    for tree in trees:
        entries[KeyOwner(tree, None)] = Entry(tree, None, "live")
    for raw in store.client.scan_iter(match=store.keys.pattern(), count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        owner = owner_of(store.keys, key)
        if owner is None:
            continue
        entry = entries.get(owner)
        if entry is None:
            status: Status = "orphaned" if owner.tree in trees else "removed-tree"
            entry = entries[owner] = Entry(owner.tree, owner.fingerprint, status)
        entry.keys.append(key)
    for entry in entries.values():
        _measure(store, entry)
    return sorted(entries.values(), key=lambda e: (e.tree, e.fingerprint or "", e.status))


def _measure(store: Store, entry: Entry) -> None:
    ttls: list[int] = []
    for chunk in _chunks(entry.keys):
        ttls += [int(t) for t in store.execute(lambda pipe, c=chunk: [pipe.pttl(k) for k in c])]
    with_ttl = [t for t in ttls if t >= 0]
    entry.without_ttl = sum(1 for t in ttls if t == -1)
    entry.ttl_ms_min = min(with_ttl, default=None)
    entry.ttl_ms_max = max(with_ttl, default=None)
    sample = entry.keys[:: max(1, len(entry.keys) // MEMORY_SAMPLE)][:MEMORY_SAMPLE]
    if sample:
        sizes = store.execute(lambda pipe: [pipe.memory_usage(k, samples=5) for k in sample])
        measured = sum(int(s or 0) for s in sizes)
        entry.memory_bytes = measured * len(entry.keys) // len(sample)
    applied = [k for k in entry.keys if k.endswith(":applied")]
    if applied and entry.fingerprint is not None:
        fields = {
            (f.decode() if isinstance(f, bytes) else f): int(v)
            for f, v in store.client.hgetall(applied[0]).items()
        }
        entry.missing_partitions = sorted(
            name[len("born:") :]
            for name, born in fields.items()
            if name.startswith("born:") and fields.get("bf:" + name[len("born:") :], -1) < born
        )


def drop(store: Store, entries: Sequence[Entry]) -> int:
    """Delete every key of ``entries``; the number of keys deleted."""
    deleted = 0
    for entry in entries:
        for chunk in _chunks(entry.keys):
            deleted += sum(int(n) for n in store.execute(lambda pipe, c=chunk: [pipe.delete(k) for k in c]))
    return deleted
