"""``northstar demo`` as a newcomer runs it: one command starts everything,
values move, the simulator's Goodhart phase fires the divergence alert, and
everything it started is stopped."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

from streamer.testing import free_port

ROOT = Path(__file__).parents[2]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_the_pipeline_and_fires_the_divergence(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "demo", "--port", str(port), "--duration", "300", "--until", "firing"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        out, _ = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}/tree/education" in out  # it says where to look
    values = re.findall(r"weekly_learning_minutes=([\d,]+)", out)
    assert len(set(values)) >= 3, f"values did not move:\n{out}"
    assert "divergence=PENDING" in out or "divergence=FIRING" in out
    assert "divergence firing; stopping as asked" in out
    # everything it started is stopped: no announced port still listens
    ports = {port} | {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", out)}
    assert len(ports) >= 4, out  # API, broker, Redis, Prometheus/worker metrics
    still = sorted(p for p in ports if _listening(p))
    assert not still, f"ports still listening after the demo exited: {still}"
