"""``python -m streamer.bench.aggregate``: every unit of the education tree
gets a figure; bad arguments exit 2. No timing is asserted."""

from __future__ import annotations

import re

import pytest

from streamer.bench import aggregate
from streamer.bench.evaluation import load_tree
from streamer.windows.units import compile_tree


def test_every_unit_reports(capsys: pytest.CaptureFixture[str]) -> None:
    assert aggregate.main(["--events", "3000", "--batch", "1000", "--rounds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("3,000 simulated education events")
    rows = {m.group(1): float(m.group(2)) for line in out[1:] if (m := re.match(r"\s+(.+?)\s+(-?[\d.]+) us/event", line))}
    units = {f"{u.kind} {u.fingerprint[:10]}" for u in compile_tree(load_tree("education")).units}
    assert set(rows) == units | {"select", "total"}
    assert all(v >= 0 for v in rows.values())
    assert rows["total"] == pytest.approx(sum(v for k, v in rows.items() if k != "total"), abs=0.01)


@pytest.mark.parametrize("argv", [["--events", "0"], ["--rounds", "0"], ["--batch", "x"]])
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        aggregate.main(argv)
    assert exc.value.code == 2
