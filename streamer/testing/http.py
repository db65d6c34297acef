"""Tiny stdlib HTTP helpers for probing and driving local services (no extra dependency)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def http_status(url: str, timeout: float = 2.0) -> int:
    """HTTP status of a GET on ``url`` (error statuses are returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True if a GET on ``url`` answers 200; connection errors propagate (pollers count them)."""
    return http_status(url, timeout) == 200


def get_json(url: str, params: dict[str, str] | None = None, timeout: float = 5.0) -> Any:
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def post_json(url: str, body: Any, timeout: float = 5.0) -> Any:
    """POST ``body`` as JSON; return the decoded JSON answer, or None for an empty one."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw.strip() else None
