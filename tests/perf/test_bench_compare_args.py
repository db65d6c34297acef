"""``python -m streamer.bench.compare`` refuses bad arguments with exit 2
before starting anything; the simulated workloads it can run."""

from __future__ import annotations

import pytest

from streamer.bench import compare


@pytest.mark.parametrize("argv", [
    [],  # no --variant
    ["--variant", "now=.", "--partitions", "0"],
    ["--variant", "now=.", "--events", "0"],
    ["--variant", "now=.", "--repeats", "-1"],
    ["--variant", "now=.", "--tree", "nope"],
])
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        compare.main(argv)
    assert exc.value.code == 2


def test_simulated_workloads() -> None:
    from streamer.bench.workload import simulated_workload

    for model in ("education", "learning_users"):
        load = simulated_workload(model, 500, partitions=2)
        assert load.events == 500 and len(load.lines) == 502  # one sentinel per partition
    with pytest.raises(ValueError, match="no simulated model"):
        simulated_workload("nope", 10)
