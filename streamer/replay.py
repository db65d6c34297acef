"""Feed an event file through the same decode/verdict/aggregate/apply path as
the Kafka worker, then evaluate every tree (``northstar replay``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.engine import BatchApplier
from streamer.spec.model import Tree
from streamer.state.evaluate import Value, evaluate
from streamer.state.store import Store

REPLAY_PARTITION = "replay"


@dataclass(frozen=True)
class TreeValues:
    """Every metric of one tree at one evaluation time. ``counts``: 'accepted',
    'late', 'duplicate' (for this tree) and 'rejected:<reason>' (per line)."""

    tree: str
    at_ms: int
    metrics: dict[str, Value]
    counts: dict[str, int] = field(default_factory=dict)


def _batches(lines: Iterable[bytes], size: int) -> Iterable[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for offset, line in enumerate(lines):
        batch.append((offset, line))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def replay(
    lines: Iterable[bytes],
    trees: Sequence[Tree],
    client: Any,
    *,
    at_ms: Sequence[int],
    now_ms: int,
    batch_size: int = 5000,
    namespace: str = "replay",
    progress: Callable[[int], None] | None = None,
) -> list[TreeValues]:
    """Replay ``lines`` (one raw event each, blank lines skipped) into a fresh
    ``namespace`` and return every tree's values at every time in ``at_ms``."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    store = Store(client, namespace=namespace)
    store.delete_namespace()
    applier = BatchApplier(store, trees)
    counts: Counter[str] = Counter()
    kept = (line for line in lines if line.strip())
    for batch in _batches(kept, batch_size):
        counts.update(applier.apply(REPLAY_PARTITION, batch, now_ms).counts)
        if progress is not None:
            progress(len(batch))
    return tree_values(applier, counts, at_ms)


def tree_values(applier: BatchApplier, counts: Counter[str], at_ms: Sequence[int]) -> list[TreeValues]:
    """Every tree of ``applier`` evaluated at ``at_ms``, with the batch counts
    (``BatchResult.counts`` summed) of what was applied."""
    store = applier.store
    rejected = {k: v for k, v in counts.items() if k.startswith("rejected:")}
    results = []
    for plan in applier.plans:
        name = plan.tree.tree
        tree_counts = {
            "accepted": counts["accepted:" + name],
            "late": counts["late:" + name],
            "duplicate": counts["duplicate:" + name],
            **rejected,
        }
        for t, values in zip(at_ms, evaluate(store, plan, at_ms), strict=True):
            results.append(TreeValues(name, t, values, tree_counts))
    return results
