"""``northstar bench`` refuses bad arguments with exit 2 and a message,
before it starts any service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pairs", "0"], "--pairs must be >= 1"),
        (["--partitions", "1"], "2+ partitions"),
        (["--restart-trials", "0"], "--restart-trials >= 1"),
        (["--pairs", "x"], "invalid int value"),
        (["--eval-events-factor", "0"], "--eval-events-factor must be >= 1"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "streamer.cli", "bench", *argv], capture_output=True, text=True,
                          timeout=60, check=False, cwd=Path(__file__).parents[2])
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
