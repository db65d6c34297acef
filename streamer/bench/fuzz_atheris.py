"""Coverage-guided fuzzing with atheris (libFuzzer for Python), optional:
``pip install atheris`` (a binary wheel for CPython 3.11 on x86-64 Linux; no
compiler needed). libFuzzer owns the process it runs in and stops at the
first crash, so the driver (streamer.bench.fuzz) runs this module as a child:

    python -m streamer.bench.fuzz_atheris decode|definitions CORPUS_DIR [libFuzzer flags]

The code under test (``streamer.*``, and the YAML parser and pydantic's
Python side for definitions) is imported under ``atheris.instrument_imports``
so that libFuzzer sees its branch coverage;
the seeds are the same as the other engines'. The contract checked is the
one of streamer.bench.fuzz_decode / fuzz_definitions; a violation raises, which
libFuzzer reports as a crash with the input saved.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from streamer.bench.fuzz_core import Budget, Tally

PER_EXEC = {"decode": 6, "definitions": 1}
"""Inputs (decode calls / files loaded) per libFuzzer execution."""
MAX_LEN = {"decode": 4096, "definitions": 8192}


def _seeds(target: str) -> list[bytes]:
    if target == "decode":
        from streamer.bench import fuzz_decode

        return fuzz_decode.corpus_seeds() + fuzz_decode.simulated_seeds(50)
    from streamer.bench import fuzz_definitions

    return sorted(fuzz_definitions.seed_texts(), key=len)[:20]


def run_child(target: str, budget: Budget, tally: Tally, seed: int) -> None:
    """Run atheris on ``target`` in a child process within ``budget``; add its
    executions (times ``PER_EXEC``) and its crash, if any, to ``tally``."""
    work = Path(tempfile.mkdtemp(prefix=f"northstar-atheris-{target}-"))
    corpus = work / "corpus"
    corpus.mkdir()
    for i, data in enumerate(_seeds(target)):
        (corpus / f"seed-{i}").write_bytes(data)
    flags = [f"-seed={seed}", "-print_final_stats=1", f"-max_len={MAX_LEN[target]}",
             f"-artifact_prefix={work}/", "-timeout=30", "-rss_limit_mb=4096"]
    if budget.seconds is not None:
        flags.append(f"-max_total_time={max(1, int(budget.seconds))}")
    if budget.inputs is not None:
        flags.append(f"-runs={max(1, budget.inputs // PER_EXEC[target])}")
    log = work / "atheris.log"
    with log.open("wb") as out:
        code = subprocess.call([sys.executable, "-m", "streamer.bench.fuzz_atheris", target, str(corpus), *flags],
                               stdout=out, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", text)
    executed = int(runs.group(1)) if runs else 0
    if not runs:  # killed before its final stats: count the last status line
        done = re.findall(r"^#(\d+)\s", text, re.MULTILINE)
        executed = int(done[-1]) if done else 0
    tally.inputs["atheris"] += executed * PER_EXEC[target]
    if code != 0:
        crash = re.search(r"Test unit written to (\S+)", text)
        data = Path(crash.group(1)).read_bytes() if crash and Path(crash.group(1)).exists() else b""
        start = text.find("=== Uncaught Python exception")
        trace = text[start:start + 3000] if start >= 0 else text[-3000:]
        what = next((line for line in reversed(trace.splitlines()) if line.strip() and ":" in line),
                    f"exit code {code}")
        tally.crash("atheris", "exception", what.strip()[:300], data, trace)


def main(argv: list[str]) -> None:
    import atheris

    target = argv[1]
    with atheris.instrument_imports(include=["streamer", "ruamel", "pydantic"]):
        if target == "decode":
            from streamer.bench.fuzz_decode import DECODERS, NOW, contract

            def one(data: bytes) -> None:
                for decoder in DECODERS:
                    problem = contract(decoder.decode(data, NOW), decoder)
                    if problem is not None:
                        raise AssertionError(problem)

        else:
            # imported here, not lazily by Target.check, so that they are instrumented
            import streamer.events.decode
            import streamer.spec.loader
            import streamer.windows.units  # noqa: F401
            from streamer.bench.fuzz_definitions import Target

            loader = Target()
            tally = Tally("definitions")

            def one(data: bytes) -> None:
                problem = loader.check(data, tally, "atheris")
                if problem is not None:
                    raise AssertionError(problem)
                if tally.crash_count:
                    raise AssertionError(tally.crashes[-1].trace or tally.crashes[-1].what)

    atheris.Setup([argv[0], *argv[2:]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
