"""Reading metric values at window ends from Redis (two pipelined round
trips for a whole tree and any number of evaluation times).

Cost per metric and time: a windowed sum reads the unit's bucket hash
(``O(buckets)``), an entity measure sums its difference array up to the window
end (``O(window ends kept)``), a percentile does ``ZCARD`` + ``ZRANGE`` by rank
(``O(log n)``). Nothing here is proportional to the number of events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamer.state.store import Store
from streamer.windows.units import (
    DiffCount,
    HllCount,
    PercentileOf,
    Plan,
    Quotient,
    Reader,
    Unit,
    WindowSum,
)

Value = float | None


def window_end(at_ms: int, resolution_ms: int) -> int:
    """The window-end bucket index for evaluation time ``at_ms`` (docs/semantics.md §1)."""
    return -((-at_ms) // resolution_ms)


def _num(raw: Any) -> float:
    return float(raw.decode() if isinstance(raw, bytes) else raw)


def _int_map(raw: dict[Any, Any]) -> dict[int, float]:
    return {int(k): _num(v) for k, v in raw.items()}


def _ident(unit: Unit) -> str:
    """What tells units' state apart: the fingerprint, and the breakdown label part."""
    return f"{unit.fingerprint}:{unit.part}"


def _collect(reader: Reader, out: list[Reader]) -> None:
    if isinstance(reader, Quotient):
        _collect(reader.numerator, out)
        _collect(reader.denominator, out)
    else:
        out.append(reader)


@dataclass(frozen=True)
class Reading:
    """A metric's value with what statistics need: for ratios the numerator
    and denominator; ``kind`` says which test applies (``proportion`` /
    ``rate`` for ratios of counts, ``count``, or ``other``); ``sample`` is the
    number the minimum-sample rule compares (denominator, count, percentile
    population), None when the measure has none."""

    value: Value
    numerator: Value = None
    denominator: Value = None
    kind: str = "other"
    sample: Value = None


def _is_count(reader: Reader) -> bool:
    if isinstance(reader, WindowSum):
        return reader.unit.params.get("value") is None and "entity" not in reader.unit.params
    return isinstance(reader, DiffCount | HllCount)


def sample_kind(reader: Reader) -> str:
    """Which statistical test fits the reader (see streamer.evaluate.stats)."""
    if isinstance(reader, Quotient):
        if isinstance(reader.numerator, DiffCount) and reader.numerator.array == "r":
            return "proportion"  # retention: retained out of previously active
        if _is_count(reader.numerator) and _is_count(reader.denominator):
            return "rate"
        return "other"
    return "count" if _is_count(reader) else "other"


def read_tree(store: Store, plan: Plan, at_ms: Sequence[int]) -> list[dict[str, Reading]]:
    """Every metric of ``plan`` at each time in ``at_ms``, with statistics inputs."""
    ends = [window_end(t, plan.resolution_ms) for t in at_ms]
    leaves: list[Reader] = []
    for reader in plan.readers.values():
        _collect(reader, leaves)

    maps: dict[tuple[str, str], dict[int, float]] = {}
    requests: list[tuple[str, Any, Any]] = []
    keys: list[tuple[str, str, str]] = []
    for leaf in leaves:
        if isinstance(leaf, WindowSum | DiffCount):
            suffix = "s" if isinstance(leaf, WindowSum) else leaf.array
            wanted = ("h", _ident(leaf.unit), suffix)
            if wanted not in keys:
                requests.append(("hgetall", leaf.unit, suffix))
                keys.append(wanted)
        elif isinstance(leaf, HllCount):
            for e in ends:
                requests.append(("pfcount", leaf.unit, [f"h:{b}" for b in range(e - leaf.window_buckets, e)]))
                keys.append(("p", _ident(leaf.unit), str(e)))
        elif isinstance(leaf, PercentileOf):
            for e in ends:
                requests.append(("zall", leaf.unit, f"z:{e}"))
                keys.append(("z", _ident(leaf.unit), str(e)))
    replies = store.read_raw(requests)
    scalars: dict[tuple[str, str, str], int] = {}
    for key, reply in zip(keys, replies, strict=True):
        if key[0] == "h":
            maps[(key[1], key[2])] = _int_map(reply)
        else:
            scalars[key] = int(reply)

    def leaf_value(leaf: Reader, e: int) -> Value:
        if isinstance(leaf, WindowSum):
            m = maps[(_ident(leaf.unit), "s")]
            return sum(m.get(b, 0.0) for b in range(e - leaf.window_buckets, e))
        if isinstance(leaf, DiffCount):
            m = maps[(_ident(leaf.unit), leaf.array)]
            upto = e - leaf.shift_buckets
            return float(sum(v for k, v in m.items() if k <= upto))
        if isinstance(leaf, HllCount):
            return float(scalars[("p", _ident(leaf.unit), str(e))])
        if isinstance(leaf, PercentileOf):
            n = scalars[("z", _ident(leaf.unit), str(e))]
            if n == 0:
                return None
            h = (n - 1) * leaf.q / 100.0
            lo = math.floor(h)
            # seconds first, then interpolate: exactly docs/semantics.md §3
            xs = [x / 1000.0 for x in store.zrange_by_rank(leaf.unit, f"z:{e}", lo, min(lo + 1, n - 1))]
            return xs[0] + (h - lo) * (xs[-1] - xs[0])
        raise TypeError(leaf)

    def value(reader: Reader, e: int) -> Value:
        if isinstance(reader, Quotient):
            num, den = value(reader.numerator, e), value(reader.denominator, e)
            if num is None or den is None or den == 0:
                return None
            return num / den
        return leaf_value(reader, e)

    def reading(reader: Reader, e: int) -> Reading:
        if isinstance(reader, Quotient):
            num, den = value(reader.numerator, e), value(reader.denominator, e)
            v = None if num is None or den is None or den == 0 else num / den
            return Reading(v, num, den, sample_kind(reader), den)
        v = leaf_value(reader, e)
        sample = None
        if isinstance(reader, PercentileOf):
            sample = float(scalars[("z", _ident(reader.unit), str(e))])
        elif sample_kind(reader) == "count":
            sample = v
        return Reading(v, None, None, sample_kind(reader), sample)

    return [{name: reading(reader, e) for name, reader in plan.readers.items()} for e in ends]


def evaluate(store: Store, plan: Plan, at_ms: Sequence[int]) -> list[dict[str, Value]]:
    """Every metric of ``plan`` at each time in ``at_ms``."""
    return [{name: r.value for name, r in row.items()} for row in read_tree(store, plan, at_ms)]
