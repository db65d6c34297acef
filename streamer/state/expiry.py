"""Expiry of state that no definition uses any more (docs/state.md §5).

Every key of a state unit, and every per-tree key, carries a TTL of the
tree's *retention* (lateness horizon + grace, unless set). The TTL is
refreshed while the unit is live, from two places:

- the apply path (:class:`Refresher`): after a unit's apply, its keys'
  TTLs are refreshed in the same pipeline, at most once per key per refresh
  interval (never per event);
- the leader's periodic :func:`touch`: one ``SCAN`` of the namespace that
  refreshes every key of a live unit or tree (so a defined but quiet unit
  never expires) and gives keys nobody refreshes any more (orphaned
  fingerprints, removed trees) a TTL if they have none.

A fingerprint that no definition produces any more is refreshed by nobody,
so it disappears one retention after the last refresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.state.keys import Keys
from streamer.state.store import Store
from streamer.windows.breakdown import compile_breakdowns
from streamer.windows.units import Plan, Unit

DEFAULT_GRACE_S = 86_400
"""One day beyond the lateness horizon: covers a rolling deploy (old and new
workers side by side), a rollback decided the next morning, and clock skew."""
DEFAULT_REFRESH_S = 600.0
SCAN_BATCH = 1000

UNIT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "sum": ("s",),
    "entity": ("e", "gc", "eg", "q", "g"),
    "hll": (),  # one key per bucket: "h:<bucket>", refreshed from the payload
    "retention": ("e", "a", "r", "d"),
    "pair": ("p", "pz", "c", "v"),  # plus "z:<window end>": refreshed by touch()
    "relational": ("own", "ug", "pv", "vc", "oq", "gq", "i", "n", "o", "g"),
}
"""The fixed keys of each unit kind (besides ``applied``). A suffix missing
here is not lost: touch() refreshes every key of a live unit by its tag."""
TREE_SUFFIXES = ("wm", "wj", "ids", "idg")
"""Per-tree keys the apply path writes (the evaluator's are bounded by count
and refreshed by touch())."""


@dataclass(frozen=True)
class Retention:
    """How long state outlives its last refresh."""

    grace_s: int = DEFAULT_GRACE_S
    fixed_s: float | None = None  # one retention for every tree instead of horizon + grace
    refresh_s: float = DEFAULT_REFRESH_S

    def ttl_ms(self, plan: Plan) -> int:
        if self.fixed_s is not None:
            return max(1, int(self.fixed_s * 1000))
        return plan.horizon_ms + self.grace_s * 1000

    def refresh_every_s(self, ttl_ms: int) -> float:
        """At most the configured interval, and at most a quarter of the TTL."""
        return min(self.refresh_s, ttl_ms / 4000)


def unit_keys(keys: Keys, unit: Unit, payload: dict[str, Any] | None = None) -> list[str]:
    """The unit's keys known without a scan (hll: the buckets of ``payload``)."""
    out = [keys.applied(unit)] + [keys.unit(unit, s) for s in UNIT_SUFFIXES[unit.kind]]
    if unit.kind == "hll" and payload:
        out += [keys.unit(unit, f"h:{op[0]}") for op in payload.get("b", ())]
    return out


@dataclass
class Refresher:
    """Apply-path TTL refresh, rate-limited per key."""

    keys: Keys
    plans: Sequence[Plan]
    retention: Retention = field(default_factory=Retention)
    clock: Callable[[], float] = time.monotonic
    _next: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)  # commits run in threads

    def __post_init__(self) -> None:
        self._ttl = {p.tree.tree: self.retention.ttl_ms(p) for p in self.plans}

    def due(
        self, applied: Iterable[tuple[Unit, dict[str, Any]]], extra: Iterable[tuple[str, str]] = ()
    ) -> list[tuple[str, int]]:
        """``(key, ttl_ms)`` to PEXPIRE after applying ``(unit, payload)``s;
        ``extra`` ``(tree, key)``: other keys of those trees (breakdown label
        registries, which must never predecease their labels; the verdict
        script's per-partition lists)."""
        out: list[tuple[str, int]] = []
        candidates: list[tuple[str, int]] = []
        trees = set()
        for unit, payload in applied:
            ttl = self._ttl[unit.tree]
            candidates += [(k, ttl) for k in unit_keys(self.keys, unit, payload)]
            trees.add(unit.tree)
        candidates += [(key, self._ttl[tree]) for tree, key in extra]
        for tree in trees:
            candidates += [(self.keys.tree(tree, s), self._ttl[tree]) for s in TREE_SUFFIXES]
        with self._lock:
            now = self.clock()
            for key, ttl in candidates:
                if self._next.get(key, 0.0) <= now:
                    self._next[key] = now + self.retention.refresh_every_s(ttl)
                    out.append((key, ttl))
            if len(self._next) > 100_000:  # hll bucket keys come and go
                self._next = {k: t for k, t in self._next.items() if t > now}
        return out


# ---------------------------------------------------------------------- touch


@dataclass(frozen=True)
class KeyOwner:
    """Whose key: ``tree`` and ``fingerprint`` (None for a per-tree key)."""

    tree: str
    fingerprint: str | None


def owner_of(keys: Keys, key: str) -> KeyOwner | None:
    """``<ns>:{tree:fp}:suffix`` -> (tree, fp); ``<ns>:{tree}:suffix`` ->
    (tree, None); anything else (another layout or namespace) -> None."""
    prefix = keys.namespace + ":{"
    if not key.startswith(prefix):
        return None
    close = key.find("}:", len(prefix))
    if close < 0:
        return None
    tag = key[len(prefix) : close]
    tree, sep, fingerprint = tag.rpartition(":")
    if not sep:
        return KeyOwner(tag, None)
    return KeyOwner(tree, fingerprint)


@dataclass
class TouchReport:
    refreshed: int = 0  # keys of live units and trees
    expiring: int = 0  # orphaned keys given a TTL now
    orphaned: int = 0  # orphaned keys seen (with or without a TTL before)


def live_ttls(plans: Sequence[Plan], retention: Retention) -> tuple[dict[str, int], dict[str, int]]:
    """TTL per live unit tag (``tree:fp``) and per live tree."""
    units = {f"{u.tree}:{u.fingerprint}": retention.ttl_ms(p) for p in plans for u in p.units}
    units |= {
        f"{b.unit.tree}:{b.unit.fingerprint}": retention.ttl_ms(p)
        for p in plans
        for b in compile_breakdowns(p).values()
    }
    trees = {p.tree.tree: retention.ttl_ms(p) for p in plans}
    return units, trees


def _decode(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


def touch(store: Store, plans: Sequence[Plan], retention: Retention) -> TouchReport:
    """Refresh every key of the live units and trees of ``plans``; give the
    namespace's other unit and tree keys (orphans) a TTL if they have none.
    Orphans get their tree's retention, or the longest one when the tree is
    gone. Keys of other layouts are left alone."""
    units, trees = live_ttls(plans, retention)
    orphan_ttl = max(trees.values(), default=int((retention.fixed_s or retention.grace_s) * 1000))
    report = TouchReport()
    batch: list[str] = []

    def flush() -> None:
        live: list[tuple[str, int]] = []
        orphans: list[tuple[str, int]] = []
        for key in batch:
            owner = owner_of(store.keys, key)
            if owner is None:
                continue
            tag = owner.tree if owner.fingerprint is None else f"{owner.tree}:{owner.fingerprint}"
            ttl = units.get(tag) if owner.fingerprint is not None else trees.get(tag)
            if ttl is not None:
                live.append((key, ttl))
            else:
                orphans.append((key, trees.get(owner.tree, orphan_ttl)))
        ttls = store.execute(lambda pipe: [pipe.pttl(k) for k, _ in orphans]) if orphans else []
        fresh = [(k, t) for (k, t), left in zip(orphans, ttls, strict=True) if int(left) == -1]
        store.execute(lambda pipe: [pipe.pexpire(k, t) for k, t in live + fresh])
        report.refreshed += len(live)
        report.orphaned += len(orphans)
        report.expiring += len(fresh)
        batch.clear()

    for key in store.client.scan_iter(match=store.keys.pattern(), count=SCAN_BATCH):
        batch.append(_decode(key))
        if len(batch) >= SCAN_BATCH:
            flush()
    if batch:
        flush()
    return report
