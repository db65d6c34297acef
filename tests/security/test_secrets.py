"""Secrets stay secret in settings and in anything printed about a Redis URL:
``repr``/``str``/dumps of every settings class, URL redaction and error
scrubbing (pure functions; the real-server checks are in the other files here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.api.settings import ApiSettings
from streamer.cli.common import redact_url as cli_redact_url
from streamer.state.connection import RedisConfigError, check_url, explain, redact_url, scrub
from streamer.worker.settings import KafkaSettings, WorkerSettings

SECRETS = {
    "NORTHSTAR_REDIS_URL": "rediss://northstar:redis-pw-1@redis.internal:6380/0",
    "NORTHSTAR_KAFKA_SASL_PASSWORD": "kafka-pw-2",
    "NORTHSTAR_API_TOKEN": "api-token-3",
    "NORTHSTAR_WEBHOOK_URL": "https://hooks.example/services/T0/B0/webhook-token-4",
    "NORTHSTAR_ALERTMANAGER_URL": "https://am:am-pw-5@alertmanager.internal:9093",
}
NEEDLES = ("redis-pw-1", "kafka-pw-2", "api-token-3", "webhook-token-4", "am-pw-5")


def test_settings_never_show_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NORTHSTAR_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("NORTHSTAR_KAFKA_SASL_USERNAME", "northstar")
    monkeypatch.setenv("NORTHSTAR_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    settings = [WorkerSettings(), KafkaSettings(), ApiSettings()]
    shown = " ".join(
        f"{s!r} {s} {s.model_dump()} {s.model_dump_json()}" for s in settings
    )
    assert not [n for n in NEEDLES if n in shown], shown
    # ... while the clients still get them
    worker, kafka, api = settings
    assert worker.redis_url.get_secret_value() == SECRETS["NORTHSTAR_REDIS_URL"]
    assert kafka.client_kwargs()["sasl_plain_password"] == "kafka-pw-2"
    assert api.api_token is not None and api.api_token.get_secret_value() == "api-token-3"
    assert worker.webhook_url is not None and "webhook-token-4" in worker.webhook_url.get_secret_value()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("rediss://user:p%40ss%3Aw%2F@h:6380/2?ssl_ca_certs=/etc/ca.pem",
         "rediss://user:***@h:6380/2?ssl_ca_certs=/etc/ca.pem"),
        ("rediss://u:pw@[::1]:6380/0", "rediss://u:***@[::1]:6380/0"),
        ("rediss://u:pw@h:1/0?ssl_keyfile=/k.pem&ssl_password=keypass",
         "rediss://u:***@h:1/0?ssl_keyfile=/k.pem&ssl_password=***"),
        ("redis://user@h:1/0", "redis://user@h:1/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert cli_redact_url(url) == shown


def test_scrub_and_explain_hide_raw_and_encoded_passwords() -> None:
    url = "rediss://u:p%40ss@h:1/0?ssl_password=keypass"
    text = "failed for p@ss and p%40ss with keypass"
    assert scrub(text, url) == "failed for *** and *** with ***"
    message = explain(ConnectionError("boom p@ss"), url)
    assert "p@ss" not in message and "p%40ss" not in message and "keypass" not in message
    assert message.startswith("cannot use Redis at rediss://u:***@h:1/0")


def test_check_url_names_the_problem(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not checked here")
    check_url(f"rediss://u:pw@h:1/0?ssl_ca_certs={ca}")
    with pytest.raises(RedisConfigError, match=r"ssl_ca_certs=/no/ca.crt in the Redis URL: no such file"):
        check_url("rediss://u:pw@h:1/0?ssl_ca_certs=/no/ca.crt")
    with pytest.raises(RedisConfigError, match="is not rediss://") as raised:
        check_url(f"redis://u:secret-pw@h:1/0?ssl_ca_certs={ca}")
    assert "secret-pw" not in str(raised.value)
    with pytest.raises(RedisConfigError, match="scheme must be redis:// or rediss://"):
        check_url("http://u:secret-pw@h:1/0")
    with pytest.raises(RedisConfigError, match="invalid Redis URL"):
        check_url("redis://h:notaport/0")
