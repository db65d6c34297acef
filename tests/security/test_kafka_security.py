"""Kafka security settings (``NORTHSTAR_KAFKA_*``) against a real broker.

TLS: Tansu behind a TLS-terminating proxy (Tansu 0.6.0's own ``--cert``/``--key``
cannot be used, see ``streamer.testing.TansuBroker``). ``northstar produce``
and a ``northstar worker`` (its own consumer group, dead-letter producer and
the faust app) reach it only over TLS with the test CA, and the worker's state
in a TLS + ACL Redis equals the reference. Plain and untrusting clients are
refused.

SASL: Tansu ``--authentication`` (SCRAM) refuses wrong logins and clients
without SASL; a successful SCRAM login cannot be shown locally (see
``TansuBroker``), so the mapping of the settings onto the clients is covered
by tests/kafka/test_security_settings.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.kafka.produce import produce_sync
from streamer.state.connection import redis_from_url
from streamer.state.store import Store
from streamer.testing import RedisServer, TansuBroker
from streamer.testing.tls import TlsFiles, make_tls_files
from streamer.testing.worker import WorkerProcess, load_tree, topic_end_offsets, tree_on_topic
from streamer.windows.units import compile_tree
from streamer.worker.settings import KafkaSettings
from tests.eventlog import default_knobs, generate
from tests.worker.test_worker import Source, check_values, now_ms, wait_applied, worker_env

pytestmark = pytest.mark.services

ROOT = Path(__file__).parents[2]
DEFINITIONS = ROOT / "definitions"
REDIS_PASSWORD = "redis-pw-Qx7:@/"
SASL_PASSWORD = "sasl-pw-Lm3v9"
N_EVENTS = 1200


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_broker(tls: TlsFiles) -> Iterator[TansuBroker]:
    with TansuBroker(tls=tls) as broker:
        yield broker


def ssl_env(broker: TansuBroker, tls: TlsFiles) -> dict[str, str]:
    return {
        "NORTHSTAR_KAFKA_BOOTSTRAP": broker.bootstrap,
        "NORTHSTAR_KAFKA_SECURITY_PROTOCOL": "SSL",
        "NORTHSTAR_KAFKA_SSL_CAFILE": str(tls.ca_cert),
    }


def clean_env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NORTHSTAR_")}
    return {**env, "PYTHONPATH": str(ROOT), **more}


def secrets_in(text: str) -> list[str]:
    from urllib.parse import quote

    return [s for s in (REDIS_PASSWORD, quote(REDIS_PASSWORD, safe=""), SASL_PASSWORD) if s in text]


@pytest.mark.timeout(240)
def test_produce_and_worker_over_tls_equal_the_reference(
    tls_broker: TansuBroker, tls: TlsFiles, unique_topic: str, tmp_path: Path
) -> None:
    clock = now_ms()
    tree = load_tree(tree_on_topic(DEFINITIONS / "education.yaml", unique_topic, tmp_path / "definitions"))
    log = generate(tree, 4242, replace(default_knobs(tree), n_events=N_EVENTS))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(log.lines) + b"\n")

    produced = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "produce", str(events), "--topic", unique_topic,
         "--partitions", "1"],
        env=clean_env(**ssl_env(tls_broker, tls)), capture_output=True, timeout=120, check=False,
    )
    assert produced.returncode == 0, produced.stderr.decode()
    assert f"produced {len(log.lines)} events".encode() in produced.stderr
    ends = topic_end_offsets(tls_broker.security() | {"bootstrap_servers": tls_broker.bootstrap},
                             unique_topic, len(log.lines))
    source = Source(tree, compile_tree(tree), unique_topic, log, ends)

    with RedisServer(username="worker", password=REDIS_PASSWORD, tls=tls) as redis_server:
        env = worker_env("tls", unique_topic, **ssl_env(tls_broker, tls))
        # a SASL password that is set (but unused: no mechanism) must not leak either
        env |= {"NORTHSTAR_KAFKA_SASL_USERNAME": "u", "NORTHSTAR_KAFKA_SASL_PASSWORD": SASL_PASSWORD}
        with WorkerProcess(
            [tmp_path / "definitions"], bootstrap=tls_broker.bootstrap, redis_url=redis_server.url,
            group=f"g-{unique_topic}", session_timeout_ms=6000, env=env, workdir=tmp_path / "worker",
        ) as worker:
            store = Store(redis_from_url(redis_server.url), namespace="tls")
            wait_applied([worker], store, [source], timeout=90)
            check_values(store, [source], clock)
            # counted after the Kafka commit that follows the apply
            worker.wait_for(lambda: worker.total("northstar_events_total") >= len(log.lines), 30,
                            "every record counted")
            assert worker.total("northstar_events_total") == len(log.lines)
            with urllib.request.urlopen(worker.metrics_url, timeout=5) as response:
                metrics = response.read().decode()
            assert not secrets_in(metrics)
            assert_bounded_labels(metrics, {tree.tree})
        log_text = worker.log_path.read_text(errors="replace")
    assert "assigned" in log_text, "the worker log is empty: nothing was checked"
    assert not secrets_in(log_text)
    users = user_ids(log.lines)
    assert users, "the log has no user ids: nothing was checked"
    assert not users & set(re.findall(r"[\w.@-]+", log_text)), "a user id reached the worker log"


def user_ids(lines: list[bytes]) -> set[str]:
    found = set()
    for line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("user_id"), str):
            found.add(doc["user_id"])
    return found


def assert_bounded_labels(exposition: str, trees: set[str]) -> None:
    """Every label of the worker's /metrics is a tree name, a reject reason,
    a batch stage or a leave's outcome (fixed lists) or a histogram bucket:
    nothing from the events themselves."""
    from prometheus_client.parser import text_string_to_metric_families

    from streamer.events.types import REASONS
    from streamer.worker.metrics import LEAVE_OUTCOMES, STAGES

    allowed = {"tree": trees, "reason": set(REASONS), "stage": set(STAGES), "outcome": set(LEAVE_OUTCOMES)}
    samples = [s for f in text_string_to_metric_families(exposition) for s in f.samples]
    assert samples
    for sample in samples:
        for name, value in sample.labels.items():
            if name == "le":
                float(value)  # a bucket bound
            else:
                assert value in allowed.get(name, set()), (sample.name, name, value)


def _start_producer(client: dict[str, Any]) -> BaseException | None:
    """Start and stop an aiokafka producer; the exception it failed with, if any."""
    from aiokafka import AIOKafkaProducer

    async def main() -> BaseException | None:
        producer = AIOKafkaProducer(**client, request_timeout_ms=3000, metadata_max_age_ms=3000)
        try:
            await asyncio.wait_for(producer.start(), 20)
        except BaseException as exc:
            return exc
        finally:
            await producer.stop()
        return None

    return asyncio.run(main())


def test_plain_and_untrusting_clients_are_refused(
    tls_broker: TansuBroker, tls: TlsFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = make_tls_files(tmp_path / "other", name="someone-else")
    trusted = KafkaSettings(bootstrap=tls_broker.bootstrap, security_protocol="SSL", ssl_cafile=tls.ca_cert)
    assert _start_producer(trusted.client_kwargs()) is None
    plain = KafkaSettings(bootstrap=tls_broker.bootstrap)
    assert _start_producer(plain.client_kwargs()) is not None
    untrusting = KafkaSettings(bootstrap=tls_broker.bootstrap, security_protocol="SSL",
                               ssl_cafile=other.ca_cert)
    with caplog.at_level(logging.DEBUG):
        failure = _start_producer(untrusting.client_kwargs())
    assert failure is not None
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text + repr(failure) + repr(failure.__cause__)


def test_mutual_tls_needs_the_client_certificate(tls: TlsFiles) -> None:
    with TansuBroker(tls=tls, require_client_cert=True) as broker:
        with_cert = KafkaSettings(bootstrap=broker.bootstrap, security_protocol="SSL", ssl_cafile=tls.ca_cert,
                                  ssl_certfile=tls.client_cert, ssl_keyfile=tls.client_key)
        assert _start_producer(with_cert.client_kwargs()) is None
        assert produce_sync([b'{"k": 1}'], "mtls", with_cert.client_kwargs()) == 1
        without = KafkaSettings(bootstrap=broker.bootstrap, security_protocol="SSL", ssl_cafile=tls.ca_cert)
        assert _start_producer(without.client_kwargs()) is not None


def test_sasl_wrong_logins_are_refused_and_not_logged(caplog: pytest.LogCaptureFixture,
                                                     tmp_path: Path) -> None:
    with TansuBroker(authentication=True) as broker:
        assert _start_producer({"bootstrap_servers": broker.bootstrap}) is not None
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            settings = KafkaSettings(bootstrap=broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                                     sasl_mechanism=mechanism, sasl_username="northstar",
                                     sasl_password=SASL_PASSWORD)
            assert SASL_PASSWORD not in repr(settings) and SASL_PASSWORD not in str(settings)
            with caplog.at_level(logging.DEBUG):
                failure = _start_producer(settings.client_kwargs())
            assert failure is not None, mechanism
            assert not secrets_in(repr(failure) + str(failure))
        assert not secrets_in(caplog.text)

        events = tmp_path / "events.jsonl"
        events.write_text('{"event_type": "lesson_completed", "user_id": "u1"}\n')
        done = subprocess.run(
            [sys.executable, "-m", "streamer.cli", "produce", str(events), "--topic", "t"],
            env=clean_env(NORTHSTAR_KAFKA_BOOTSTRAP=broker.bootstrap,
                          NORTHSTAR_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                          NORTHSTAR_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                          NORTHSTAR_KAFKA_SASL_USERNAME="northstar",
                          NORTHSTAR_KAFKA_SASL_PASSWORD=SASL_PASSWORD),
            capture_output=True, timeout=120, check=False,
        )
        err = done.stderr.decode(errors="replace")
        assert done.returncode == 1, err
        assert "the broker refused the SASL login: wrong user name or password" in err
        assert "SCRAM-SHA-512 as 'northstar'" in err and "Traceback" not in err
        assert not secrets_in(err + done.stdout.decode(errors="replace"))
        broker_log = broker.log_path.read_text(errors="replace")
        # the plain client was refused; the SCRAM ones got past the mechanism
        # negotiation (no NoSharedMechanism) to the credential check
        assert "NotAuthenticated" in broker_log, broker_log[-2000:]
        assert "NoSharedMechanism" not in broker_log, broker_log[-2000:]
        assert not secrets_in(broker_log)
