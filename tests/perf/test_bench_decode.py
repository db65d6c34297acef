"""``python -m streamer.bench.decode``: every variant decodes every event and
gets a figure; bad arguments exit 2. No timing is asserted."""

from __future__ import annotations

import re

import orjson
import pytest

from streamer.bench import decode


def test_every_variant_reports(capsys: pytest.CaptureFixture[str]) -> None:
    assert decode.main(["--events", "3000", "--rounds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("3,000 Amplitude events")
    rows = {m.group(1).strip(): float(m.group(2)) for line in out[1:]
            if (m := re.match(r"\s+(.+?)\s+(\d+)k events/s", line))}
    assert set(rows) == set(decode.variants([b"{}"]))
    assert all(v >= 0 for v in rows.values())


def test_a_variant_that_loses_events_is_refused() -> None:
    raws = decode.amplitude_events(50)
    # an event the plain variants take and the decoder rejects (time out of range)
    raws[3] = orjson.dumps({**orjson.loads(raws[3]), "time": -5})
    with pytest.raises(RuntimeError, match=r"Decoder\.decode made 49 events of 50"):
        decode.measure(raws, 1)


@pytest.mark.parametrize("argv", [["--events", "0"], ["--rounds", "0"], ["--events", "x"]])
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        decode.main(argv)
    assert exc.value.code == 2
