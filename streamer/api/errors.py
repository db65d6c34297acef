"""API errors: one exception carrying the HTTP status, and the middleware that
turns it (and aiohttp's own HTTP errors, and Redis failures) into the JSON
error body ``{"error": code, "detail": message}`` every route documents."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis
from aiohttp import web
from aiohttp.typedefs import Handler

logger = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered to the client: ``status``, a short machine-readable
    ``error`` code, a human ``detail`` and optional response headers."""

    def __init__(self, status: int, error: str, detail: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


def not_found(detail: str) -> ApiError:
    return ApiError(404, "not_found", detail)


def bad_request(detail: str) -> ApiError:
    return ApiError(400, "bad_request", detail)


def error_response(status: int, error: str, detail: str,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: every error leaves as a JSON error body."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects are answers, not errors
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        code = _CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason, headers)
    except redis.exceptions.RedisError as exc:
        # the read side stays up while Redis is away; clients retry
        logger.warning("Redis unavailable for %s %s: %s", request.method, request.path, exc)
        return error_response(503, "unavailable", "cannot read from Redis; retry later")
    except Exception:
        logger.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "unexpected server error")
