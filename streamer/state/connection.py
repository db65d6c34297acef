"""How every northstar command reaches Redis: one URL, read by redis-py.

``redis://[user:password@]host:port/db`` or, for TLS, ``rediss://...`` with
the certificate files as URL query parameters redis-py understands:
``ssl_ca_certs`` (CA bundle that signed the server certificate),
``ssl_certfile`` and ``ssl_keyfile`` (client certificate, when the server
requires one), ``ssl_cert_reqs`` and ``ssl_check_hostname``. The worker, the
API, replay, the demo and the benchmarks all go through :func:`redis_from_url`,
so a URL that works for one works for all, standalone or Redis Cluster.

The URL carries the password: print it only through :func:`redact_url`, and
report failures through :func:`explain`, which never contains the password.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

logger = logging.getLogger(__name__)

SCHEMES = ("redis", "rediss")
TLS_FILE_PARAMETERS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path")
SECRET_PARAMETERS = ("password", "ssl_password")
MASK = "***"
_PREFIX = "cannot use Redis at "


class RedisConfigError(ValueError):
    """The URL or the server refuses us for a reason retrying cannot fix
    (bad URL, missing certificate file, wrong credentials, untrusted certificate).
    The message is safe to print: it holds no password."""


def redact_url(url: str) -> str:
    """``url`` with the password and secret query parameters replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user = parts.username or ""
            host = netloc.rpartition("@")[2]
            netloc = f"{user}:{MASK}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, MASK if k in SECRET_PARAMETERS else v) for k, v in pairs], safe="/*")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "<unparseable Redis URL>"


def _secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        found = [parts.password or "", unquote(parts.password or "")]
        found += [v for k, v in parse_qsl(parts.query) if k in SECRET_PARAMETERS]
    except ValueError:
        return []
    return [s for s in found if s]


def scrub(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` replaced by ``***``."""
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def check_url(url: str) -> None:
    """Raise :class:`RedisConfigError` for a URL redis-py would reject or that
    names certificate files that do not exist (checked up front, with the
    parameter named, instead of an OpenSSL error at the first connection)."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise RedisConfigError(f"invalid Redis URL {redact_url(url)}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise RedisConfigError(
            f"invalid Redis URL {redact_url(url)}: the scheme must be redis:// or rediss:// (TLS)"
        )
    query = dict(parse_qsl(parts.query))
    for name in TLS_FILE_PARAMETERS:
        if name not in query:
            continue
        if parts.scheme != "rediss":
            raise RedisConfigError(f"{name} is set but the URL is not rediss://: {redact_url(url)}")
        if not Path(query[name]).exists():
            raise RedisConfigError(f"{name}={query[name]} in the Redis URL: no such file")


def _is_tls_verification(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_config_error(exc: BaseException) -> bool:
    """True for failures retrying cannot fix: credentials, certificates, URL."""
    import redis

    return isinstance(exc, (RedisConfigError, redis.exceptions.AuthenticationError,
                            redis.exceptions.AuthorizationError, redis.exceptions.NoPermissionError)) or (
        isinstance(exc, redis.exceptions.RedisError) and _is_tls_verification(exc)
    ) or "NOAUTH" in str(exc) or "WRONGPASS" in str(exc)


def explain(exc: BaseException, url: str) -> str:
    """A one-line reason for a Redis failure, with a hint, without secrets."""
    import redis

    reason = scrub(str(exc), url)
    scheme = urlsplit(url).scheme if url else ""
    if isinstance(exc, RedisConfigError) or reason.startswith(_PREFIX):
        return reason  # explained already
    if isinstance(exc, redis.exceptions.AuthenticationError) or "WRONGPASS" in reason:
        hint = "wrong user name or password (the credentials in the URL)"
    elif isinstance(exc, redis.exceptions.NoPermissionError):
        hint = "the ACL user lacks a permission northstar needs (docs/operating.md, Security)"
    elif "NOAUTH" in reason:
        hint = "the server requires a password: put it in the URL (redis://user:password@host:port)"
    elif _is_tls_verification(exc):
        hint = "the server's TLS certificate is not trusted: name its CA with ?ssl_ca_certs=/path/ca.crt"
    elif scheme == "redis" and isinstance(exc, redis.exceptions.ConnectionError) and (
        "reset by peer" in reason or "Connection closed" in reason or "reading from" in reason
    ):
        hint = "the server closed a plain connection: if it only speaks TLS, use rediss://"
    elif scheme == "rediss" and "WRONG_VERSION_NUMBER" in reason:
        hint = "TLS handshake failed: the server does not speak TLS on this port, use redis://"
    else:
        hint = ""
    return f"{_PREFIX}{redact_url(url)}: {reason}" + (f" ({hint})" if hint else "")


def redis_from_url(url: str, *, unreachable_ok: bool = False, **kwargs: Any) -> Any:
    """A redis-py client for ``url``: a Redis Cluster client when the server
    says it is in cluster mode, else a standalone one. ``kwargs`` go to both
    (e.g. socket timeouts).

    Probes the server once (``INFO cluster``, which also authenticates and does
    the TLS handshake). Wrong credentials, an untrusted certificate or a bad URL
    raise :class:`RedisConfigError` (message without secrets). An unreachable
    server raises ``redis.ConnectionError``, unless ``unreachable_ok``: then a
    standalone client is returned for the caller to retry with.
    """
    import redis
    import redis.cluster

    check_url(url)
    try:
        client: Any = redis.Redis.from_url(url, **kwargs)
    except (TypeError, ValueError) as exc:
        raise RedisConfigError(f"invalid Redis URL {redact_url(url)}: {scrub(str(exc), url)}") from None
    try:
        info = client.info("cluster")
    except redis.exceptions.RedisError as exc:
        if is_config_error(exc):
            client.close()
            raise RedisConfigError(explain(exc, url)) from None
        if not unreachable_ok:
            client.close()
            raise redis.exceptions.ConnectionError(explain(exc, url)) from None
        logger.warning("Redis not reachable yet at %s; will retry per batch", redact_url(url))
        return client
    if info.get("cluster_enabled"):
        client.close()
        return redis.cluster.RedisCluster.from_url(url, **kwargs)
    return client
