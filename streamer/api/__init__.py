"""The HTTP read side: JSON API, server-sent events, Prometheus ``/metrics``
and the OpenAPI document (docs/api.md). ``northstar api`` serves it."""

from streamer.api.app import ApiConfigError, create_app

__all__ = ["ApiConfigError", "create_app"]
