"""Worker configuration: environment variables ``NORTHSTAR_*`` (or flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamer.state.expiry import Retention


class KafkaSettings(BaseSettings):
    """Client settings passed through to aiokafka/kafka-python."""

    model_config = SettingsConfigDict(env_prefix="NORTHSTAR_KAFKA_", extra="forbid", frozen=True)

    bootstrap: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments for aiokafka clients (secrets revealed only here)."""
        kwargs: dict[str, object] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            import ssl

            context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
            if self.ssl_certfile:
                context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None)
            kwargs["ssl_context"] = context
        return kwargs


    def admin_kwargs(self) -> dict[str, Any]:
        """The same security settings for kafka-python's admin client."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = self.client_kwargs()["ssl_context"]
        return kwargs

    def faust_credentials(self) -> object | None:
        """faust's broker credentials for the same settings (None for PLAINTEXT)."""
        import ssl

        import faust

        found = self.client_kwargs().get("ssl_context")
        context = found if isinstance(found, ssl.SSLContext) else None
        if self.sasl_mechanism:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value() if self.sasl_password else None,
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NORTHSTAR_", extra="ignore", frozen=True)

    definitions: list[Path] = Field(default_factory=lambda: [Path("definitions")])
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    namespace: str = "ns"
    group_id: str = "northstar-workers"
    instance_id: str | None = Field(default=None, min_length=1, pattern=r"^\S+$")
    """A name for this worker, unique in its group and the same across its
    restarts (``{hostname}`` is replaced by the host's name: the pod's in
    Kubernetes). With it, a restarted worker ends its killed process's group
    membership at once instead of waiting for that session to expire
    (streamer/worker/membership.py)."""
    app_id: str = "northstar"
    dead_letter_topic: str = "northstar-dead-letters"
    metrics_port: int = 9464
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    batch_max_records: int = Field(default=20_000, ge=1)
    """Records per ``getmany``, at most, over all the worker's partitions
    (aiokafka fills it from several partitions: with two, ~10,000 each).
    20,000 measured +16% over 10,000 on a backlog (docs/performance.md)."""
    batch_timeout_ms: int = Field(default=200, ge=1)
    batch_inflight_records: int | None = Field(default=None, ge=1)
    """Records fetched and not committed yet, at most (default: 3 x
    batch_max_records: per lane one batch applying, one judged, one
    prepared). Up to batch_max_records: the worker is serial, each batch
    prepared once the previous one is committed (docs/worker.md)."""
    gc_tuning: bool = True
    """Freeze start-up objects and collect the youngest generation less often
    (streamer/worker/gctune.py)."""
    commit_first: bool = True
    """Batch preparation waits (up to 50 ms at a time) while a lane's commit
    runs its Python, so that the GIL goes to the chain the lane waits on
    (streamer/courtesy.py; +9% events/s on average over ten interleaved
    pairs of 1M-record runs, 8 of them in its favour)."""
    switch_interval_s: float = Field(default=0.001, gt=0, le=1)
    """The interpreter's thread switch interval (``sys.setswitchinterval``;
    Python's default is 0.005): how long a thread back from Redis may wait
    for the GIL while another prepares a batch (streamer/worker/gctune.py)."""
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    redis_retry_max_s: float = Field(default=2.0, gt=0)
    evaluate_interval_s: float = Field(default=5.0, gt=0)
    clock: Literal["watermark", "wall"] = "watermark"
    alerts_topic: str = "northstar-alerts"
    snapshots_topic: str = "northstar-snapshots"
    # URLs may carry credentials (user:password@) or a token in the path
    alertmanager_url: SecretStr | None = None
    webhook_url: SecretStr | None = None
    # state lifecycle (docs/state.md §5): keys of definitions no longer used expire
    state_retention_s: float | None = Field(default=None, gt=0)  # default: lateness horizon + grace
    state_grace_s: int = Field(default=86_400, ge=0)
    state_refresh_s: float = Field(default=600.0, gt=0)

    def retention(self) -> Retention:
        return Retention(grace_s=self.state_grace_s, fixed_s=self.state_retention_s, refresh_s=self.state_refresh_s)

    @model_validator(mode="after")
    def _distinct_groups(self) -> WorkerSettings:
        # faust joins a consumer group named after the app id; the event path
        # must use another group, or the broker rejects one of the two protocols
        if self.group_id == self.app_id:
            raise ValueError(
                f"NORTHSTAR_GROUP_ID and NORTHSTAR_APP_ID are both {self.group_id!r}: give the event "
                "consumer group its own name"
            )
        return self
