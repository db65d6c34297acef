"""Bearer-token authentication of ``/api/*`` (RFC 6750).

Only the header is accepted, never a query parameter: URLs end up in access
logs and browser histories. The comparison is constant-time
(``hmac.compare_digest``) and the token is never logged."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from streamer.api.errors import ApiError

PROTECTED_PREFIX = "/api/"


def _unauthorized(detail: str, invalid: bool) -> ApiError:
    challenge = 'Bearer realm="northstar"'
    if invalid:
        challenge += ', error="invalid_token"'
    return ApiError(401, "unauthorized", detail, {"WWW-Authenticate": challenge})


def bearer_middleware(token: str) -> Middleware:
    """Middleware requiring ``Authorization: Bearer <token>`` on every path under
    ``/api/`` (known route or not, so that routes are not discoverable)."""
    expected = token.encode("utf-8")

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PROTECTED_PREFIX):
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if not header:
                raise _unauthorized("send the header `Authorization: Bearer <token>`", invalid=False)
            if scheme.lower() != "bearer" or not given.strip():
                raise _unauthorized("use the Bearer scheme: `Authorization: Bearer <token>`", invalid=True)
            if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected):
                raise _unauthorized("the token is not valid", invalid=True)
        return await handler(request)

    return require_token
