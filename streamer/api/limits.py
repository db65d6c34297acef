"""Request size limit: no route takes a body, so anything above a small
limit is refused with 413 before a handler (or the token check) runs.

aiohttp's own ``client_max_size`` only applies when a handler reads the body,
which none does; this middleware checks the declared ``Content-Length`` and
reads a chunked body only up to the limit. Header lines are bounded by
aiohttp's parser (8190 bytes each, else 400)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from streamer.api.errors import ApiError


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request bodies are limited to {limit} bytes")


def body_limit_middleware(limit: int) -> Middleware:
    """Middleware answering 413 to a request whose body exceeds ``limit`` bytes."""

    @web.middleware
    async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        declared = request.content_length
        if declared is not None and declared > limit:
            raise _too_large(limit)
        if declared is None and request.body_exists:  # chunked: read at most limit + 1
            seen = 0
            while chunk := await request.content.read(64 * 1024):
                seen += len(chunk)
                if seen > limit:
                    raise _too_large(limit)
        return await handler(request)

    return limit_body
