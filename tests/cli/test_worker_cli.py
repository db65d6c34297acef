"""``northstar worker`` refuses bad settings (flags or ``NORTHSTAR_*``) with
exit 2 and the field's name, before it connects to anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--instance-id", "two words"], {}, "instance_id: String should match pattern"),
        (["--session-timeout-ms", "5"], {}, "session_timeout_ms: Input should be greater than or equal to 1000"),
        ([], {"NORTHSTAR_INSTANCE_ID": ""}, "instance_id: String should have at least 1 character"),
    ],
)
def test_bad_settings_exit_2_naming_the_field(argv: list[str], env: dict[str, str], message: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NORTHSTAR_")}
    done = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "worker", "--definitions", str(ROOT / "definitions"), *argv],
        env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"northstar: error: {message}" in done.stderr
    assert "Traceback" not in done.stderr
