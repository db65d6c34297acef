"""The HTTP API against a real Redis: every route's answers and errors, the
bearer token, the snapshot stream (new evaluations, client disconnects,
shutdown) and ``northstar api`` itself.

The seeded data are real: events applied with the batch path and evaluated
by ``TreeEvaluator``. Education's lesson abandon rate jumps while its
learning minutes double, so the divergence alert goes pending then firing;
in learning_users six owners of "acme" and two of "globex" have broadcast
learnings, so acme is an activated organization."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from streamer.api import ApiConfigError, create_app
from streamer.api.routes import CONTEXT
from streamer.engine import BatchApplier
from streamer.evaluate.evaluator import TreeEvaluator, load_snapshot
from streamer.spec.model import Tree
from streamer.state.store import Store
from tests.trees import example

DAY = 86_400_000
T = 20_000 * DAY  # 2024-10-04T00:00:00Z
NAMESPACE = "apitest"
TOKEN = "test-token-7f3a9c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).parents[2]


# --------------------------------------------------------------------------- data


def education() -> Tree:
    """Education with guardrails that degrade at once and a one-day alert hold,
    so that two evaluations make the divergence pending, three make it fire."""
    tree = example("education")
    return tree.model_copy(update={
        "guardrails": tuple(g.model_copy(update={"for_": 0}) for g in tree.guardrails),
        "alerting": tree.alerting.model_copy(update={"for_": 86400}),
    })


def trees() -> list[Tree]:
    """Education and learning_users (evaluated), plus two never evaluated."""
    return [education(), example("learning_users"), example("b2b_collaboration"), example("netflix")]


def events() -> list[bytes]:
    ids = itertools.count()
    out: list[bytes] = []

    def add(name: str, user: str, at: int, props: dict[str, Any], groups: dict[str, str] | None = None) -> None:
        out.append(orjson.dumps({"event_type": name, "user_id": user, "time": at, "insert_id": f"i{next(ids)}",
                                 "event_properties": props, "groups": groups or {}}))

    lesson = {"lesson_id": "l1", "course_id": "c1"}
    for day in range(-14, 3):
        current = day >= -7
        for i in range(25):
            add("lesson_completed", f"usr_learner_{(day * 25 + i) % 60}", T + day * DAY + i * 1000,
                {**lesson, "minutes": 20 if current else 10})
        for i in range(25 if current else 2):
            add("lesson_abandoned", f"usr_learner_{i}", T + day * DAY + 3_600_000 + i, {**lesson, "minutes": 3})
    for k in range(8):
        org = {"org": "acme" if k < 6 else "globex"}
        add("learning_shared", f"usr_owner_{k}", T - 2 * DAY + k, {"learning_id": f"L{k}"}, org)
        for v in range(2):
            add("learning_viewed", f"usr_viewer_{k}_{v}", T - DAY + 10 * k + v, {"learning_id": f"L{k}"}, org)
    return out


class Wall:
    """A wall clock for the evaluator that moves one second per call."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def seed(client: redis.Redis) -> tuple[Store, list[Tree]]:
    """Apply the events; evaluate education at T, T+1d, T+2d (firing) and
    learning_users at T."""
    store = Store(client, namespace=NAMESPACE)
    all_trees = trees()
    BatchApplier(store, all_trees[:2]).apply("0", list(enumerate(events())), T + 3 * DAY)
    wall = Wall()
    for at in (T, T + DAY, T + 2 * DAY):
        assert TreeEvaluator(store, all_trees[0], wall=wall).evaluate(at) is not None
    assert TreeEvaluator(store, all_trees[1], wall=wall).evaluate(T) is not None
    return store, all_trees


def dead_store(client: redis.Redis) -> Store:
    """A store whose Redis refuses connections (scripts loaded on a live one first)."""
    store = Store(client, namespace=NAMESPACE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # no retries: each request fails at once instead of backing off for seconds
    store.client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5,
                               retry=Retry(NoBackoff(), 0))
    return store


@pytest.fixture
def seeded(redis_client: redis.Redis) -> tuple[Store, list[Tree]]:
    return seed(redis_client)


# --------------------------------------------------------------------------- serving


@contextlib.asynccontextmanager
async def serving(store: Store, tree_list: list[Tree], **kwargs: Any) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(store, tree_list, **kwargs))) as client:
        yield client


def call(seeded: tuple[Store, list[Tree]], check: Callable[[TestClient[Any, Any]], Awaitable[None]],
         **kwargs: Any) -> None:
    """Serve the seeded data (with TOKEN unless ``token=`` says otherwise) and run ``check``."""
    kwargs.setdefault("token", TOKEN)

    async def main() -> None:
        async with serving(*seeded, **kwargs) as client:
            await check(client)

    asyncio.run(main())


async def get_json(client: TestClient[Any, Any], path: str, status: int = 200, **kwargs: Any) -> Any:
    kwargs.setdefault("headers", AUTH)
    response = await client.get(path, **kwargs)
    body = await response.read()
    assert response.status == status, body
    assert response.content_type == "application/json"
    return orjson.loads(body)


def assert_error(body: Any, error: str, *words: str) -> None:
    assert set(body) == {"error", "detail"}
    assert body["error"] == error
    for word in words:
        assert word in body["detail"]


# --------------------------------------------------------------------------- public routes


def test_healthz_is_public_and_reports_redis(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        assert await get_json(client, "/healthz", headers={}) == {"status": "ok", "redis": True}

    call(seeded, check)


def test_healthz_is_degraded_without_redis(redis_client: redis.Redis) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        assert await get_json(client, "/healthz", 503, headers={}) == {"status": "degraded", "redis": False}

    call((dead_store(redis_client), trees()), check)


def test_metrics_expose_the_snapshots_publicly(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/metrics")
        text = await response.text()
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'northstar_divergence_firing{tree="education"} 1.0' in text
        assert 'northstar_metric_value{dimension="",metric="weekly_learning_minutes"' in text
        assert "usr_" not in text
        openmetrics = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await openmetrics.text()).endswith("# EOF\n")

    call(seeded, check)


def test_openapi_document_is_public(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        doc = await get_json(client, "/openapi.json", headers={})
        assert doc["openapi"] == "3.1.0"
        assert "/api/v1/stream" in doc["paths"]

    call(seeded, check)


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="northstar"'),
        ({"Authorization": "Bearer wrong-token"}, 'Bearer realm="northstar", error="invalid_token"'),
        ({"Authorization": f"Basic {TOKEN}"}, 'Bearer realm="northstar", error="invalid_token"'),
        ({"Authorization": "Bearer "}, 'Bearer realm="northstar", error="invalid_token"'),
        ({"Authorization": f"Bearer {TOKEN}x"}, 'Bearer realm="northstar", error="invalid_token"'),
        ({"Authorization": "Bearer tökén"}, 'Bearer realm="northstar", error="invalid_token"'),
    ],
)
def test_api_routes_need_the_token(seeded: tuple[Store, list[Tree]], headers: dict[str, str],
                                   challenge: str) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        for path in ("/api/v1/trees", "/api/v1/trees/education/snapshot", "/api/v1/alerts",
                     "/api/v1/stream", "/api/v1/no-such-route"):
            response = await client.get(path, headers=headers)
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"] == challenge
            assert_error(await response.json(), "unauthorized")

    call(seeded, check)


# the routes anyone may call (docs/operating.md, "Security"): health, the
# Prometheus exposition (bounded labels, no user ids), the OpenAPI document
# and the tree page (an HTML shell without values, which asks for the token)
PUBLIC_ROUTES = {"healthz", "metrics", "openapi", "tree_page"}
PATH_VALUES = {"tree": "education", "metric": "weekly_learning_minutes"}


def concrete_paths(app: web.Application) -> dict[str, str]:
    """Route name -> a callable path of every named route of ``app``."""
    paths: dict[str, str] = {}
    for resource in app.router.resources():
        info = resource.get_info()
        template = info.get("path") or info.get("formatter")
        assert resource.name and template, f"unnamed route {resource!r}"
        paths[resource.name] = template.format(**PATH_VALUES)
    return paths


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}])
def test_every_route_but_the_public_ones_needs_the_token(seeded: tuple[Store, list[Tree]],
                                                          headers: dict[str, str]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        assert client.app is not None
        paths = concrete_paths(client.app)
        assert set(paths) >= PUBLIC_ROUTES, sorted(paths)
        assert len(paths) > len(PUBLIC_ROUTES)
        for name, path in sorted(paths.items()):
            response = await client.get(path, headers=headers)
            if name in PUBLIC_ROUTES:
                assert response.status == 200, (name, path, response.status)
                continue
            assert response.status == 401, (name, path, response.status)
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="northstar"')
            assert_error(await response.json(), "unauthorized")
            if name != "stream":  # the token opens the same route (groups: 404, not a group metric)
                assert (await client.get(path, headers=AUTH)).status in (200, 404), (name, path)

    call(seeded, check)


def test_oversize_bodies_are_refused_with_413(seeded: tuple[Store, list[Tree]]) -> None:
    limit = 64 * 1024

    async def chunks(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 8192):
            yield b"x" * 8192

    async def check(client: TestClient[Any, Any]) -> None:
        for path, headers in (("/api/v1/trees", AUTH), ("/api/v1/trees", {}), ("/healthz", {})):
            response = await client.get(path, headers=headers, data=b"x" * (limit + 1))
            assert response.status == 413, (path, headers)
            assert_error(await response.json(), "payload_too_large", str(limit))
            response = await client.get(path, headers=headers, data=chunks(limit + 8192))
            assert response.status == 413, ("chunked", path, headers)
        # at the limit, the body is no reason to refuse
        await get_json(client, "/api/v1/trees", data=b"x" * limit)

    call(seeded, check)


def test_the_right_token_opens_the_api(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        await get_json(client, "/api/v1/trees")
        await get_json(client, "/api/v1/trees", headers={"Authorization": f"bearer  {TOKEN} "})
        # behind the token, unknown routes are plain 404s
        assert_error(await get_json(client, "/api/v1/no-such-route", 404), "not_found")

    call(seeded, check)


def test_without_a_token_the_api_is_open(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        await get_json(client, "/api/v1/trees", headers={})

    call(seeded, check, token=None)


def test_the_token_and_user_ids_never_reach_the_logs(seeded: tuple[Store, list[Tree]],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        for path in ("/api/v1/trees", "/api/v1/trees/learning_users/metrics/activated_organizations/groups",
                     "/api/v1/trees/education/snapshot", "/api/v1/alerts"):
            await get_json(client, path)
        await client.get("/api/v1/trees", headers={"Authorization": "Bearer wrong"})

    with caplog.at_level(logging.DEBUG):
        call(seeded, check)
    assert caplog.records, "the access log should have recorded the requests"
    assert TOKEN not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "usr_" in r.getMessage()]


def test_create_app_rejects_bad_arguments(seeded: tuple[Store, list[Tree]]) -> None:
    store, tree_list = seeded
    with pytest.raises(ApiConfigError, match="token must not be empty"):
        create_app(store, tree_list, token=" ")
    with pytest.raises(ApiConfigError, match="trees given more than once: education"):
        create_app(store, [*tree_list, tree_list[0]])
    with pytest.raises(ApiConfigError, match="must be > 0"):
        create_app(store, tree_list, poll_interval=0)


# --------------------------------------------------------------------------- trees and snapshots


def test_trees_lists_every_tree_with_its_latest_evaluation(seeded: tuple[Store, list[Tree]]) -> None:
    store, _ = seeded

    async def check(client: TestClient[Any, Any]) -> None:
        body = await get_json(client, "/api/v1/trees")
        by_name = {t["tree"]: t for t in body["trees"]}
        assert sorted(by_name) == ["collaborative_teams", "education", "learning_users", "netflix_queue"]
        snap = load_snapshot(store, "education")
        assert snap is not None
        assert by_name["education"] == {
            "tree": "education", "product": snap["product"], "game": "attention",
            "north_star": "weekly_learning_minutes", "at": T + 2 * DAY, "evaluated_at": snap["evaluated_at"],
        }
        assert by_name["netflix_queue"]["at"] is None
        assert by_name["netflix_queue"]["evaluated_at"] is None

    call(seeded, check)


def test_tree_structure_for_drawing(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        tree = await get_json(client, "/api/v1/trees/education")
        assert tree["north_star"]["name"] == "weekly_learning_minutes"
        assert tree["north_star"]["window"] == "1w"  # format_duration spelling
        assert tree["north_star"]["window_seconds"] == 7 * 86400
        assert [(i["name"], i["dimension"]) for i in tree["inputs"]] == [
            ("weekly_active_learners", "breadth"), ("minutes_per_learner", "depth"),
            ("learning_days_per_learner", "frequency"), ("time_to_first_lesson_p50_seconds", "efficiency"),
        ]
        assert all(i["owner"] for i in tree["inputs"])
        abandon = next(g for g in tree["guardrails"] if g["name"] == "lesson_abandon_rate")
        assert abandon["direction"] == "lower_is_better"
        assert abandon["tolerance"] > 0
        assert abandon["measure"] == "ratio"
        assert tree["kpi"]["name"] == "paid_conversions"
        body = await get_json(client, "/api/v1/trees/nope", 404)
        assert_error(body, "not_found", "unknown tree 'nope'", "education")

    call(seeded, check)


def test_snapshot_is_the_stored_one(seeded: tuple[Store, list[Tree]]) -> None:
    store, _ = seeded

    async def check(client: TestClient[Any, Any]) -> None:
        assert await get_json(client, "/api/v1/trees/education/snapshot") == load_snapshot(store, "education")
        assert_error(await get_json(client, "/api/v1/trees/nope/snapshot", 404), "not_found", "unknown tree")
        body = await get_json(client, "/api/v1/trees/netflix_queue/snapshot", 404)
        assert_error(body, "not_found", "no snapshot yet")

    call(seeded, check)


# --------------------------------------------------------------------------- metrics


def test_metric_current_entry_and_history_newest_last(seeded: tuple[Store, list[Tree]]) -> None:
    store, _ = seeded

    async def check(client: TestClient[Any, Any]) -> None:
        body = await get_json(client, "/api/v1/trees/education/metrics/lesson_abandon_rate")
        snap = load_snapshot(store, "education")
        assert snap is not None
        assert body["current"] == next(m for m in snap["metrics"] if m["name"] == "lesson_abandon_rate")
        assert body["at"] == T + 2 * DAY
        assert [p["at"] for p in body["history"]] == [T, T + DAY, T + 2 * DAY]
        last = body["history"][-1]
        assert last == {k: body["current"][k] for k in ("value", "baseline", "change", "status")} | {"at": T + 2 * DAY}
        assert last["status"] == "degraded"
        two = await get_json(client, "/api/v1/trees/education/metrics/weekly_learning_minutes?limit=2")
        assert [p["at"] for p in two["history"]] == [T + DAY, T + 2 * DAY]
        assert two["history"][-1]["value"] == 3500.0
        assert two["history"][-1]["status"] is None

    call(seeded, check)


def test_metric_errors(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        for limit in ("0", "721", "ten", "-1"):
            body = await get_json(client, f"/api/v1/trees/education/metrics/refund_rate?limit={limit}", 400)
            assert_error(body, "bad_request", "limit")
        body = await get_json(client, "/api/v1/trees/education/metrics/nope", 404)
        assert_error(body, "not_found", "tree 'education' has no metric 'nope'")
        assert_error(await get_json(client, "/api/v1/trees/nope/metrics/x", 404), "not_found", "unknown tree")

    call(seeded, check)


def test_metric_of_a_tree_not_evaluated_yet(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        body = await get_json(client, "/api/v1/trees/netflix_queue/metrics/weekly_queueing_members")
        assert body == {"tree": "netflix_queue", "metric": "weekly_queueing_members",
                        "current": None, "at": None, "history": []}

    call(seeded, check)


# --------------------------------------------------------------------------- per-group values


def test_groups_of_activated_organizations(seeded: tuple[Store, list[Tree]]) -> None:
    path = "/api/v1/trees/learning_users/metrics/activated_organizations/groups"

    async def check(client: TestClient[Any, Any]) -> None:
        body = await get_json(client, path)
        assert body == {
            "tree": "learning_users", "metric": "activated_organizations", "at": T,
            "group_by": "group.org", "min_members": 5,
            "groups": [{"group": "acme", "members": 6, "qualifies": True},
                       {"group": "globex", "members": 2, "qualifies": False}],
        }
        for at in ("2024-10-04T00:00:00Z", "2024-10-04T02:00:00+02:00", "2024-10-04", str(T),
                   "2024-10-04T02:00:00 02:00"):  # an unencoded "+" arrives as a space
            assert (await get_json(client, path, params={"at": at}))["at"] == T, at
        earlier = await get_json(client, path, params={"at": "2024-09-01T00:00:00Z"})
        assert earlier["groups"] == []

    call(seeded, check)


def test_breakdown_of_the_north_star(seeded: tuple[Store, list[Tree]]) -> None:
    """Every lesson of the seeded log is in course c1: one admitted label
    holding the whole North Star, then an empty `other`; the snapshot carries
    the same labels."""
    path = "/api/v1/trees/education/metrics/weekly_learning_minutes/breakdown"

    async def check(client: TestClient[Any, Any]) -> None:
        snapshot = await get_json(client, "/api/v1/trees/education/snapshot")
        north = next(m for m in snapshot["metrics"] if m["name"] == "weekly_learning_minutes")
        body = await get_json(client, path)
        assert north["value"] > 0
        assert body == {
            "tree": "education", "metric": "weekly_learning_minutes", "at": snapshot["at"],
            "property": "prop.course_id", "max_values": 10,
            "labels": [{"label": "c1", "value": north["value"]}, {"label": "other", "value": 0.0}],
        }
        assert north["breakdown"] == body["labels"]
        paid = await get_json(client, "/api/v1/trees/education/metrics/paid_conversions/breakdown",
                              params={"at": "2024-10-04T00:00:00Z"})
        assert paid["at"] == T and paid["labels"] == [{"label": "other", "value": 0.0}]
        refunds = next(m for m in snapshot["metrics"] if m["name"] == "refund_rate")
        assert refunds["breakdown"] is None

    call(seeded, check)


def test_breakdown_errors(seeded: tuple[Store, list[Tree]]) -> None:
    base = "/api/v1/trees/education/metrics"

    async def check(client: TestClient[Any, Any]) -> None:
        body = await get_json(client, f"{base}/weekly_learning_minutes/breakdown", 400, params={"at": "soon"})
        assert_error(body, "bad_request", "ISO 8601")
        assert_error(await get_json(client, f"{base}/refund_rate/breakdown", 404), "not_found", "no `breakdown:`")
        assert_error(await get_json(client, f"{base}/nope/breakdown", 404), "not_found", "no metric 'nope'")

    call(seeded, check)


def test_groups_errors(seeded: tuple[Store, list[Tree]]) -> None:
    base = "/api/v1/trees/learning_users/metrics"

    async def check(client: TestClient[Any, Any]) -> None:
        for at in ("yesterday", "2024-13-01", "", "-5", "99999999999999999999"):
            body = await get_json(client, f"{base}/activated_organizations/groups", 400, params={"at": at})
            assert_error(body, "bad_request", "ISO 8601")
        body = await get_json(client, f"{base}/weekly_learning_users/groups", 404)
        assert_error(body, "not_found", "'weekly_learning_users'", "not counted per group")
        assert_error(await get_json(client, f"{base}/nope/groups", 404), "not_found", "no metric 'nope'")
        body = await get_json(client, "/api/v1/trees/collaborative_teams/metrics/monthly_collaborative_teams/groups", 404)
        assert_error(body, "not_found", "no snapshot yet", "?at=")

    call(seeded, check)


# --------------------------------------------------------------------------- alerts and errors


def test_alerts_list_active_divergences_with_their_metrics(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        body = await get_json(client, "/api/v1/alerts")
        assert [a["tree"] for a in body["alerts"]] == ["education"]
        alert = body["alerts"][0]
        assert alert["state"] == "firing"
        assert alert["started"] == T + DAY and alert["since"] == T + 2 * DAY
        assert alert["north_star"]["name"] == "weekly_learning_minutes"
        assert alert["north_star"]["change"] > 0
        assert [g["name"] for g in alert["guardrails"]] == ["lesson_abandon_rate"]
        assert alert["guardrails"][0]["status"] == "degraded"

    call(seeded, check)


def test_alerts_include_pending_divergences(redis_client: redis.Redis) -> None:
    store = Store(redis_client, namespace=NAMESPACE)
    tree = education()
    BatchApplier(store, [tree]).apply("0", list(enumerate(events())), T + 3 * DAY)
    for at in (T, T + DAY):
        TreeEvaluator(store, tree).evaluate(at)

    async def check(client: TestClient[Any, Any]) -> None:
        body = await get_json(client, "/api/v1/alerts")
        assert [(a["tree"], a["state"]) for a in body["alerts"]] == [("education", "pending")]

    call((store, [tree]), check)


def test_redis_outage_is_a_503_json_error(redis_client: redis.Redis) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        for path in ("/api/v1/trees", "/api/v1/alerts", "/api/v1/trees/education/snapshot",
                     "/api/v1/trees/education/metrics/refund_rate"):
            assert_error(await get_json(client, path, 503), "unavailable", "Redis")
        # the structure comes from the definitions: still served
        await get_json(client, "/api/v1/trees/education")

    call((dead_store(redis_client), trees()), check)


def test_framework_errors_are_json_too(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post("/api/v1/trees", headers=AUTH, data=b"{}")
        assert response.status == 405
        assert response.headers["Allow"] == "GET,HEAD"
        assert_error(await response.json(), "method_not_allowed")
        assert_error(await get_json(client, "/nowhere", 404, headers={}), "not_found")
        assert client.app is not None
        assert client.app._client_max_size == 64 * 1024

    call(seeded, check)


# --------------------------------------------------------------------------- server-sent events


async def next_event(content: aiohttp.StreamReader, timeout: float = 10.0) -> tuple[str, Any]:
    """The next `event:` block of a stream as (event, parsed data); comments
    come back as ("comment", text)."""
    fields: dict[str, str] = {}
    while True:
        line = (await asyncio.wait_for(content.readline(), timeout)).decode()
        if not line:
            raise EOFError("stream ended")
        line = line.rstrip("\n")
        if line.startswith(":"):
            return "comment", line[1:].strip()
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
        elif "event" in fields:
            return fields["event"], orjson.loads(fields["data"])
        else:
            fields.clear()  # e.g. the `retry:` block


def test_stream_sends_current_then_each_new_snapshot(seeded: tuple[Store, list[Tree]]) -> None:
    store, tree_list = seeded

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/api/v1/stream", headers=AUTH)
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        first = [await next_event(response.content) for _ in range(2)]
        assert sorted((e, s["tree"]) for e, s in first) == [("snapshot", "education"), ("snapshot", "learning_users")]
        before = {s["tree"]: s["evaluated_at"] for _, s in first}

        result = await asyncio.to_thread(TreeEvaluator(store, tree_list[0]).evaluate, T + 3 * DAY)
        assert result is not None
        event, snapshot = await next_event(response.content)
        assert event == "snapshot"
        assert snapshot == result[0]
        assert snapshot["evaluated_at"] != before["education"]
        response.close()

    call(seeded, check, poll_interval=0.05)


def test_stream_follows_only_the_trees_asked_for(seeded: tuple[Store, list[Tree]]) -> None:
    store, tree_list = seeded

    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/api/v1/stream?tree=learning_users", headers=AUTH)
        event, snapshot = await next_event(response.content)
        assert (event, snapshot["tree"]) == ("snapshot", "learning_users")
        await asyncio.to_thread(TreeEvaluator(store, tree_list[0]).evaluate, T + 3 * DAY)
        await asyncio.to_thread(TreeEvaluator(store, tree_list[1]).evaluate, T + DAY)
        event, snapshot = await next_event(response.content)
        assert (snapshot["tree"], snapshot["at"]) == ("learning_users", T + DAY)
        response.close()
        body = await get_json(client, "/api/v1/stream?tree=learning_users&tree=nope", 404)
        assert_error(body, "not_found", "unknown tree 'nope'")

    call(seeded, check, poll_interval=0.05)


def test_stream_heartbeats(seeded: tuple[Store, list[Tree]]) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/api/v1/stream?tree=netflix_queue", headers=AUTH)  # no snapshot
        started = time.monotonic()
        assert await next_event(response.content) == ("comment", "heartbeat")
        assert await next_event(response.content) == ("comment", "heartbeat")
        assert 0.3 < time.monotonic() - started < 5
        response.close()

    call(seeded, check, heartbeat_interval=0.2)


@contextlib.asynccontextmanager
async def production_server(app: web.Application) -> AsyncIterator[tuple[web.AppRunner, str]]:
    """The app served as ``web.run_app`` does (no handler cancellation on
    disconnect), on a free port."""
    runner = web.AppRunner(app, shutdown_timeout=30)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield runner, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def test_stream_ends_when_the_client_disconnects(seeded: tuple[Store, list[Tree]]) -> None:
    async def main() -> None:
        app = create_app(*seeded, token=TOKEN, poll_interval=0.05)
        hub = app[CONTEXT].hub
        async with production_server(app) as (_, url), aiohttp.ClientSession() as session:
            for _ in range(3):
                response = await session.get(f"{url}/api/v1/stream", headers=AUTH)
                await next_event(response.content)
                assert hub.subscribers == 1
                response.close()
                deadline = time.monotonic() + 5
                while hub.subscribers and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert hub.subscribers == 0

    asyncio.run(main())


def test_stream_ends_at_once_on_shutdown(seeded: tuple[Store, list[Tree]]) -> None:
    async def main() -> None:
        app = create_app(*seeded, token=TOKEN, poll_interval=0.05)
        async with aiohttp.ClientSession() as session:
            server = production_server(app)
            runner, url = await server.__aenter__()
            response = await session.get(f"{url}/api/v1/stream", headers=AUTH)
            await next_event(response.content)
            started = time.monotonic()
            await server.__aexit__(None, None, None)
            assert time.monotonic() - started < 5  # not the 30 s shutdown timeout
            with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
                while True:
                    await next_event(response.content)
            assert runner.server is None

    asyncio.run(main())


def test_reads_span_redis_cluster_slots(seeded: tuple[Store, list[Tree]], redis_cluster: Any) -> None:
    """Each tree's keys hash to its own slot ({<tree>}): the pipelined reads of
    several trees (list, alerts, stream) work on a Redis Cluster too."""
    store, tree_list = seeded
    cluster = RedisCluster.from_url(redis_cluster.url)
    cluster_store = Store(cluster, namespace=f"api{uuid.uuid4().hex[:8]}")  # the cluster is not flushed
    for name in ("education", "learning_users"):
        for suffix in ("snapshot", "history"):
            source, target = store.keys.tree(name, suffix), cluster_store.keys.tree(name, suffix)
            cluster.restore(target, 0, store.client.dump(source), replace=True)
    slots = {cluster.keyslot(cluster_store.keys.tree(n, "snapshot")) for n in ("education", "learning_users")}  # type: ignore[no-untyped-call]
    assert len(slots) == 2

    async def check(client: TestClient[Any, Any]) -> None:
        body = await get_json(client, "/api/v1/trees")
        assert [t["at"] for t in body["trees"]][:3] == [None, T + 2 * DAY, T]
        assert [a["tree"] for a in (await get_json(client, "/api/v1/alerts"))["alerts"]] == ["education"]
        history = await get_json(client, "/api/v1/trees/education/metrics/paid_conversions")
        assert [p["at"] for p in history["history"]] == [T, T + DAY, T + 2 * DAY]
        response = await client.get("/api/v1/stream", headers=AUTH)
        assert sorted([(await next_event(response.content))[1]["tree"] for _ in range(2)]) == [
            "education", "learning_users"]
        response.close()

    try:
        call((cluster_store, tree_list), check, poll_interval=0.05)
    finally:
        cluster.close()


# --------------------------------------------------------------------------- northstar api


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@pytest.fixture
def free_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


def test_northstar_api_serves_with_the_token_from_the_environment(
    seeded: tuple[Store, list[Tree]], redis_server: Any, free_port: int, tmp_path: Path
) -> None:
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    for name in ("education", "learning_users"):
        (definitions / f"{name}.yaml").write_text((ROOT / "definitions" / f"{name}.yaml").read_text())
    env = {**os.environ, "NORTHSTAR_API_TOKEN": TOKEN, "NORTHSTAR_REDIS_URL": redis_server.url,
           "NORTHSTAR_NAMESPACE": NAMESPACE}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "api", "-d", str(definitions), "--port", str(free_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{free_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, body = _get(f"{url}/healthz")
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "northstar api did not start"
                time.sleep(0.1)
        assert (status, body) == (200, {"status": "ok", "redis": True})
        assert _get(f"{url}/api/v1/trees")[0] == 401
        status, body = _get(f"{url}/api/v1/trees", AUTH)
        assert status == 200
        assert [t["tree"] for t in body["trees"]] == ["education", "learning_users"]
        assert body["trees"][0]["at"] == T + 2 * DAY  # same namespace as the seeded store
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert TOKEN.encode() not in out + err
    assert b"auth: bearer token" in err


def test_northstar_api_rejects_an_empty_token(redis_server: Any) -> None:
    from streamer.cli import main

    env = {"NORTHSTAR_API_TOKEN": "", "NORTHSTAR_REDIS_URL": redis_server.url}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert main(["api", "-d", str(ROOT / "definitions")]) == 2


def test_northstar_api_rejects_a_negative_metrics_cache(redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from streamer.cli import main

    env = {"NORTHSTAR_API_METRICS_CACHE_S": "-1", "NORTHSTAR_REDIS_URL": redis_server.url}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert main(["api", "-d", str(ROOT / "definitions")]) == 2
    assert "api_metrics_cache_s" in capsys.readouterr().err
