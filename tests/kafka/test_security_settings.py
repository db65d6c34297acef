"""Kafka SASL/TLS settings reach every client (aiokafka, kafka-python admin,
faust) and the password never shows in a repr or a log line."""

from __future__ import annotations

import ssl

import faust
import pytest

from streamer.worker.settings import KafkaSettings, WorkerSettings


def test_sasl_settings_reach_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORTHSTAR_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("NORTHSTAR_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("NORTHSTAR_KAFKA_SASL_USERNAME", "northstar")
    monkeypatch.setenv("NORTHSTAR_KAFKA_SASL_PASSWORD", "s3cret-value")
    kafka = KafkaSettings()
    client = kafka.client_kwargs()
    assert client["security_protocol"] == "SASL_SSL"
    assert client["sasl_plain_password"] == "s3cret-value"
    assert isinstance(client["ssl_context"], ssl.SSLContext)
    admin = kafka.admin_kwargs()
    assert admin["sasl_mechanism"] == "SCRAM-SHA-256" and admin["sasl_plain_username"] == "northstar"
    credentials = kafka.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert "s3cret-value" not in repr(kafka) and "s3cret-value" not in str(kafka.model_dump())


def test_plaintext_has_no_credentials() -> None:
    kafka = KafkaSettings(bootstrap="b:9092")
    assert kafka.faust_credentials() is None
    assert kafka.admin_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_event_group_must_differ_from_the_faust_app_id() -> None:
    with pytest.raises(ValueError, match="give the event consumer group its own name"):
        WorkerSettings(group_id="same", app_id="same")
