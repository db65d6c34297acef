"""Hostile document shapes (found by fuzzing, docs/reliability.md): deep
nesting and alias bombs are issues, never a RecursionError or an hour of CPU;
trees of a real shape are untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.spec.loader import load_definitions
from streamer.spec.nesting import MAX_DEPTH, MAX_VALUES, expanded_size, too_deep

ROOT = Path(__file__).parents[2]


def flow(depth: int) -> str:
    return "tree: " + "[" * depth + "]" * depth + "\n"


def block(depth: int) -> str:
    return "tree: x\n" + "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "v: 1\n"


def alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [1]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def only_issue(path: Path) -> str:
    result = load_definitions([path])
    assert not result.trees
    (issue,) = result.errors
    assert issue.rule == "yaml" and issue.file == path
    return issue.message


@pytest.mark.parametrize("shape", [flow, block])
@pytest.mark.parametrize("depth", [MAX_DEPTH, 300, 5000])
def test_too_deep_is_an_issue(tmp_path: Path, shape: object, depth: int) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(shape(depth))  # type: ignore[operator]
    message = only_issue(path)
    assert "nested" in message and str(MAX_DEPTH) in message


def test_too_deep_points_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(block(100))
    (issue,) = load_definitions([path]).errors
    # the mapping of depth MAX_DEPTH + 1 starts under key k{MAX_DEPTH - 1}, on line MAX_DEPTH + 2
    assert issue.line == MAX_DEPTH + 2


def test_nesting_up_to_the_limit_goes_on_to_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(block(MAX_DEPTH - 2))
    rules = {issue.rule for issue in load_definitions([path]).errors}
    assert rules == {"schema"}


def test_an_alias_bomb_is_an_issue_and_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(9))  # 9^9 values once expanded: hours before the fix
    assert "expands to more than" in only_issue(path)


def test_expanded_size_counts_every_alias_use() -> None:
    from ruamel.yaml import YAML

    document = YAML(typ="rt", pure=True).load(alias_bomb(3))
    # a0: list + 1 scalar = 2; a_i = 1 + 9 * size(a_{i-1}); root = 1 + sizes
    sizes = [2]
    for _ in range(3):
        sizes.append(1 + 9 * sizes[-1])
    assert expanded_size(document) == 1 + sum(sizes)
    assert expanded_size(document, limit=sizes[-1]) is None


def test_real_trees_are_far_from_the_limits() -> None:
    from ruamel.yaml import YAML

    for path in sorted((ROOT / "definitions").glob("*.yaml")):
        document = YAML(typ="rt", pure=True).load(path.read_text())
        assert too_deep(document, limit=12) is None, path
        size = expanded_size(document)
        assert size is not None and size < MAX_VALUES // 10, path


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("? {a: {b: 1}}\n: x\n", 1),  # a flow mapping holding a mapping, as a key
        ("tree: x\nsource:\n  ? [a, {b: c}]\n  : 1\n", 3),
        ("? [a, [b]]\n: 1\n", 1),
    ],
)
def test_a_key_holding_a_mapping_or_list_is_an_issue(tmp_path: Path, text: str, line: int) -> None:
    # was TypeError (unhashable CommentedMap) out of the duplicate-key check; found by atheris
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    (issue,) = load_definitions([path]).errors
    assert issue.rule == "yaml" and issue.line == line
    assert "nested mapping or list" in issue.message
