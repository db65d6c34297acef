"""Fuzz target ``definitions``: ``load_definitions`` on one file, then what a
worker does with an accepted tree (``compile_tree``, a ``Decoder`` for its
source). One input = one file loaded. The contract checked:

- nothing raises (a bad file is issues, never a traceback);
- every issue names this file, a severity, a rule and a non-empty message,
  and a line that is None or inside the file;
- a file that yields no tree has at least one error (a rejection with a
  reason);
- an accepted tree compiles and its source gets a decoder.

Seeds: definitions/*.yaml and tests/spec/data/*.yaml, whole and cut down to
the North Star plus one or two other metrics (small files load ~10x faster).
Engines: ``hypothesis`` draws structured edits of a seed (a path into the
document, an operation, a value from a strategy of near-valid and odd YAML
values) and ``mutate`` applies random text edits (lines deleted, duplicated,
re-indented, YAML tokens and bytes inserted) to seeds and edited seeds.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import orjson

from streamer.bench.fuzz_core import Budget, BudgetSpent, Tally, mutate_bytes

ROOT = Path(__file__).resolve().parents[2]
SEED_DIRS = (ROOT / "definitions", ROOT / "tests" / "spec" / "data")

ODD: tuple[Any, ...] = (
    None, "", " ", 0, -1, 1, 2**63, 1e308, -0.0, 0.5, True, False, [], {}, [[]], {"a": None},
    "0s", "1s", "-1d", "1d", "7d", "28d", "1w", "1y", "999999999999d", "1.5h", "P1D", "1d2h", "10",
    "count", "sum", "ratio", "retention", "relational", "percentile", "conversion", "distinct",
    "user", "prop.x", "group.org", "user_prop.plan", "prop.", "prop..x", "Upper", "a" * 70, "x" * 2000,
    "higher_is_better", "amplitude", "segment", "generic", "ms", "iso8601", "previous_window",
    "trailing_average", "items", "groups", "\u0000", "\U0001f600", "<script>", "*alias", "&anchor",
)
KEYS = ("name", "title", "description", "unit", "window", "measure", "kind", "event", "where",
        "numerator", "denominator", "entity", "property", "start", "end", "within", "q", "tolerance",
        "baseline", "periods", "dimension", "owner", "for", "min_sample", "source", "shape", "mapping",
        "topic", "lateness", "dedupe_horizon", "resolution", "kpi", "supporting", "guardrails", "inputs",
        "north_star", "group", "by", "min_entities", "min_events", "item", "created_by", "consumed_by",
        "result", "min_owners", "breakdown", "max_values", "per_day", "approximate", "alerting",
        "stale_after", "future_skew", "max_event_bytes", "eq", "in", "gt", "exists", "unknown_key")
TOKENS = (b": ", b"- ", b"&a ", b"*a", b"<<: *a", b"!!python/object:os.system", b"!!binary", b"{", b"}",
          b"[", b"]", b"'", b'"', b"\t", b"---\n", b"...\n", b"? ", b"|", b">", b"%YAML 1.1\n", b"~",
          b".nan", b".inf", b"1e999", b"0x1F", b"0o17", b"-1d", b"0s", b"2w", b"yes", b"no", b"on",
          b"2024-01-01", b"12:30:00", b"\xef\xbb\xbf", b"\xff", b"#", b"\\", b"!", b"@", b"`", b"\r")


# --------------------------------------------------------------------------- the check


class Target:
    """Writes each input to one scratch file and loads it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="northstar-fuzz-"))
        self.path = self.dir / "tree.yaml"

    def close(self) -> None:
        for p in self.dir.iterdir():
            p.unlink()
        self.dir.rmdir()

    def try_one(self, text: bytes, tally: Tally, engine: str) -> None:
        problem = self.check(text, tally, engine)
        if problem is not None:
            tally.crash(engine, "contract", problem, text)

    def check(self, text: bytes, tally: Tally, engine: str) -> str | None:
        from streamer.events.decode import Decoder
        from streamer.spec.issues import SEVERITIES
        from streamer.spec.loader import load_definitions
        from streamer.windows.units import compile_tree

        self.path.write_bytes(text)
        tally.inputs[engine] += 1
        try:
            result = load_definitions([self.path])
            for issue in result.issues:
                issue.format()
        except Exception as exc:
            tally.exception(engine, text, exc)
            return None
        # read_text() turns \r\n and a lone \r into line breaks, and YAML
        # parsers count a few more (NEL, LS, PS): str.splitlines() knows them all
        lines = len(text.decode("utf-8", "replace").splitlines()) + 1
        for issue in result.issues:
            if issue.file != self.path or issue.severity not in SEVERITIES or not issue.rule:
                return f"malformed issue {issue!r:.200}"
            if not isinstance(issue.message, str) or not issue.message.strip():
                return f"issue without a message (rule {issue.rule})"
            if issue.line is not None and not 1 <= issue.line <= lines:
                return f"issue line {issue.line} outside a file of {lines} lines (rule {issue.rule})"
        errors = [i for i in result.issues if i.severity == "error"]
        if errors:
            for rule in sorted({i.rule for i in errors}):
                tally.outcomes[f"rejected:{rule}"] += 1
            return None
        if not result.trees:
            return "no tree and no error: rejected without a reason"
        try:
            for loaded in result.trees:
                compile_tree(loaded.tree)
                Decoder(loaded.tree.source)
        except Exception as exc:
            tally.exception(engine, text, exc)
            return None
        tally.outcomes["accepted"] += 1
        return None


# --------------------------------------------------------------------------- seeds


def seed_documents() -> list[dict[str, Any]]:
    """Every seed file as plain data, whole and cut down."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    docs: list[dict[str, Any]] = []
    for folder in SEED_DIRS:
        for path in sorted(folder.glob("*.yaml")):
            try:
                doc = yaml.load(path.read_text())
            except Exception:  # a seed that is itself broken YAML is only a text seed
                continue
            if not isinstance(doc, dict):
                continue
            docs.append(doc)
            for keep in (1, 2):
                small = {k: v for k, v in doc.items() if k not in ("inputs", "guardrails", "supporting", "kpi")}
                for role in ("inputs", "guardrails", "supporting"):
                    if isinstance(doc.get(role), list) and doc[role]:
                        small[role] = doc[role][:keep]
                docs.append(small)
                docs.append(_terse(small))
    return docs


def _terse(value: Any) -> Any:
    """``value`` with every title, description and owner shortened to one
    letter: the same structure in a third of the YAML tokens."""
    if isinstance(value, dict):
        return {k: "t" if k in ("title", "description", "owner") and isinstance(v, str) else _terse(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_terse(v) for v in value]
    return value


def hostile_seeds() -> list[bytes]:
    """Shapes that once broke the loader (deep nesting: RecursionError; an
    alias bomb: 9^9 values; a key holding a mapping: TypeError), kept as
    seeds so that their edits stay covered."""
    bomb = ["a0: &a0 [1]", *(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10))]
    return [
        b"tree: " + b"[" * 300 + b"]" * 300 + b"\n",
        ("tree: x\n" + "".join("  " * i + f"k{i}:\n" for i in range(300))).encode(),
        "\n".join(bomb).encode() + b"\n",
        b"tree: x\n? {a: {b: 1}}\n: x\n",  # an unhashable key: TypeError once
    ]


def seed_texts() -> list[bytes]:
    texts = [p.read_bytes() for folder in SEED_DIRS for p in sorted(folder.glob("*.yaml"))]
    return texts + [to_yaml(doc) for doc in seed_documents()] + hostile_seeds()


def to_yaml(value: Any, indent: int = 0) -> bytes:
    """Block-style YAML for plain data, scalars written as JSON (which YAML
    reads back unchanged): fast, and every key on its own line."""
    return _emit(value, indent).encode("utf-8", "surrogatepass")


def _scalar(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return '"?"'


def _emit(value: Any, indent: int) -> str:
    pad = " " * indent
    if isinstance(value, dict) and value:
        out = []
        for k, v in value.items():
            key = _scalar(str(k))
            if isinstance(v, dict | list) and v:
                out.append(f"{pad}{key}:\n{_emit(v, indent + 2)}")
            else:
                out.append(f"{pad}{key}: {_scalar(v)}\n")
        return "".join(out)
    if isinstance(value, list) and value:
        out = []
        for item in value:
            if isinstance(item, dict | list) and item:
                body = _emit(item, indent + 2)
                out.append(f"{pad}-{body[indent + 1:]}" if body.startswith(pad + "  ") else f"{pad}-\n{body}")
            else:
                out.append(f"{pad}- {_scalar(item)}\n")
        return "".join(out)
    return f"{pad}{_scalar(value)}\n"


# --------------------------------------------------------------------------- structured edits


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def edit(doc: Any, op: int, pick: int, value: Any, key: str) -> Any:
    """``doc`` (a deep copy) with one edit at the ``pick``-th path: replace the
    value, delete it, add a key, duplicate a list item, or copy another value there."""
    import copy

    doc = copy.deepcopy(doc)
    paths = _paths(doc)
    path = paths[pick % len(paths)]
    if not path:
        return value if op == 0 else doc
    parent = _get(doc, path[:-1])
    last = path[-1]
    if op == 0:
        parent[last] = value
    elif op == 1:
        del parent[last]
    elif op == 2 and isinstance(parent[last], dict):
        parent[last][key] = value
    elif op == 3 and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    else:
        other = paths[(pick * 7 + 3) % len(paths)]
        if other and other[: len(path)] != path:
            parent[last] = copy.deepcopy(_get(doc, other))
    return doc


def run_hypothesis(budget: Budget, tally: Tally, seed: int) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    docs = sorted(seed_documents(), key=lambda d: len(to_yaml(d)))
    docs = docs[: max(1, len(docs) // 2)]  # the short half: 3-10x faster to load
    values = st.recursive(st.sampled_from(ODD) | st.text(max_size=12) | st.integers() | st.floats(),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(KEYS), c, max_size=3),
                          max_leaves=6)
    edits = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 10_000), values, st.sampled_from(KEYS)),
                     min_size=1, max_size=3)
    target = Target()
    try:
        round_no = 0
        while not budget.done(tally):
            round_no += 1

            @hseed(seed * 1_000_003 + round_no)
            @settings(max_examples=500, database=None, deadline=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(st.integers(0, len(docs) - 1), edits)
            def one(index: int, changes: list[tuple[int, int, Any, str]]) -> None:
                if budget.done(tally):
                    raise BudgetSpent
                doc: Any = docs[index]
                for op, pick, value, key in changes:
                    doc = edit(doc, op, pick, value, key)
                target.try_one(to_yaml(doc), tally, "hypothesis")

            try:
                one()
            except BudgetSpent:
                return
    finally:
        target.close()


def mutate_text(text: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    lines = text.split(b"\n")
    op = rng.randrange(6)
    i = rng.randrange(len(lines))
    if op == 0 and len(lines) > 1:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[i])
    elif op == 2:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:
        lines[i] = b" " * rng.choice((1, 2, 4)) + lines[i] if rng.random() < 0.5 else lines[i].lstrip()
    elif op == 4:
        pos = rng.randint(0, len(lines[i]))
        lines[i] = lines[i][:pos] + rng.choice(TOKENS) + lines[i][pos:]
    else:
        return mutate_bytes(text, rng, others)
    return b"\n".join(lines)


def run_mutate(budget: Budget, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    seeds = seed_texts()
    small = sorted(seeds, key=len)[: max(1, len(seeds) // 2)]  # the short half: 3-10x faster
    target = Target()
    try:
        while not budget.done(tally):
            text = rng.choice(small)
            for _ in range(rng.randint(1, 3)):
                text = mutate_text(text, rng, small)
            target.try_one(text, tally, "mutate")
    finally:
        target.close()
