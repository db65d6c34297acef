"""What every fuzz target shares: the tally of inputs, outcomes and crashes,
the budget (seconds or inputs), and byte-level mutations.

A *crash* is either an exception escaping the code under test or a result
that breaks its contract (a rejection without a known reason, an Event with
an empty user, an accepted tree that does not compile, ...). Outcomes count
what the code answered: a rejection reason, ``event``, ``accepted``, or the
rules of the issues a rejected definitions file got.
"""

from __future__ import annotations

import hashlib
import random
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_KEPT = 20
"""Crashes kept with their input and traceback (all are counted)."""


@dataclass
class Crash:
    engine: str
    kind: str  # "exception" | "contract"
    what: str
    input: bytes
    trace: str

    def as_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "kind": self.kind, "what": self.what,
                "input": self.input[:300].decode("utf-8", "backslashreplace"),
                "trace": self.trace[-1500:]}


@dataclass
class Tally:
    target: str
    inputs: Counter[str] = field(default_factory=Counter)
    """Inputs tried, by engine (one input = one call of the code under test)."""
    outcomes: Counter[str] = field(default_factory=Counter)
    crash_count: int = 0
    crashes: list[Crash] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    artifacts: Path | None = None
    _seen: set[str] = field(default_factory=set)

    def crash(self, engine: str, kind: str, what: str, raw: bytes, trace: str = "") -> None:
        self.crash_count += 1
        digest = hashlib.sha1(raw).hexdigest()[:12]
        signature = f"{kind}:{what[:80]}"
        if signature in self._seen or len(self.crashes) >= MAX_KEPT:
            return
        self._seen.add(signature)
        self.crashes.append(Crash(engine, kind, what, raw, trace))
        if self.artifacts is not None:
            self.artifacts.mkdir(parents=True, exist_ok=True)
            (self.artifacts / f"{self.target}-{digest}.input").write_bytes(raw)
            (self.artifacts / f"{self.target}-{digest}.txt").write_text(f"{kind}: {what}\n{trace}")

    def exception(self, engine: str, raw: bytes, exc: BaseException) -> None:
        what = f"{type(exc).__name__}: {exc}"[:300]
        self.crash(engine, "exception", what, raw, "".join(traceback.format_exception(exc)))

    @property
    def total(self) -> int:
        return sum(self.inputs.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "inputs": self.total, "inputs_by_engine": dict(self.inputs),
            "seconds_by_engine": {k: round(v, 1) for k, v in self.seconds.items()},
            "crashes": self.crash_count, "crash_examples": [c.as_dict() for c in self.crashes],
            "outcomes": dict(self.outcomes.most_common()),
        }


class BudgetSpent(Exception):
    """Raised inside a hypothesis test to end its run as soon as the budget is
    spent (generation only, no shrinking: hypothesis re-raises it at once)."""


@dataclass
class Budget:
    """Stop after ``seconds`` or after ``inputs`` inputs, whichever is given."""

    seconds: float | None = None
    inputs: int | None = None
    started: float = field(default_factory=time.monotonic)
    start_count: int = 0

    def share(self, fraction: float, tally: Tally) -> Budget:
        """A budget for one engine: ``fraction`` of this one, starting now."""
        return Budget(
            None if self.seconds is None else self.seconds * fraction,
            None if self.inputs is None else max(1, int(self.inputs * fraction)),
            time.monotonic(), tally.total,
        )

    def done(self, tally: Tally) -> bool:
        """True once the budget is spent (never before this engine's first input)."""
        if tally.total == self.start_count:
            return False
        if self.inputs is not None and tally.total - self.start_count >= self.inputs:
            return True
        return self.seconds is not None and time.monotonic() - self.started >= self.seconds


# --------------------------------------------------------------------------- byte mutations

TOKENS = (
    b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"null", b"true", b"-", b"0", b"-0",
    b"1e309", b"-1e309", b"1e-400", b"9223372036854775808", b"18446744073709551616",
    b"99999999999999999999999", b"0.0000001", b'"\\ud800"', b'"\\u0000"', b'""', b"{}", b"[]",
    b"\xff", b"\xc0\xaf", b"\xef\xbb\xbf", b"\t", b"\n", b" ", b"\x00", b"NaN", b"Infinity",
    b'"2024-06-01T00:00:00Z"', b'"9999-12-31T23:59:59.999-23:59"', b'"0000-01-01T00:00:00Z"',
    b'"1717200000"', b'"1717200000.5"', b'"\xd9\xa1\xd9\xa2"', b'"1_000"', b'"1e3"',
)


def mutate_bytes(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """One to four random edits: flip/set/insert/delete/duplicate bytes,
    insert a JSON-ish token, or splice with another seed."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randint(0, len(buf))
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and buf:
            end = min(len(buf), pos + rng.randint(1, 16))
            del buf[pos:end]
        elif op == 4 and buf:
            end = min(len(buf), pos + rng.randint(1, 32))
            buf[pos:pos] = buf[pos:end]
        elif op in (5, 6):
            buf[pos:pos] = rng.choice(TOKENS)
        elif others:
            other = rng.choice(others)
            cut = rng.randint(0, len(other))
            buf = buf[:pos] + bytearray(other[cut:])
    return bytes(buf)
