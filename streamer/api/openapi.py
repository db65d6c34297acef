"""The OpenAPI 3.1 document of the HTTP API, as data (served at
``/openapi.json``). tests/api/test_openapi_contract.py validates every
response of every route against it, so it is the contract, not a sketch.

Objects are open (no ``additionalProperties: false``) so that clients keep
working when fields are added; the contract test checks them closed, so
every field the server sends is documented here."""

from __future__ import annotations

import copy
from typing import Any

from streamer import __version__
from streamer.spec.model import MEASURE_KINDS

Schema = dict[str, Any]

STATUSES = ["ok", "degraded", "insufficient_data"]
ROLES = ["north_star", "input", "guardrail", "kpi", "supporting"]
DIRECTIONS = ["higher_is_better", "lower_is_better"]
GAMES = ["attention", "transaction", "productivity"]
DIMENSIONS = ["breadth", "depth", "frequency", "efficiency"]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    """An object; every property required unless ``required`` says otherwise."""
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, **extra}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
MS: Schema = {"type": "integer", "description": "milliseconds since the Unix epoch (UTC)"}
NULL_NUMBER = nullable(NUMBER)
NULL_STRING = nullable(STRING)


def _metric_definition(**extra: Schema) -> Schema:
    return obj({
        "name": STRING, "title": STRING, "description": STRING, "unit": STRING,
        "window": {"type": "string", "description": "the window, shortest spelling: 1w, 30d, 12h"},
        "window_seconds": INTEGER,
        "direction": {"enum": DIRECTIONS},
        "measure": {"enum": list(MEASURE_KINDS), "description": "kind of the metric's measure"},
        **extra,
    })


METRIC_SNAPSHOT = obj(
    {
        "name": STRING, "title": STRING, "role": {"enum": ROLES},
        "dimension": {"enum": [*DIMENSIONS, None], "description": "inputs only; null otherwise"},
        "owner": NULL_STRING, "direction": {"enum": DIRECTIONS}, "unit": STRING,
        "window_seconds": INTEGER,
        "value": NULL_NUMBER, "baseline": NULL_NUMBER,
        "change": {**NULL_NUMBER, "description": "(value - baseline) / |baseline|"},
        "sample": {**NULL_NUMBER, "description": "the number the minimum-sample rule compares"},
        "status": {"enum": [*STATUSES, None], "description": "guardrails only; null otherwise"},
        "degradation": {**NULL_NUMBER, "description": "guardrails: relative move in the bad direction"},
        "p_value": NULL_NUMBER,
        "tolerance": NULL_NUMBER,
        "breakdown": {
            **nullable(array(obj({"label": STRING, "value": NULL_NUMBER}))),
            "description": "broken-down metrics: the value per label (admitted values, then `other`); "
                           "null otherwise",
        },
    },
    required=["name", "title", "role", "direction", "unit", "window_seconds", "value", "baseline", "change"],
    description="One metric of a snapshot.",
)

SCHEMAS: dict[str, Schema] = {
    "Error": obj({"error": {"type": "string", "description": "machine-readable code, e.g. not_found"},
                  "detail": {"type": "string", "description": "what went wrong, for humans"}}),
    "Health": obj({"status": {"enum": ["ok", "degraded"]}, "redis": BOOLEAN}),
    "TreeSummary": obj({
        "tree": STRING, "product": STRING, "game": {"enum": GAMES},
        "north_star": {"type": "string", "description": "name of the North Star metric"},
        "at": nullable(MS), "evaluated_at": nullable(MS),
    }, description="A tree and the times of its latest snapshot (null before the first)."),
    "TreeList": obj({"trees": array(ref("TreeSummary"))}),
    "MetricDefinition": _metric_definition(),
    "NorthStarDefinition": _metric_definition(target=NULL_NUMBER, min_improvement=NUMBER),
    "InputDefinition": _metric_definition(dimension={"enum": DIMENSIONS}, owner=NULL_STRING),
    "GuardrailDefinition": _metric_definition(
        owner=NULL_STRING, tolerance=NUMBER,
        **{"for": STRING, "for_seconds": INTEGER},
        baseline=obj({"kind": {"enum": ["previous_window", "trailing_average"]}, "periods": INTEGER}),
        min_sample=INTEGER, confidence=NUMBER,
    ),
    "KpiDefinition": _metric_definition(owner=NULL_STRING),
    "Tree": obj({
        "tree": STRING, "product": STRING, "description": STRING, "game": {"enum": GAMES},
        "resolution_seconds": INTEGER,
        "north_star": ref("NorthStarDefinition"),
        "inputs": array(ref("InputDefinition")),
        "guardrails": array(ref("GuardrailDefinition")),
        "kpi": nullable(ref("KpiDefinition")),
        "supporting": array(ref("MetricDefinition")),
        "alerting": obj({"for_seconds": INTEGER, "stale_after_seconds": INTEGER}),
    }, description="A tree's structure (definitions only, no values), for drawing it."),
    "MetricSnapshot": METRIC_SNAPSHOT,
    "Divergence": obj({
        "state": {"enum": ["inactive", "pending", "firing", "resolved"]},
        "since": nullable(MS), "started": nullable(MS),
        "north_star_improving": BOOLEAN,
        "degraded": {**array(STRING), "description": "names of the degraded guardrails"},
    }, description="The divergence alert: North Star improving while a guardrail degrades."),
    "Snapshot": obj({
        "tree": STRING, "product": STRING,
        "at": {**MS, "description": "evaluation time (ms since the epoch)"},
        "clock": {"enum": ["watermark", "wall"]},
        "evaluated_at": {**MS, "description": "wall-clock time of the evaluation (ms)"},
        "metrics": array(ref("MetricSnapshot")),
        "divergence": ref("Divergence"),
    }, description="Every metric of a tree at one evaluation time."),
    "HistoryPoint": obj({"at": MS, "value": NULL_NUMBER, "baseline": NULL_NUMBER,
                         "change": NULL_NUMBER, "status": {"enum": [*STATUSES, None]}}),
    "MetricHistory": obj({
        "tree": STRING, "metric": STRING,
        "current": {**nullable(ref("MetricSnapshot")),
                    "description": "the metric in the latest snapshot; null before the first"},
        "at": nullable(MS),
        "history": {**array(ref("HistoryPoint")), "description": "oldest first, newest last"},
    }),
    "BreakdownValues": obj({
        "tree": STRING, "metric": STRING, "at": MS,
        "property": {"type": "string", "description": "the field the metric is broken down by, e.g. prop.platform"},
        "max_values": {"type": "integer", "description": "values admitted before the rest is `other`"},
        "labels": array(obj({
            "label": {"type": "string", "description": "an admitted value, `(none)` (field missing), or `other`"},
            "value": NULL_NUMBER,
        }, required=["label", "value"])),
    }, description="A broken-down metric's value per label: admitted values in admission order, then `other`."),
    "GroupValues": obj({
        "tree": STRING, "metric": STRING, "at": MS,
        "group_by": {"type": "string", "description": "the field groups come from, e.g. group.org"},
        "min_members": {"type": "integer", "description": "members a group needs to count"},
        "groups": array(obj({
            "group": STRING,
            "members": {"type": "integer", "description": "qualifying members (users, owners) of the group"},
            "qualifies": {"type": "boolean", "description": "members >= min_members"},
        })),
    }),
    "Alert": obj({
        "tree": STRING, "product": STRING, "state": {"enum": ["pending", "firing"]},
        "since": nullable(MS), "started": nullable(MS), "at": MS, "evaluated_at": MS,
        "north_star": nullable(ref("MetricSnapshot")),
        "guardrails": {**array(ref("MetricSnapshot")), "description": "the degraded guardrails"},
    }),
    "AlertList": obj({"alerts": array(ref("Alert"))}),
}


def _json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json_content(ref("Error"))}
    if headers:
        response["headers"] = headers
    return response


RESPONSES = {
    "BadRequest": _error("A query parameter is invalid."),
    "Unauthorized": _error(
        "A token is configured and the request has no valid `Authorization: Bearer` header.",
        {"WWW-Authenticate": {"schema": STRING, "description": "Bearer challenge (RFC 6750)"}},
    ),
    "NotFound": _error("Unknown tree or metric, or nothing stored yet (see detail)."),
    "Unavailable": _error("Redis cannot be read (or the server is shutting down); retry later."),
}

PARAMETERS = {
    "tree": {"name": "tree", "in": "path", "required": True, "schema": STRING,
             "description": "tree name, e.g. education"},
    "metric": {"name": "metric", "in": "path", "required": True, "schema": STRING,
               "description": "metric name, e.g. weekly_learning_minutes"},
}


def _ok(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema)}


def _resp(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _api(summary: str, op_id: str, ok: dict[str, Any], *, params: list[Any] | None = None,
         errors: tuple[str, ...] = ("Unavailable",), description: str = "") -> dict[str, Any]:
    """A protected operation: 401 besides its own ``errors``."""
    codes = {"BadRequest": "400", "NotFound": "404", "Unavailable": "503"}
    responses = {"200": ok, "401": _resp("Unauthorized"), **{codes[e]: _resp(e) for e in errors}}
    op = {"summary": summary, "operationId": op_id, "tags": ["api"], "security": [{"bearer": []}],
          "parameters": params or [], "responses": dict(sorted(responses.items()))}
    if description:
        op["description"] = description
    return {"get": op}


PATHS: dict[str, Any] = {
    "/healthz": {"get": {
        "summary": "Liveness and Redis reachability", "operationId": "healthz", "tags": ["ops"],
        "security": [],
        "responses": {"200": _ok("Redis answers.", ref("Health")),
                      "503": _ok("Redis does not answer.", ref("Health"))},
    }},
    "/metrics": {"get": {
        "summary": "Prometheus exposition of every tree's latest snapshot", "operationId": "metrics",
        "tags": ["ops"], "security": [],
        "description": "Prometheus text format, or OpenMetrics when the Accept header asks for it.",
        "responses": {"200": {"description": "The exposition.", "content": {
            "text/plain": {"schema": STRING},
            "application/openmetrics-text": {"schema": STRING},
        }}},
    }},
    "/openapi.json": {"get": {
        "summary": "This document", "operationId": "openapi", "tags": ["ops"], "security": [],
        "responses": {"200": _ok("The OpenAPI 3.1 document.", {"type": "object"})},
    }},
    "/api/v1/trees": _api("List the trees", "listTrees", _ok("The trees.", ref("TreeList"))),
    "/api/v1/trees/{tree}": _api(
        "A tree's structure", "getTree", _ok("The tree.", ref("Tree")),
        params=[_param("tree")], errors=("NotFound",),
        description="Definitions only: answered without reading Redis."),
    "/api/v1/trees/{tree}/snapshot": _api(
        "A tree's latest snapshot", "getSnapshot", _ok("The snapshot.", ref("Snapshot")),
        params=[_param("tree")], errors=("NotFound", "Unavailable"),
        description="404 also when the tree has no snapshot yet."),
    "/api/v1/trees/{tree}/metrics/{metric}": _api(
        "A metric's current entry and history", "getMetric",
        _ok("The metric.", ref("MetricHistory")),
        params=[_param("tree"), _param("metric"),
                {"name": "limit", "in": "query", "required": False,
                 "description": "number of most recent history points",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 720, "default": 200}}],
        errors=("BadRequest", "NotFound", "Unavailable")),
    "/api/v1/trees/{tree}/metrics/{metric}/groups": _api(
        "Per-group values of a grouped metric", "getGroups", _ok("Every group with members.", ref("GroupValues")),
        params=[_param("tree"), _param("metric"),
                {"name": "at", "in": "query", "required": False,
                 "description": "evaluation time: ISO 8601 (no offset means UTC; encode `+` as %2B) "
                                "or epoch milliseconds; default the latest snapshot's `at`",
                 "schema": STRING}],
        errors=("BadRequest", "NotFound", "Unavailable"),
        description="For metrics that count groups (e.g. organizations with 5+ weekly learning "
                    "users): each group's qualifying members. 404 for other metrics."),
    "/api/v1/trees/{tree}/metrics/{metric}/breakdown": _api(
        "Per-label values of a broken-down metric", "getBreakdown",
        _ok("Every label: the admitted values, then `other`.", ref("BreakdownValues")),
        params=[_param("tree"), _param("metric"),
                {"name": "at", "in": "query", "required": False,
                 "description": "evaluation time: ISO 8601 (no offset means UTC; encode `+` as %2B) "
                                "or epoch milliseconds; default the latest snapshot's `at`",
                 "schema": STRING}],
        errors=("BadRequest", "NotFound", "Unavailable"),
        description="For metrics with a `breakdown:` (count, sum, distinct): the value per label, "
                    "at most max_values + 1 labels. 404 for other metrics."),
    "/api/v1/alerts": _api(
        "Active divergence alerts", "listAlerts",
        _ok("Alerts pending or firing, across trees.", ref("AlertList"))),
    "/api/v1/stream": _api(
        "Server-sent events of snapshots", "stream",
        {"description": "An event stream: first the current snapshot of every followed tree, then "
                        "`event: snapshot` with the snapshot JSON each time one changes; a comment "
                        "line every 15 s.",
         "content": {"text/event-stream": {"schema": STRING}},
         "x-events": {"snapshot": ref("Snapshot")}},
        params=[{"name": "tree", "in": "query", "required": False, "style": "form", "explode": True,
                 "description": "follow only these trees (repeatable); default all",
                 "schema": array(STRING)}],
        errors=("NotFound", "Unavailable"),
        description="A Redis outage does not end the stream: events resume when Redis is back. "
                    "503 when the server is shutting down."),
    "/tree/{tree}": {"get": {
        "summary": "The live tree page (HTML)", "operationId": "treePage", "tags": ["pages"],
        "security": [], "parameters": [_param("tree")],
        "description": "A self-contained page drawing the tree with live values (docs/tree-page.md). "
                       "It holds no values itself: it reads /api/* in the browser, asking for the "
                       "token when the server has one.",
        "responses": {"200": {"description": "The page.", "content": {"text/html": {"schema": STRING}}},
                      "404": _resp("NotFound")},
    }},
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy)."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {
            "title": "northstar API",
            "version": __version__,
            "description": "Live values of North Star metric trees: structure, snapshots, "
                           "history, per-group values, divergence alerts and a snapshot stream. "
                           "Times are milliseconds since the Unix epoch (UTC).",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": "api", "description": "values (Bearer token when configured)"},
                 {"name": "ops", "description": "health, Prometheus, this document (public)"},
                 {"name": "pages", "description": "HTML pages for people (public; their data come from /api/*)"}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "parameters": PARAMETERS,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "Required on /api/* when the server has a token (NORTHSTAR_API_TOKEN)."}},
        },
    })
