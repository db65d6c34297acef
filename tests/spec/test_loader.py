"""The loader: YAML with lines, pydantic errors as located issues, recovery."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from streamer.spec import rules
from streamer.spec.issues import DefinitionError, Issue
from streamer.spec.loader import LoadedTree, load_definitions, load_tree
from streamer.spec.model import MEASURE_KINDS, Tree

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parents[2]
EDUCATION = ROOT / "definitions" / "education.yaml"


def markers(path: Path, tag: str = "MISTAKE") -> set[tuple[Path, int, str]]:
    """``(file, line, rule)`` for every ``# TAG: rule ...`` comment in the file."""
    found = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = re.search(rf"#\s*{tag}:\s*(.+)$", line)
        if match and not line.lstrip().startswith("#"):
            found |= {(path, number, rule) for rule in match.group(1).split()}
    return found


def write(tmp_path: Path, text: str, name: str = "tree.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def errors_of(path: Path) -> list[Issue]:
    return load_definitions([path]).errors


def edited(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the education tree with one text edit (which must apply)."""
    text = EDUCATION.read_text()
    assert old in text
    return write(tmp_path, text.replace(old, new, 1), "education.yaml")


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if needle in line)


# --------------------------------------------------------------------------- all at once


def test_seeded_mistakes_are_all_reported_at_once_with_file_and_line() -> None:
    files = [DATA / "seeded_mistakes.yaml", DATA / "seeded_same_product.yaml"]
    result = load_definitions(files)
    found = {(issue.file, issue.line, issue.rule) for issue in result.errors}
    expected = markers(files[0]) | markers(files[1])
    assert len(markers(files[0])) == 6  # unknown key, bad duration, 3 rules, product
    assert found == expected
    # The broken file yields no tree; the other one passed the schema.
    assert [loaded.tree.tree for loaded in result.trees] == ["seeded_again"]
    assert not load_definitions(files[1:]).errors  # and is fine on its own


def test_seeded_messages_read_well() -> None:
    text = "\n".join(i.format() for i in load_definitions([DATA / "seeded_mistakes.yaml"]).issues)
    assert "seeded_mistakes.yaml:23: error: metric `weekly_learners`: unknown key `ownr`" in text
    assert "did you mean `owner`?" in text
    assert "`denominator` refers to unknown metric `weekly_learnerz`" in text
    assert "invalid duration '7x'" in text
    assert "window 12h is shorter than the tree's resolution 1d" in text
    assert "ratio references form a cycle: ping -> pong -> ping" in text


# --------------------------------------------------------------------------- YAML layer


def test_duplicate_keys_are_all_errors_with_their_lines(tmp_path: Path) -> None:
    path = edited(tmp_path, "  unit: minutes\n", "  unit: minutes\n  unit: hours\n")
    text = path.read_text().replace("resolution: 1d\n", "resolution: 1d\nresolution: 2d\n")
    path.write_text(text)
    issues = errors_of(path)
    assert [(i.line, i.message) for i in issues] == [
        (line_of(path, "resolution: 2d"), "duplicate key `resolution`"),
        (line_of(path, "unit: hours"), "duplicate key `unit`"),
    ]
    assert issues[1].hint == f"first given on line {line_of(path, 'unit: minutes')}; keep one"


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "tree: x\nnorth_star: [unclosed\nproduct: y\n")
    (issue,) = errors_of(path)
    assert issue.rule == "yaml" and issue.line is not None
    assert issue.message.startswith("invalid YAML")


@pytest.mark.parametrize(("text", "found"), [("", "an empty file"), ("- a\n- b\n", "a Commented")])
def test_a_file_must_hold_one_mapping(tmp_path: Path, text: str, found: str) -> None:
    (issue,) = errors_of(write(tmp_path, text))
    assert found in issue.message


def test_missing_path_and_empty_directory_are_errors(tmp_path: Path) -> None:
    result = load_definitions([tmp_path / "nope.yaml", tmp_path])
    assert [i.message for i in result.errors] == [
        "no *.yaml or *.yml files in directory",
        "no such file or directory",
    ]


def test_a_file_given_twice_is_loaded_once() -> None:
    result = load_definitions([EDUCATION, EDUCATION.parent, EDUCATION])
    assert result.files.count(EDUCATION) == 1
    assert result.errors == []


def test_directories_are_searched_sorted_for_yaml_and_yml(tmp_path: Path) -> None:
    text = EDUCATION.read_text()
    write(tmp_path, text, "b.yml")
    write(
        tmp_path,
        text.replace("Lingo Academy", "Other").replace("tree: education", "tree: other"),
        "a.yaml",
    )
    write(tmp_path, "not: definitions", "notes.txt")
    result = load_definitions([tmp_path])
    assert [f.name for f in result.files] == ["a.yaml", "b.yml"]
    assert [t.tree.tree for t in result.trees] == ["other", "education"]
    assert result.ok


# --------------------------------------------------------------------------- schema layer


def test_unknown_key_points_at_the_key_and_lists_allowed_keys(tmp_path: Path) -> None:
    path = edited(tmp_path, "  target: 50000\n", "  target: 50000\n  targt: 1\n")
    (issue,) = errors_of(path)
    assert issue.line == line_of(path, "targt")
    assert issue.metric == "weekly_learning_minutes"
    assert issue.path == "north_star.targt"
    assert issue.message == "unknown key `targt`"
    assert issue.hint is not None and "did you mean `target`?" in issue.hint
    assert "min_improvement" in issue.hint and "window" in issue.hint


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = edited(tmp_path, "game: attention\n", "game: attention\nowner: me\n")
    (issue,) = errors_of(path)
    assert (issue.line, issue.metric, issue.message) == (
        line_of(path, "owner: me"),
        None,
        "unknown key `owner`",
    )
    assert issue.hint is not None and "north_star" in issue.hint


def test_unknown_measure_kind_lists_the_kinds(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        "    kind: count\n    event: subscription_purchased",
        "    kind: avg\n    event: subscription_purchased",
    )
    (issue,) = errors_of(path)
    assert issue.line == line_of(path, "kind: avg")
    assert issue.metric == "paid_conversions"
    assert issue.message == "`measure`: unknown measure kind `avg`"
    assert issue.hint == "kind is one of: " + ", ".join(MEASURE_KINDS)


def test_measure_without_kind(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        "      denominator: {kind: count, event: subscription_purchased}",
        "      denominator: {event: subscription_purchased}",
    )
    (issue,) = errors_of(path)
    assert issue.line == line_of(path, "denominator: {event: subscription_purchased}")
    assert issue.message == "`measure.denominator`: a measure needs a `kind:`"


def test_error_inside_an_inline_measure_skips_union_tags(tmp_path: Path) -> None:
    # pydantic's loc is guardrails.1.measure.ratio.numerator.tagged-union[...].count.evnt
    path = edited(
        tmp_path,
        "numerator: {kind: count, event: lesson_abandoned}",
        "numerator: {kind: count, evnt: lesson_abandoned}",
    )
    issues = errors_of(path)
    assert {(i.line, i.metric, i.path) for i in issues} == {
        (line_of(path, "evnt"), "lesson_abandon_rate", "guardrails[1].measure.numerator.evnt"),
        (line_of(path, "evnt"), "lesson_abandon_rate", "guardrails[1].measure.numerator.event"),
    }
    messages = sorted(i.message for i in issues)
    assert messages == [
        "missing required key `measure.numerator.event`",
        "unknown key `measure.numerator.evnt`",
    ]


def test_a_scalar_where_a_metric_or_measure_is_expected_is_one_issue(tmp_path: Path) -> None:
    path = edited(tmp_path, "numerator: {kind: count, event: refund_issued}", "numerator: 5")
    (issue,) = errors_of(path)
    assert issue.line == line_of(path, "numerator: 5")
    assert issue.message == (
        "`measure.numerator`: expected a metric name or an inline measure (a mapping with `kind:`), got 5"
    )


def test_condition_errors_use_aliases_and_lines(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        "    event: subscription_purchased\n\nalerting",
        "    event: subscription_purchased\n    where:\n      plan:\n        in: pro\n\nalerting",
    )
    (issue,) = errors_of(path)
    assert issue.line == line_of(path, "in: pro")
    assert issue.path == "kpi.measure.where.plan.in"


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        (
            "dimension: depth",
            "dimension: width",
            "width",
            "`dimension`: expected 'breadth', 'depth', 'frequency' or 'efficiency', got 'width'",
        ),
        (
            "name: refund_rate",
            "name: Refund-Rate",
            "Refund-Rate",
            "`name`: 'Refund-Rate' is not a valid name",
        ),
        (
            "      entity: user\n\n  - name: minutes",
            "      entity: usr\n\n  - name: minutes",
            "entity: usr",
            "`measure.entity`: 'usr' is not a field reference",
        ),
        (
            "    tolerance: 0.05",
            "    tolerance: lots",
            "lots",
            "`tolerance`: input should be a valid number, unable to parse string as a number, got 'lots'",
        ),
        (
            "    for: 12h\n    confidence: 0.99\n    measure:\n      kind: retention",
            "    for: soon\n    confidence: 0.99\n    measure:\n      kind: retention",
            "for: soon",
            "`for`: invalid duration 'soon'",
        ),
        (
            "  shape: amplitude",
            "  shape: generic",
            "source:",
            "`source`: give `mapping:` exactly when shape is 'generic'",
        ),
        ("  unit: subscriptions\n", "", "name: paid_conversions", "missing required key `unit`"),
    ],
)
def test_every_schema_error_is_located(
    tmp_path: Path, old: str, new: str, needle: str, message: str
) -> None:
    path = edited(tmp_path, old, new)
    (issue,) = errors_of(path)
    expected_line = line_of(path, "kpi:") if "missing" in message else line_of(path, needle)
    assert issue.line == expected_line
    assert issue.message.startswith(message)


def test_format_matches_the_documented_shape(tmp_path: Path) -> None:
    path = edited(tmp_path, "  target: 50000\n", "  target: 50000\n  targt: 1\n")
    (issue,) = errors_of(path)
    assert re.fullmatch(
        rf"{re.escape(str(path))}:\d+: error: metric `weekly_learning_minutes`: unknown key `targt` \(hint: .+\)",
        issue.format(),
    )


def test_rules_still_run_past_a_broken_metric_but_not_past_a_broken_north_star(
    tmp_path: Path,
) -> None:
    # A broken input is cut out; references to it are not reported again.
    path = edited(tmp_path, "    dimension: breadth\n", "    dimension: width\n")
    text = path.read_text().replace("  target: 50000\n", "  target: 50000\n  window: 12h\n", 1)
    text = text.replace("  window: 7d\n  target", "  target", 1)
    path.write_text(text)
    assert {i.rule for i in errors_of(path)} == {"schema", "window-resolution"}
    # A broken North Star leaves nothing sensible to check rules on.
    path = edited(tmp_path, "  min_improvement: 0.02\n", "  min_improvement: -1\n")
    assert {i.rule for i in errors_of(path)} == {"schema"}


# --------------------------------------------------------------------------- results and API


def test_load_tree_returns_the_tree() -> None:
    tree = load_tree(EDUCATION)
    assert isinstance(tree, Tree)
    assert tree.north_star.name == "weekly_learning_minutes"


def test_load_tree_raises_with_every_error(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError) as caught:
        load_tree(DATA / "seeded_mistakes.yaml")
    assert len(caught.value.issues) == 5  # the product clash needs the second file
    assert str(caught.value).count("\n") == 4
    with pytest.raises(DefinitionError):
        load_tree(tmp_path)


def test_loaded_tree_knows_where_metrics_are() -> None:
    (loaded,) = load_definitions([EDUCATION]).trees
    assert loaded.metric_line("refund_rate") == line_of(EDUCATION, "name: refund_rate")
    assert loaded.metric_path("paid_conversions") == ("kpi",)
    assert loaded.metric_path("nope") is None
    roles = [role for role, _, _ in loaded.located_metrics()]
    assert roles == ["north_star"] + ["input"] * 4 + ["guardrail"] * 3 + ["kpi"]


def test_a_crashing_rule_becomes_an_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    def exploding(loaded: LoadedTree) -> list[Issue]:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(rules, "TREE_RULES", (*rules.TREE_RULES, exploding))
    result = load_definitions([EDUCATION])
    (issue,) = result.errors
    assert issue.rule == "internal" and issue.file == EDUCATION
    assert "rule `exploding` crashed (ZeroDivisionError: boom)" in issue.message
    assert len(result.trees) == 1


def test_a_file_missing_required_keys_reports_instead_of_crashing(tmp_path: Path) -> None:
    path = tmp_path / "bare.yaml"
    path.write_text("tree: Not A Name\n")
    result = load_definitions([path])
    messages = " ".join(i.message for i in result.issues)
    assert result.errors and "north_star" in messages and "inputs" in messages
