"""Redis memory per active user: per state unit (and the metrics reading it)
for the education tree, and exact vs HyperLogLog distinct counts.

- per unit: ``MEMORY USAGE`` (all samples) of every key of the unit after a
  fill with N active users (``streamer.bench.evaluation``'s events);
- distinct counts: a one-metric tree (``weekly_active_learners``) exact and
  with ``approximate: true``, ``used_memory`` before and after the same fill.
"""

from __future__ import annotations

from typing import Any

from streamer.bench.evaluation import empty, fill
from streamer.spec.model import Tree
from streamer.state.store import Store
from streamer.windows.units import Plan, compile_tree, reader_units

NAMESPACE = "bench"  # where streamer.bench.evaluation.fill writes by default


def key_bytes(client: Any, pattern: str) -> tuple[int, int]:
    """(keys, bytes) of every key matching ``pattern``."""
    keys = total = 0
    for key in client.scan_iter(match=pattern, count=1000):
        keys += 1
        total += int(client.memory_usage(key, samples=0) or 0)
    return keys, total


def unit_breakdown(client: Any, plan: Plan, users: int, namespace: str = NAMESPACE) -> dict[str, Any]:
    """Bytes per active user of every unit of ``plan`` in ``namespace`` and of
    every metric (the sum of the units it reads; a shared unit counts in each
    metric)."""
    store = Store(client, namespace=namespace)
    units: dict[str, dict[str, Any]] = {}
    for unit in plan.units:
        keys, size = key_bytes(client, store.keys.unit(unit, "*"))
        units[unit.fingerprint] = {"kind": unit.kind, "keys": keys, "bytes": size,
                                   "bytes_per_user": round(size / users, 1)}
    metrics = {}
    for name, reader in plan.readers.items():
        fps = sorted({u.fingerprint for u in reader_units(reader)})
        size = sum(units[fp]["bytes"] for fp in fps)
        metrics[name] = {"units": fps, "bytes_per_user": round(size / users, 1)}
    _, bookkeeping = key_bytes(client, store.keys.tree(plan.tree.tree, "*"))
    return {"users": users, "units": units, "metrics": metrics,
            "all_units_bytes_per_user": round(sum(u["bytes"] for u in units.values()) / users, 1),
            "tree_bookkeeping_bytes": bookkeeping}


def distinct_tree(education: Tree, approximate: bool) -> Tree:
    """``weekly_active_learners`` alone, as the north star of a tree of its own."""
    doc = education.model_dump(mode="python", by_alias=True, exclude_none=True)
    metric = next(m for m in doc["inputs"] if m["name"] == "weekly_active_learners")
    north = {k: v for k, v in metric.items() if k not in ("dimension", "owner")}
    north["measure"] = {**north["measure"], "approximate": approximate}
    return Tree.model_validate({
        "tree": "distinct_" + ("hll" if approximate else "exact"), "game": doc["game"],
        "product": doc["product"], "resolution": doc["resolution"], "source": doc["source"],
        "north_star": north, "inputs": [],
    })


def distinct_memory(client: Any, education: Tree, users: int, batch: int = 10_000) -> dict[str, Any]:
    """used_memory per active user for an exact and a HyperLogLog distinct count."""
    out: dict[str, Any] = {"users": users, "metric": "weekly_active_learners"}
    for approximate in (False, True):
        tree = distinct_tree(education, approximate)
        empty(client)
        base = int(client.info("memory")["used_memory"])
        fill(client, tree, users, batch)
        used = int(client.info("memory")["used_memory"]) - base
        plan = compile_tree(tree)
        _, unit_size = key_bytes(client, Store(client, namespace=NAMESPACE).keys.unit(plan.units[0], "*"))
        out["hll" if approximate else "exact"] = {
            "used_memory_delta_bytes": used, "used_memory_bytes_per_user": round(used / users, 1),
            "unit_bytes_per_user": round(unit_size / users, 1),
        }
    return out
