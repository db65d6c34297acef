"""One line for a Kafka client that could not start: what was tried (bootstrap,
protocol, mechanism, user; never the password) and the likely cause."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamer.worker.settings import KafkaSettings


def _is_scram_refusal(exc: BaseException) -> bool:
    # aiokafka reads the server-final SCRAM message without checking its error
    # field ("e=..."): a refused login surfaces as KeyError('v')
    return isinstance(exc, KeyError) and exc.args == ("v",)


def explain_kafka_error(exc: BaseException, kafka: KafkaSettings) -> str:
    """``exc`` from starting a client with ``kafka``'s settings, explained."""
    how = kafka.security_protocol
    if kafka.sasl_mechanism:
        how += f", {kafka.sasl_mechanism} as {kafka.sasl_username!r}"
    if kafka.ssl_cafile:
        how += f", CA file {kafka.ssl_cafile}"
    text = f"{type(exc).__name__}: {exc}"
    if kafka.sasl_password is not None:
        text = text.replace(kafka.sasl_password.get_secret_value(), "***")
    if _is_scram_refusal(exc):
        hint = "the broker refused the SASL login: wrong user name or password"
    elif "CERTIFICATE_VERIFY_FAILED" in text:
        hint = "the broker's TLS certificate is not trusted: set NORTHSTAR_KAFKA_SSL_CAFILE"
    elif "UnsupportedSaslMechanism" in text:
        hint = "the broker does not offer this SASL mechanism (NORTHSTAR_KAFKA_SASL_MECHANISM)"
    else:
        hint = ("unreachable, or the connection was closed: check the address and that "
                "NORTHSTAR_KAFKA_SECURITY_PROTOCOL matches the listener (SSL, SASL_SSL, ...)")
        if kafka.sasl_mechanism:
            hint += ", or the SASL login was refused (user name, password)"
    return f"cannot use Kafka at {kafka.bootstrap} ({how}): {text} ({hint})"
