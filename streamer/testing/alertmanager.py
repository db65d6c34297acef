"""A local Alertmanager (Debian package ``prometheus-alertmanager``), clustering disabled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from streamer.testing.http import get_json, http_ok, post_json
from streamer.testing.process import (
    ManagedProcess,
    MissingBinaryError,
    ServiceBase,
    free_port,
)

HOST = "127.0.0.1"
ALERTMANAGER_HINT = "install the Debian package: apt-get install -y prometheus-alertmanager"
# Debian renames the upstream "alertmanager" binary; accept either.
ALERTMANAGER_NAMES = ("prometheus-alertmanager", "alertmanager")


def alertmanager_binary() -> str:
    for name in ALERTMANAGER_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    raise MissingBinaryError(" or ".join(ALERTMANAGER_NAMES), ALERTMANAGER_HINT)


class Alertmanager(ServiceBase):
    """Alertmanager on 127.0.0.1; one route to receiver "default".

    With ``webhook_url`` the receiver posts every notification there (resolved ones
    too). Grouping waits are short (``group_wait``/``group_interval``) for tests.
    """

    service_name = "alertmanager"

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        group_wait: str = "1s",
        group_interval: str = "1s",
        repeat_interval: str = "1h",
        workdir: Path | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(workdir, keep_workdir=keep_workdir)
        self.webhook_url = webhook_url
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.port = free_port(HOST) if port is None else port
        self.startup_timeout = startup_timeout
        self._process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "alertmanager.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "alertmanager.log"

    def config(self) -> dict[str, Any]:
        receiver: dict[str, Any] = {"name": "default"}
        if self.webhook_url:
            receiver["webhook_configs"] = [{"url": self.webhook_url, "send_resolved": True}]
        return {
            "route": {
                "receiver": "default",
                "group_by": ["alertname"],
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [receiver],
        }

    def argv(self) -> list[str]:
        return [
            alertmanager_binary(),
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
        ]

    def _start(self) -> None:
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        self._process = ManagedProcess(
            f"alertmanager :{self.port}", self.argv(), log_path=self.log_path, cwd=self.workdir
        )
        self._process.start()
        self._process.wait_ready(
            lambda: http_ok(f"{self.url}/-/ready"),
            self.startup_timeout,
            f"alertmanager on {self.address} (/-/ready)",
        )

    def _stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """POST alerts to ``/api/v2/alerts`` (labels, annotations, startsAt, endsAt...)."""
        post_json(f"{self.url}/api/v2/alerts", alerts)

    def alerts(self) -> list[dict[str, Any]]:
        """GET ``/api/v2/alerts``: the alerts Alertmanager currently holds."""
        result: list[dict[str, Any]] = get_json(f"{self.url}/api/v2/alerts")
        return result
