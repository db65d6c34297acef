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


def test_each_variant_is_awaited_on_the_units_of_its_own_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A state layout change gives units other fingerprints: the bench waits
    for those the variant's code applies, compiled by that code."""
    from pathlib import Path

    from streamer.testing.worker import load_tree
    from streamer.windows.units import compile_tree

    root = Path(__file__).resolve().parents[2]
    tree_file = root / "definitions" / "learning_users.yaml"
    units = compare.variant_units(str(root), tree_file)
    assert [(u.kind, u.fingerprint) for u in units] == [
        (u.kind, u.fingerprint) for u in compile_tree(load_tree(tree_file)).units
    ]
    broken = tmp_path / "streamer"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('this checkout is broken')\n")
    with pytest.raises(RuntimeError, match="this checkout is broken"):
        compare.variant_units(str(tmp_path), tree_file)


def test_stage_summary_reads_the_stage_histogram() -> None:
    sums = {"prepare": 2.0, "verdicts": 3.0, "aggregate": 4.0, "apply": 5.0}
    counts = {"prepare": 20.0, "verdicts": 20.0, "aggregate": 20.0, "apply": 20.0}
    line = compare.stage_summary(sums, counts, seconds=8.0)
    assert line == "ms per batch: prepare 100, verdicts 150, aggregate 200, apply 250; lanes committing 1.50"
    assert compare.stage_summary({}, {}, 8.0) == ""  # older code: no stages exported


def test_command_summary_orders_commands_by_cpu_per_record() -> None:
    stats = {
        "cmdstat_hget": {"calls": 600, "usec": 500},
        "cmdstat_evalsha": {"calls": 2, "usec": 8000},
        "cmdstat_hsetnx": {"calls": 1000, "usec": 1100},
    }
    line = compare.command_summary(stats, records=1000, top=2)
    assert line == "redis us/record (calls/record): evalsha 8.00 (0.002), hsetnx 1.10 (1)"
