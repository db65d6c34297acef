"""A local Prometheus server (Debian package ``prometheus``) with a generated config.

The config is written as JSON, which is valid YAML, so no YAML writer is needed.
Scrape and rule evaluation intervals default to 1s so tests see data quickly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamer.testing.http import get_json, http_ok
from streamer.testing.process import (
    ManagedProcess,
    ServiceBase,
    ServiceError,
    find_binary,
    free_port,
    wait_until,
)

HOST = "127.0.0.1"
PROMETHEUS_HINT = "install the Debian package: apt-get install -y prometheus"


def prometheus_binary() -> str:
    return find_binary("prometheus", PROMETHEUS_HINT)


def promtool_binary() -> str:
    return find_binary("promtool", PROMETHEUS_HINT)


class Prometheus(ServiceBase):
    """Prometheus on 127.0.0.1 scraping ``targets`` ("host:port") every ``scrape_interval``.

    ``scrape_self`` adds a job "prometheus" for its own /metrics; ``rule_files`` are
    loaded as given; ``alertmanagers`` ("host:port") receive its alerts (API v2).
    The first scrape lands about 5 s after start, because Prometheus applies newly
    discovered targets on a fixed 5 s tick; poll with :meth:`wait_for_query`.
    """

    service_name = "prometheus"

    def __init__(
        self,
        targets: Sequence[str] = (),
        *,
        job: str = "northstar",
        scrape_self: bool = False,
        rule_files: Sequence[Path | str] = (),
        alertmanagers: Sequence[str] = (),
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        workdir: Path | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(workdir, keep_workdir=keep_workdir)
        self.targets = list(targets)
        self.job = job
        self.scrape_self = scrape_self
        self.rule_files = [Path(path).resolve() for path in rule_files]
        self.alertmanagers = list(alertmanagers)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
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
        return self.workdir / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def config(self) -> dict[str, Any]:
        scrape_configs: list[dict[str, Any]] = []
        if self.targets:
            scrape_configs.append(
                {"job_name": self.job, "static_configs": [{"targets": self.targets}]}
            )
        if self.scrape_self:
            scrape_configs.append(
                {"job_name": "prometheus", "static_configs": [{"targets": [self.address]}]}
            )
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "scrape_configs": scrape_configs,
            "rule_files": [str(path) for path in self.rule_files],
        }
        if self.alertmanagers:
            config["alerting"] = {
                "alertmanagers": [
                    {"api_version": "v2", "static_configs": [{"targets": self.alertmanagers}]}
                ]
            }
        return config

    def argv(self) -> list[str]:
        return [
            prometheus_binary(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",
        ]

    def _start(self) -> None:
        for path in self.rule_files:
            if not path.is_file():
                raise ServiceError(f"Prometheus rule file {path} does not exist")
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        self._process = ManagedProcess(
            f"prometheus :{self.port}", self.argv(), log_path=self.log_path, cwd=self.workdir
        )
        self._process.start()
        self._process.wait_ready(
            lambda: http_ok(f"{self.url}/-/ready"),
            self.startup_timeout,
            f"prometheus on {self.address} (/-/ready)",
        )

    def _stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET ``/api/v1/<path>``; return ``data`` or raise :class:`ServiceError` on an API error."""
        answer = get_json(f"{self.url}/api/v1/{path}", params)
        if answer.get("status") != "success":
            raise ServiceError(f"Prometheus API {path} failed: {answer}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the ``result`` list (empty until a sample exists)."""
        data = self.api("query", {"query": expr})
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for_query(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns at least one series; return the result."""
        found: list[dict[str, Any]] = []

        def has_result() -> bool:
            nonlocal found
            found = self.query(expr)
            return bool(found)

        wait_until(
            has_result, timeout, f"Prometheus query {expr!r}", interval=0.2, log_path=self.log_path
        )
        return found
