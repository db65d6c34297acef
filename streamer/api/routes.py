"""The route handlers. Every Redis read runs in a worker thread (reads.py);
unknown trees and metrics are rejected before any key is built from them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from streamer.api import page, reads, sse, views
from streamer.api.errors import error_response, not_found
from streamer.api.openapi import document
from streamer.evaluate.snapshot import Snapshot
from streamer.spec.model import Metric, Tree
from streamer.state.breakdowns import breakdown_values
from streamer.state.groups import group_values, grouped
from streamer.state.store import Store
from streamer.windows.units import Plan, compile_tree

HEALTH_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Context:
    """What the handlers share (one per application)."""

    store: Store
    trees: dict[str, Tree]
    plans: dict[str, Plan]
    registry: CollectorRegistry
    hub: sse.SnapshotHub
    heartbeat_interval: float

    @classmethod
    def build(cls, store: Store, trees: list[Tree], registry: CollectorRegistry,
              poll_interval: float, heartbeat_interval: float) -> Context:
        names = [t.tree for t in trees]
        return cls(
            store=store,
            trees={t.tree: t for t in trees},
            plans={t.tree: compile_tree(t) for t in trees},
            registry=registry,
            hub=sse.SnapshotHub(store, names, poll_interval),
            heartbeat_interval=heartbeat_interval,
        )

    def tree(self, name: str) -> Tree:
        try:
            return self.trees[name]
        except KeyError:
            known = ", ".join(sorted(self.trees))
            raise not_found(f"unknown tree {name!r}; known trees: {known}") from None

    def metric(self, tree: Tree, name: str) -> Metric:
        try:
            return tree.metric(name)
        except KeyError:
            raise not_found(f"tree {tree.tree!r} has no metric {name!r}") from None


CONTEXT = web.AppKey("northstar_api", Context)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        ok = await asyncio.wait_for(asyncio.to_thread(reads.ping, ctx.store), HEALTH_TIMEOUT_S)
    except Exception:  # Redis down, slow or refusing: any failure to answer PING is "degraded"
        ok = False
    return _json({"status": "ok" if ok else "degraded", "redis": ok}, 200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = await asyncio.to_thread(encoder, ctx.registry)
    # set directly: aiohttp's content_type= refuses the parameters Prometheus needs
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    return _json(document())


async def list_trees(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    names = sorted(ctx.trees)
    snaps = await asyncio.to_thread(reads.snapshots, ctx.store, names)
    return _json({"trees": [views.tree_summary(ctx.trees[n], snaps[n]) for n in names]})


async def get_tree(request: web.Request) -> web.Response:
    tree = request.app[CONTEXT].tree(request.match_info["tree"])
    return _json(views.tree_view(tree))


async def get_snapshot(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tree = ctx.tree(request.match_info["tree"])
    raw = (await asyncio.to_thread(reads.raw_snapshots, ctx.store, [tree.tree]))[tree.tree]
    if raw is None:
        raise not_found(f"tree {tree.tree!r} has no snapshot yet: the evaluator has not run")
    return web.Response(body=raw, content_type="application/json")


async def get_metric(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tree = ctx.tree(request.match_info["tree"])
    metric = ctx.metric(tree, request.match_info["metric"])
    limit = views.parse_limit(request.query.get("limit"))

    def read() -> tuple[Snapshot | None, list[Snapshot]]:
        return reads.snapshots(ctx.store, [tree.tree])[tree.tree], reads.history(ctx.store, tree.tree, limit)

    latest, history = await asyncio.to_thread(read)
    return _json({
        "tree": tree.tree,
        "metric": metric.name,
        "current": views.find_metric(latest, metric.name),
        "at": latest["at"] if latest else None,
        "history": views.history_points(history, metric.name),
    })


async def get_groups(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tree = ctx.tree(request.match_info["tree"])
    metric = ctx.metric(tree, request.match_info["metric"])
    plan = ctx.plans[tree.tree]
    if not grouped(plan, metric.name):
        raise not_found(
            f"metric {metric.name!r} of tree {tree.tree!r} is not counted per group, so it has no "
            "per-group values (only metrics with a `group:` rule, e.g. activated organizations, do)"
        )
    raw_at = request.query.get("at")
    if raw_at is not None:
        at = views.parse_at(raw_at)
    else:
        snap = (await asyncio.to_thread(reads.snapshots, ctx.store, [tree.tree]))[tree.tree]
        if snap is None:
            raise not_found(f"tree {tree.tree!r} has no snapshot yet; pass ?at=<ISO 8601 time>")
        at = snap["at"]
    values = await asyncio.to_thread(group_values, ctx.store, plan, metric.name, at)
    by, minimum = views.group_rule(metric)
    return _json({
        "tree": tree.tree,
        "metric": metric.name,
        "at": at,
        "group_by": by,
        "min_members": minimum,
        "groups": [
            {"group": name, "members": count, "qualifies": count >= minimum}
            for name, count in values.items()
        ],
    })


async def get_breakdown(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tree = ctx.tree(request.match_info["tree"])
    metric = ctx.metric(tree, request.match_info["metric"])
    if metric.breakdown is None:
        raise not_found(
            f"metric {metric.name!r} of tree {tree.tree!r} has no `breakdown:`, so it has no "
            "per-label values (count, sum and distinct metrics can be broken down)"
        )
    at = await _at(ctx, tree, request.query.get("at"))
    plan = ctx.plans[tree.tree]
    rows = await asyncio.to_thread(breakdown_values, ctx.store, plan, [at], [metric.name])
    return _json({
        "tree": tree.tree,
        "metric": metric.name,
        "at": at,
        "property": metric.breakdown.property,
        "max_values": metric.breakdown.max_values,
        "labels": [{"label": lv.label, "value": lv.value} for lv in rows[0][metric.name]],
    })


async def _at(ctx: Context, tree: Tree, raw_at: str | None) -> int:
    """``?at=`` as epoch ms, or the latest snapshot's evaluation time."""
    if raw_at is not None:
        return views.parse_at(raw_at)
    snap = (await asyncio.to_thread(reads.snapshots, ctx.store, [tree.tree]))[tree.tree]
    if snap is None:
        raise not_found(f"tree {tree.tree!r} has no snapshot yet; pass ?at=<ISO 8601 time>")
    return snap["at"]


async def list_alerts(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    names = sorted(ctx.trees)
    snaps = await asyncio.to_thread(reads.snapshots, ctx.store, names)
    alerts = [a for n in names if (s := snaps[n]) is not None and (a := views.active_alert(s)) is not None]
    return _json({"alerts": alerts})


async def stream(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    wanted = request.query.getall("tree", [])
    trees = frozenset(ctx.tree(name).tree for name in wanted) if wanted else frozenset(ctx.trees)
    if ctx.hub.closed:
        return error_response(503, "unavailable", "the server is shutting down")
    return await sse.stream(request, ctx.hub, trees, ctx.heartbeat_interval)


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz, name="healthz")
    r.add_get("/metrics", metrics, name="metrics")
    r.add_get("/openapi.json", openapi, name="openapi")
    r.add_get("/api/v1/trees", list_trees, name="list_trees")
    r.add_get("/api/v1/trees/{tree}", get_tree, name="get_tree")
    r.add_get("/api/v1/trees/{tree}/snapshot", get_snapshot, name="get_snapshot")
    r.add_get("/api/v1/trees/{tree}/metrics/{metric}", get_metric, name="get_metric")
    r.add_get("/api/v1/trees/{tree}/metrics/{metric}/groups", get_groups, name="get_groups")
    r.add_get("/api/v1/trees/{tree}/metrics/{metric}/breakdown", get_breakdown, name="get_breakdown")
    r.add_get("/api/v1/alerts", list_alerts, name="list_alerts")
    r.add_get("/api/v1/stream", stream, name="stream", allow_head=False)
    r.add_get("/tree/{tree}", page.tree_page, name="tree_page")

