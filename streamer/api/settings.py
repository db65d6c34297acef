"""Settings of ``northstar api`` from ``NORTHSTAR_*`` environment variables
(flags override them). The Redis URL is read by the CLI's Redis helper
(``NORTHSTAR_REDIS_URL``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NORTHSTAR_", extra="ignore", frozen=True)

    definitions: list[Path] = Field(default_factory=lambda: [Path("definitions")])
    namespace: str = Field(default="ns", min_length=1)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_token: SecretStr | None = None
    api_poll_interval: float = Field(default=0.5, gt=0)
    api_heartbeat_interval: float = Field(default=15.0, gt=0)
    api_metrics_cache_s: float = Field(default=0.0, ge=0)
    """Scrapes of /metrics within this share one Redis read (0: each reads)."""

    @field_validator("api_token")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("the API token must not be empty; unset it to serve without authentication")
        return value
