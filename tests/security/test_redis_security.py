"""Redis over TLS with an ACL user, against real redis-servers (TLS-only ports,
``default`` user disabled): replay and the API work end to end through the
one connection path (``streamer.state.connection``), standalone and Redis
Cluster; every misconfiguration fails with a clear message that never holds
the password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from streamer.cli import main
from streamer.state.connection import RedisConfigError, redact_url, redis_from_url
from streamer.testing import RedisCluster, RedisServer, free_port
from streamer.testing.tls import TlsFiles, make_tls_files
from tests.reference import reference_values
from tests.trees import example

pytestmark = pytest.mark.services

ROOT = Path(__file__).parents[2]
DEFINITIONS = ROOT / "definitions"
USER = "northstar"
# URL-special characters on purpose: the URL must carry them percent-encoded
PASSWORD = "pw:s3cr@t/%q#Z9"
TOKEN = "api-token-5b1e7d"
AT = ("2026-10-15", "2026-10-22")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("other-tls"), name="someone-else")


@pytest.fixture(scope="module")
def secure_redis(tls: TlsFiles) -> Iterator[RedisServer]:
    with RedisServer(username=USER, password=PASSWORD, tls=tls) as server:
        yield server


@pytest.fixture
def no_events(tmp_path: Path) -> str:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    return str(path)


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.jsonl"
    assert main(["simulate", "--tree", "education", "--days", "21", "--start", "2026-10-01",
                 "-o", str(path)]) == 0
    return path


def with_query(url: str, **changes: str | None) -> str:
    """``url`` with query parameters set (or removed when None)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def secrets_in(text: str) -> list[str]:
    from urllib.parse import quote

    return [s for s in (PASSWORD, quote(PASSWORD, safe=""), TOKEN) if s in text]


def replay_equals_reference(url: str, events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``northstar replay --redis url`` writes and reads back every metric; they equal the reference."""
    code = main(["replay", str(events), "-d", str(DEFINITIONS), "--tree", "education", "--redis", url,
                 "--at", AT[0], "--at", AT[1], "--now", AT[1], "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert not secrets_in(captured.out + captured.err)
    lines = events.read_bytes().splitlines()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == len(AT)
    tree = example("education")
    for record in records:
        at = int(datetime.fromisoformat(record["at"].replace("Z", "+00:00")).timestamp() * 1000)
        expected = reference_values(lines, tree, at, at)
        assert set(record["metrics"]) == set(expected)
        for name, value in expected.items():
            assert record["metrics"][name] == pytest.approx(value, rel=1e-9), name
        assert record["counts"]["accepted"] == len(lines)


# --------------------------------------------------------------------------- works


def test_url_carries_user_password_and_ca(secure_redis: RedisServer, tls: TlsFiles) -> None:
    url = secure_redis.url
    assert url.startswith(f"rediss://{USER}:") and "ssl_ca_certs=" in url
    assert PASSWORD not in url  # percent-encoded
    assert redact_url(url) == (
        f"rediss://{USER}:***@127.0.0.1:{secure_redis.port}/0?ssl_ca_certs={tls.ca_cert}"
    )
    client = redis_from_url(url)
    assert client.acl_whoami() == USER
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    client.close()


def test_replay_over_tls_and_acl_equals_the_reference(
    secure_redis: RedisServer, events: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay_equals_reference(secure_redis.url, events, capsys)
    client = redis_from_url(secure_redis.url)
    assert client.dbsize() > 0, "replay wrote nothing to the TLS server"
    client.close()


def test_redis_cluster_over_tls_and_acl(tls: TlsFiles, events: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with RedisCluster(username=USER, password=PASSWORD, tls=tls) as cluster:
        client = redis_from_url(cluster.url)
        assert type(client).__name__ == "RedisCluster"
        client.close()
        replay_equals_reference(cluster.url, events, capsys)


def test_mutual_tls_needs_the_client_certificate(tls: TlsFiles, no_events: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with RedisServer(username=USER, password=PASSWORD, tls=tls, tls_client_auth=True) as server:
        assert "ssl_certfile=" in server.url
        client = redis_from_url(server.url)
        assert client.ping()
        client.close()
        without = with_query(server.url, ssl_certfile=None, ssl_keyfile=None)
        assert main(["replay", no_events, "-d", str(DEFINITIONS), "--redis", without]) == 1
        err = capsys.readouterr().err
        assert "cannot use Redis at rediss://northstar:***@" in err
        assert not secrets_in(err)


def test_api_over_tls_redis_requires_its_token(secure_redis: RedisServer, tmp_path: Path) -> None:
    """``northstar api`` with the Redis URL and the token from the environment:
    healthy over TLS + ACL, refuses calls without the token, logs neither secret."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NORTHSTAR_")}
    env |= {"NORTHSTAR_REDIS_URL": secure_redis.url, "NORTHSTAR_API_TOKEN": TOKEN,
            "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "api", "-d", str(DEFINITIONS), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = get("/healthz")
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "northstar api did not start"
                time.sleep(0.1)
        assert health[0] == 200 and json.loads(health[2]) == {"status": "ok", "redis": True}
        status, headers, _ = get("/api/v1/trees")
        assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="northstar"'
        assert get("/api/v1/trees", {"Authorization": "Bearer not-the-token"})[0] == 401
        status, _, body = get("/api/v1/trees", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["trees"]
        metrics = get("/metrics")[2].decode()
        assert not secrets_in(metrics)
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
    assert not secrets_in((out + err).decode(errors="replace"))


# --------------------------------------------------------------------------- refused


def _bad_urls(server: RedisServer, other: TlsFiles) -> dict[str, tuple[str, str]]:
    """name -> (URL, what the error must say)."""
    url = server.url
    return {
        "wrong password": (url.replace(urlsplit(url).password or "", "not-it"), "wrong user name or password"),
        "unknown user": (url.replace(f"{USER}:", "mallory:"), "wrong user name or password"),
        "no password": (url.replace(f"{USER}:{urlsplit(url).password}@", ""), "password"),
        "system CAs only": (with_query(url, ssl_ca_certs=None), "certificate is not trusted"),
        "another CA": (with_query(url, ssl_ca_certs=str(other.ca_cert)), "certificate is not trusted"),
        "missing CA file": (with_query(url, ssl_ca_certs="/nonexistent/ca.crt"), "no such file"),
        "plain to TLS port": (url.replace("rediss://", "redis://").split("?")[0], "use rediss://"),
    }


CASES = ("wrong password", "unknown user", "no password", "system CAs only", "another CA",
         "missing CA file", "plain to TLS port")


@pytest.mark.parametrize("case", CASES)
def test_misconfiguration_fails_clearly_without_the_password(
    case: str, secure_redis: RedisServer, other_ca: TlsFiles, no_events: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, says = _bad_urls(secure_redis, other_ca)[case]
    with pytest.raises(Exception) as raised:
        redis_from_url(url, socket_timeout=5, socket_connect_timeout=5)
    if case != "plain to TLS port":  # a reset connection may also be a network fault
        assert isinstance(raised.value, RedisConfigError), repr(raised.value)
    assert says in str(raised.value)
    assert not secrets_in(str(raised.value)) and not secrets_in(repr(raised.value))
    assert main(["replay", no_events, "-d", str(DEFINITIONS), "--redis", url]) == 1
    err = capsys.readouterr().err
    assert says in err
    assert err.count("cannot use Redis at redis") == 1 or "Redis URL: no such file" in err
    assert not secrets_in(err)


def test_a_user_without_a_needed_permission_is_told_so(secure_redis: RedisServer) -> None:
    admin = redis_from_url(secure_redis.url)
    admin.execute_command("ACL", "SETUSER", "noinfo", "on", ">noinfo-pw-7", "~*", "+@all", "-info")
    admin.close()
    url = secure_redis.url.replace(f"{USER}:{urlsplit(secure_redis.url).password}@", "noinfo:noinfo-pw-7@")
    with pytest.raises(RedisConfigError, match="lacks a permission") as raised:
        redis_from_url(url)
    assert "noinfo-pw-7" not in str(raised.value)


def test_worker_with_a_wrong_password_exits_at_once(secure_redis: RedisServer, tmp_path: Path) -> None:
    """No Kafka needed: the worker checks Redis first and exits 1 instead of
    retrying forever; its output names the problem, not the password."""
    url = secure_redis.url.replace(urlsplit(secure_redis.url).password or "", "wrong-pw")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NORTHSTAR_")}
    env |= {"NORTHSTAR_KAFKA_SASL_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "worker", "-d", str(DEFINITIONS), "--redis", url,
         "--kafka", "127.0.0.1:1", "--metrics-port", "0", "--web-port", "0"],
        env=env, capture_output=True, timeout=60, check=False, cwd=tmp_path,
    )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 1, output
    assert "wrong user name or password" in output
    assert not secrets_in(output)
