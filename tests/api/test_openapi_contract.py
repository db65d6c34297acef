"""The OpenAPI document is the contract: it is valid OpenAPI 3.1, it lists
exactly the routes the app serves, its snapshot schemas have exactly the
fields of the evaluator's TypedDicts, and every response of every route --
each documented status, errors included -- validates against it.

Responses are validated with every object closed (``additionalProperties:
false``): a field the server sends but the document does not describe fails
here, although the published document leaves objects open for clients."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any, get_type_hints

import orjson
import pytest
import redis
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from streamer.api import create_app
from streamer.api.openapi import document
from streamer.api.routes import CONTEXT
from streamer.evaluate.snapshot import DivergenceSnapshot, MetricSnapshot, Snapshot
from streamer.spec.model import Tree
from streamer.state.store import Store
from tests.api.test_api import AUTH, TOKEN, dead_store, next_event, seed

DOC = document()
SCHEMAS = DOC["components"]["schemas"]


def strict(schema: Any) -> Any:
    """``schema`` with every object that lists properties closed."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


STRICT_COMPONENTS = strict(DOC["components"])


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = DOC["components"][section][name]
    return node


def validate(instance: Any, schema: dict[str, Any], where: str) -> None:
    validator = OAS31Validator({**strict(schema), "components": STRICT_COMPONENTS})
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, f"{where}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:5]
    )


TEMPLATES = [(re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$"), path) for path in DOC["paths"]]


def template_of(path: str) -> str:
    matches = [template for pattern, template in TEMPLATES if pattern.match(path)]
    assert len(matches) == 1, f"{path} matches {matches} in the document"
    return str(matches[0])


class Contract:
    """Checks responses against the document and records which documented
    (path, status) pairs were exercised."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    async def check(self, response: ClientResponse, sse_events: int = 0) -> None:
        path = template_of(response.url.path)
        operation = DOC["paths"][path]["get"]
        where = f"GET {response.url.path_qs} -> {response.status}"
        documented_query = {p["name"] for p in map(resolve, operation.get("parameters", [])) if p["in"] == "query"}
        assert set(response.url.query) <= documented_query, f"{where}: undocumented query parameter"
        status = str(response.status)
        assert status in operation["responses"], f"{where}: status not documented"
        documented = resolve(operation["responses"][status])
        assert response.content_type in documented["content"], f"{where}: {response.content_type} not documented"
        for header in documented.get("headers", {}):
            assert header in response.headers, f"{where}: documented header {header} missing"
        if response.content_type == "application/json":
            body = orjson.loads(await response.read())
            validate(body, documented["content"]["application/json"]["schema"], where)
        elif response.content_type == "text/event-stream":
            schemas = documented["x-events"]
            for _ in range(sse_events):
                event, data = await next_event(response.content)
                assert event in schemas, f"{where}: undocumented event {event}"
                validate(data, schemas[event], f"{where} event {event}")
            response.close()
        else:
            assert (await response.text()).strip(), f"{where}: empty body"
        self.seen.add((path, status))


def every_documented_response() -> Iterator[tuple[str, str]]:
    for path, item in DOC["paths"].items():
        for status in item["get"]["responses"]:
            yield path, status


# --------------------------------------------------------------------------- the document itself


def test_the_document_is_valid_openapi_3_1() -> None:
    validate_spec(DOC)
    assert DOC["openapi"] == "3.1.0"
    for name in ("Snapshot", "MetricSnapshot", "Divergence", "Tree", "Error"):
        assert name in SCHEMAS


def test_the_document_lists_exactly_the_served_routes(redis_client: redis.Redis) -> None:
    app = create_app(Store(redis_client), [])
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(method.upper(), path) for path, item in DOC["paths"].items() for method in item}
    assert served == documented
    for path, item in DOC["paths"].items():
        op = item["get"]
        assert op["operationId"] and op["summary"]
        public = not path.startswith("/api/")
        assert op["security"] == ([] if public else [{"bearer": []}]), path
        assert public or "401" in op["responses"], path
        declared = {p["name"] for p in map(resolve, op.get("parameters", [])) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", path)), path


@pytest.mark.parametrize(
    ("schema", "typed"),
    [("Snapshot", Snapshot), ("MetricSnapshot", MetricSnapshot), ("Divergence", DivergenceSnapshot)],
)
def test_snapshot_schemas_have_exactly_the_typeddict_fields(schema: str, typed: type) -> None:
    """The evaluator's TypedDicts (streamer/evaluate/snapshot.py) and the
    document describe the same fields; required ones stay required."""
    properties = SCHEMAS[schema]["properties"]
    assert set(properties) == set(get_type_hints(typed))
    assert set(typed.__required_keys__) <= set(SCHEMAS[schema]["required"])  # type: ignore[attr-defined]


def test_the_served_document_is_the_document(redis_client: redis.Redis) -> None:
    async def main() -> None:
        async with TestClient(TestServer(create_app(Store(redis_client), []))) as client:
            response = await client.get("/openapi.json")
            assert orjson.loads(await response.read()) == DOC

    asyncio.run(main())


# --------------------------------------------------------------------------- every response


def _requests(trees: list[Tree]) -> list[tuple[str, dict[str, str]]]:
    """(path and query, headers) for the seeded app; together they produce
    every documented status except 503."""
    none: dict[str, str] = {}
    requests: list[tuple[str, dict[str, str]]] = [
        ("/healthz", none), ("/metrics", none),
        ("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}), ("/openapi.json", none),
        ("/api/v1/trees", AUTH), ("/api/v1/alerts", AUTH),
    ]
    for tree in trees:
        base = f"/api/v1/trees/{tree.tree}"
        requests += [(base, AUTH), (f"{base}/snapshot", AUTH)]
        requests += [(f"{base}/metrics/{metric.name}", AUTH) for _, metric in tree.metrics()]
    requests += [
        ("/api/v1/trees/education/metrics/refund_rate?limit=1", AUTH),
        ("/api/v1/trees/education/metrics/refund_rate?limit=0", AUTH),
        ("/api/v1/trees/education/metrics/nope", AUTH),
        ("/api/v1/trees/nope", AUTH), ("/api/v1/trees/nope/snapshot", AUTH),
        ("/api/v1/trees/learning_users/metrics/activated_organizations/groups", AUTH),
        ("/api/v1/trees/learning_users/metrics/activated_organizations/groups?at=2024-10-04T00:00:00Z", AUTH),
        ("/api/v1/trees/learning_users/metrics/activated_organizations/groups?at=soon", AUTH),
        ("/api/v1/trees/learning_users/metrics/weekly_learning_users/groups", AUTH),
        ("/api/v1/trees/education/metrics/weekly_learning_minutes/breakdown", AUTH),
        ("/api/v1/trees/education/metrics/paid_conversions/breakdown?at=2024-10-04T00:00:00Z", AUTH),
        ("/api/v1/trees/education/metrics/paid_conversions/breakdown?at=soon", AUTH),
        ("/api/v1/trees/education/metrics/refund_rate/breakdown", AUTH),
        ("/api/v1/stream?tree=nope", AUTH),
        ("/tree/education", none), ("/tree/nope", none),
    ]
    # every protected route without, and with a wrong, token
    for path in DOC["paths"]:
        if path.startswith("/api/"):
            concrete = path.replace("{tree}", "education").replace("{metric}", "refund_rate")
            requests += [(concrete, none), (concrete, {"Authorization": "Bearer nope"})]
    return requests


def test_every_response_of_every_route_matches_the_document(redis_client: redis.Redis) -> None:
    contract = Contract()
    store, trees = seed(redis_client)

    async def main() -> None:
        async with TestClient(TestServer(create_app(store, trees, token=TOKEN, poll_interval=0.05))) as client:
            for path, headers in _requests(trees):
                await contract.check(await client.get(path, headers=headers))
            for query, events in (("", 2), ("?tree=education", 1), ("?tree=learning_users&tree=education", 2)):
                await contract.check(await client.get(f"/api/v1/stream{query}", headers=AUTH), sse_events=events)
            assert client.app is not None
            client.app[CONTEXT].hub.close()  # as on shutdown
            await contract.check(await client.get("/api/v1/stream", headers=AUTH))

        # Redis unreachable
        down = create_app(dead_store(redis_client), trees, token=TOKEN)
        async with TestClient(TestServer(down)) as client:
            for path in ("/healthz", "/metrics", "/api/v1/trees", "/api/v1/alerts", "/api/v1/trees/education",
                         "/api/v1/trees/education/snapshot", "/api/v1/trees/education/metrics/refund_rate",
                         "/api/v1/trees/learning_users/metrics/activated_organizations/groups?at=1728000000000",
                         "/api/v1/trees/learning_users/metrics/activated_organizations/groups",
                         "/api/v1/trees/education/metrics/weekly_learning_minutes/breakdown?at=1728000000000"):
                await contract.check(await client.get(path, headers=AUTH))

    asyncio.run(main())
    missing = sorted(set(every_documented_response()) - contract.seen)
    assert not missing, f"documented but never produced: {missing}"
