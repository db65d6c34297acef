"""``python -m streamer.bench.scripts``: the recorded calls replay to the
same state, a variant that writes something else shows another digest, and
bad arguments exit 2. No timing is asserted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamer.bench import scripts
from streamer.testing.services import RedisService

pytestmark = pytest.mark.services

SUM = Path(scripts.__file__).resolve().parents[1] / "state" / "lua" / "sum.lua"


def _rows(out: str) -> dict[str, tuple[dict[str, float], str]]:
    rows = {}
    for line in out.splitlines():
        m = re.match(r"(\S+)\s+run 1: total ([\d.]+) us/event  \((.*)\)  digest (\w+)$", line)
        assert m, f"unexpected line: {line!r}"
        figures = dict(part.rsplit(" ", 1) for part in m.group(3).split("  "))
        rows[m.group(1)] = ({k: float(v) for k, v in figures.items()}, m.group(4))
    return rows


def test_replay_same_state_and_a_changed_variant(
    redis_server: RedisService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same = tmp_path / "same.lua"
    same.write_text(SUM.read_text())
    changed = tmp_path / "changed.lua"
    changed.write_text(SUM.read_text().replace("return finish()", "redis.call('SET', P .. 'extra', 1)\nreturn finish()"))
    assert changed.read_text() != SUM.read_text()
    url = redis_server.url
    code = scripts.main(["--events", "3000", "--repeats", "1", "--redis", url,
                         "--variant", f"sum={same}", "--variant", f"sum={changed}"])
    assert code == 0
    rows = _rows(capsys.readouterr().out)
    shipped, _ = rows["shipped"]
    # the education tree: its distinct and per-day counts read the retention unit
    assert set(shipped) == {"verdict", "sum", "retention", "pair"}
    assert all(v >= 0 for v in shipped.values()) and shipped["verdict"] > 0
    assert rows[f"sum={same}"][1] == rows["shipped"][1]
    assert rows[f"sum={changed}"][1] != rows["shipped"][1]


@pytest.mark.parametrize("argv", [["--variant", "nope=x.lua"], ["--variant", "pair=/no/such.lua"], ["--events", "0"]])
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        scripts.main(argv)
    assert exc.value.code == 2
