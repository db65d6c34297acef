"""``python -m streamer.bench.compare`` refuses bad arguments with exit 2
before starting anything."""

from __future__ import annotations

import pytest

from streamer.bench import compare


@pytest.mark.parametrize("argv", [
    [],  # no --variant
    ["--variant", "now=.", "--partitions", "0"],
    ["--variant", "now=.", "--events", "0"],
    ["--variant", "now=.", "--repeats", "-1"],
])
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        compare.main(argv)
    assert exc.value.code == 2
