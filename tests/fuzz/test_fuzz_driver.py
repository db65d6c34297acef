"""The fuzz driver (streamer.bench.fuzz): a short run of every target and
engine finds no crash and counts its inputs; and the harness does report a
crash, a contract violation and a reasonless rejection when there is one
(so that "0 crashes" means something)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from streamer.bench import fuzz_decode, fuzz_definitions
from streamer.bench.fuzz import have_atheris, run_target
from streamer.bench.fuzz_core import Budget, Tally
from streamer.events.decode import Decoder
from streamer.events.types import REASONS, Rejected
from streamer.spec.loader import LoadResult

ENGINES = ["hypothesis", "mutate", *(["atheris"] if have_atheris() else [])]


def test_short_run_of_every_target_finds_no_crash() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "streamer.bench.fuzz", "--target", "all", "--seconds", "6", "--json",
         "--engines", *ENGINES],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    summary = orjson.loads(out.stdout)
    by_target = {t["target"]: t for t in summary["targets"]}
    assert set(by_target) == {"decode", "definitions"}
    for target in by_target.values():
        assert target["crashes"] == 0, target["crash_examples"]
        assert target["inputs"] > 0
        for engine in ENGINES:
            assert target["inputs_by_engine"].get(engine, 0) > 0, (target["target"], engine)
    decode_outcomes = set(by_target["decode"]["outcomes"])
    assert decode_outcomes <= {*REASONS, "event"}
    assert "event" in decode_outcomes and "not_json" in decode_outcomes
    assert all(o == "accepted" or o.startswith("rejected:") for o in by_target["definitions"]["outcomes"])


def test_bad_arguments_exit_2() -> None:
    for args in (["--seconds", "0"], ["--target", "nope"], ["--seconds", "1", "--inputs", "5"]):
        out = subprocess.run([sys.executable, "-m", "streamer.bench.fuzz", *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2, args


def test_an_exception_in_decode_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Decoder.decode

    def flaky(self: Decoder, raw: Any, now_ms: int) -> Any:
        if b"[" in raw:
            raise ValueError("boom")
        return real(self, raw, now_ms)

    monkeypatch.setattr(Decoder, "decode", flaky)
    tally = run_target("decode", Budget(inputs=3000), ["mutate"], 1, None, lambda _: None)
    assert tally.crash_count > 0
    assert tally.crashes[0].kind == "exception" and "boom" in tally.crashes[0].what


def test_a_rejection_without_a_known_reason_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Decoder, "decode", lambda self, raw, now_ms: Rejected("mystery", "?"))
    tally = Tally("decode")
    fuzz_decode.try_one(b"{}", tally, "test")
    assert tally.crash_count == len(fuzz_decode.DECODERS)
    assert "unknown reason" in tally.crashes[0].what


def test_a_definitions_file_rejected_without_an_error_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streamer.spec.loader.load_definitions", lambda paths: LoadResult())
    target = fuzz_definitions.Target()
    tally = Tally("definitions")
    try:
        target.try_one(b"tree: x\n", tally, "test")
    finally:
        target.close()
    assert tally.crash_count == 1 and "without a reason" in tally.crashes[0].what


def test_a_loader_exception_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(paths: Any) -> Any:
        raise KeyError("oops")

    monkeypatch.setattr("streamer.spec.loader.load_definitions", broken)
    tally = run_target("definitions", Budget(inputs=3), ["mutate"], 1, None, lambda _: None)
    assert tally.crash_count == 3 and "KeyError" in tally.crashes[0].what


def test_generated_yaml_reads_back_as_the_same_data() -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    for doc in fuzz_definitions.seed_documents():
        assert yaml.load(fuzz_definitions.to_yaml(doc)) == doc
