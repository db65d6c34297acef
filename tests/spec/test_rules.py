"""Cross-object rules, each on an edited copy of the education tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.spec.issues import Issue
from streamer.spec.loader import load_definitions
from streamer.spec.model import RatioMeasure
from streamer.spec.rules import guarded, references, span

ROOT = Path(__file__).parents[2]
EDUCATION = ROOT / "definitions" / "education.yaml"

SUPPORTING = """
supporting:
  - name: a
    title: A
    description: A.
    unit: ratio
    window: 7d
    measure: {kind: ratio, numerator: b, denominator: weekly_active_learners}
  - name: b
    title: B
    description: B.
    unit: ratio
    window: 7d
    measure: {kind: ratio, numerator: c, denominator: weekly_active_learners}
  - name: c
    title: C
    description: C.
    unit: ratio
    window: 7d
    measure: {kind: ratio, numerator: a, denominator: weekly_active_learners}
"""


def tree_with(
    tmp_path: Path, *edits: tuple[str, str], append: str = "", name: str = "t.yaml"
) -> Path:
    text = EDUCATION.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text + append)
    return path


def errors(path: Path) -> list[Issue]:
    return load_definitions([path]).errors


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    hits = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if needle in line]
    return hits[nth - 1]


def test_the_reference_trees_break_no_rule() -> None:
    assert load_definitions([ROOT / "definitions"]).errors == []


def test_metric_names_are_unique(tmp_path: Path) -> None:
    path = tree_with(tmp_path, ("name: paid_conversions", "name: refund_rate"))
    (issue,) = errors(path)
    assert (issue.rule, issue.line, issue.metric) == (
        "unique-names",
        line_of(path, "name: refund_rate", 2),
        "refund_rate",
    )
    assert (
        issue.hint
        == f"first defined on line {line_of(path, 'name: refund_rate')}; rename one of them"
    )


def test_ratio_reference_must_name_a_metric_of_the_tree(tmp_path: Path) -> None:
    path = tree_with(
        tmp_path,
        (
            "denominator: weekly_active_learners\n\n  - name: learning_days",
            "denominator: weekly_active_learner\n\n  - name: learning_days",
        ),
    )
    (issue,) = errors(path)
    assert issue.rule == "ratio-reference"
    lines = path.read_text().splitlines()
    assert (
        lines[issue.line - 1 if issue.line else 0].strip() == "denominator: weekly_active_learner"
    )
    assert issue.hint is not None and issue.hint.startswith(
        "did you mean `weekly_active_learners`?"
    )


def test_a_ratio_may_not_refer_to_itself(tmp_path: Path) -> None:
    path = tree_with(
        tmp_path, ("numerator: weekly_learning_minutes", "numerator: minutes_per_learner")
    )
    (issue,) = errors(path)
    assert (issue.rule, issue.line) == (
        "ratio-cycle",
        line_of(path, "numerator: minutes_per_learner"),
    )
    assert issue.message == "`numerator` refers to the metric itself"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("numerator: weekly_learning_minutes", "numerator: weekly_active_learners"),
        (
            "numerator: {kind: count, event: refund_issued}",
            "numerator: {kind: count, event: subscription_purchased}",
        ),
    ],
)
def test_a_ratio_of_something_to_itself_is_an_error(tmp_path: Path, old: str, new: str) -> None:
    path = tree_with(tmp_path, (old, new))
    (issue,) = errors(path)
    assert issue.rule == "ratio-self"
    assert "to itself is always 1" in issue.message


def test_a_reference_cycle_is_reported_once_naming_it(tmp_path: Path) -> None:
    path = tree_with(tmp_path, append=SUPPORTING)
    (issue,) = errors(path)
    assert issue.rule == "ratio-cycle" and issue.metric == "a"
    assert issue.message == "ratio references form a cycle: a -> b -> c -> a"
    assert issue.line == line_of(path, "measure: {kind: ratio, numerator: b")


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("12h", "window 12h is shorter than the tree's resolution 1d"),
        ("36h", "window 36h is not a whole multiple of the resolution 1d"),
    ],
)
def test_windows_are_whole_multiples_of_the_resolution(
    tmp_path: Path, window: str, message: str
) -> None:
    path = tree_with(
        tmp_path,
        ("  window: 7d\n  owner: payments-squad", f"  window: {window}\n  owner: payments-squad"),
    )
    (issue,) = errors(path)
    assert (issue.rule, issue.metric, issue.message) == (
        "window-resolution",
        "paid_conversions",
        message,
    )
    assert issue.line == line_of(path, f"window: {window}")


def test_a_finer_resolution_accepts_every_multiple(tmp_path: Path) -> None:
    path = tree_with(
        tmp_path,
        ("resolution: 1d", "resolution: 1h"),
        ("  window: 7d\n  owner: payments-squad", "  window: 36h\n  owner: payments-squad"),
    )
    assert errors(path) == []


def test_per_day_needs_buckets_within_utc_days(tmp_path: Path) -> None:
    path = tree_with(tmp_path, ("resolution: 1d", "resolution: 7h"))  # 7d = 24 x 7h
    (issue,) = errors(path)
    assert (issue.rule, issue.line) == ("window-resolution", line_of(path, "resolution: 7h"))
    assert issue.metric == "learning_days_per_learner"


def test_lateness_covers_windows_and_baselines(tmp_path: Path) -> None:
    path = tree_with(tmp_path, ("resolution: 1d\n", "resolution: 1d\nlateness: 14d\n"))
    (issue,) = errors(path)
    assert issue.rule == "horizon" and issue.line == line_of(path, "lateness: 14d")
    # retention reads two windows, plus one window of baseline: 21 days
    assert "lateness 14d is shorter than the 21d" in issue.message
    ok = tree_with(
        tmp_path, ("resolution: 1d\n", "resolution: 1d\nlateness: 21d\n"), name="ok.yaml"
    )
    assert errors(ok) == []


def test_dedupe_horizon_covers_a_bucket(tmp_path: Path) -> None:
    path = tree_with(tmp_path, ("resolution: 1d\n", "resolution: 1d\ndedupe_horizon: 1h\n"))
    (issue,) = errors(path)
    assert (issue.rule, issue.line) == ("horizon", line_of(path, "dedupe_horizon: 1h"))


def test_breakdown_only_on_count_sum_and_distinct(tmp_path: Path) -> None:
    breakdown = "    breakdown: {property: prop.platform}\n"
    bad = tree_with(tmp_path, ("    dimension: depth\n", "    dimension: depth\n" + breakdown))
    (issue,) = errors(bad)
    assert (issue.rule, issue.metric) == ("breakdown", "minutes_per_learner")
    assert issue.line == line_of(bad, "breakdown: {property: prop.platform}")
    assert "ratio measure" in issue.message
    good = tree_with(
        tmp_path,
        ("    dimension: breadth\n", "    dimension: breadth\n" + breakdown),
        name="g.yaml",
    )
    assert errors(good) == []


def test_steps_name_an_event(tmp_path: Path) -> None:
    path = tree_with(tmp_path, ("start: {event: signed_up}", "start: {event: ' '}"))
    (issue,) = errors(path)
    assert (issue.rule, issue.line) == ("step-events", line_of(path, "start: {event: ' '}"))
    assert issue.message == "`start` names no event"


def test_two_trees_for_one_product_are_an_error_on_both(tmp_path: Path) -> None:
    first = tree_with(tmp_path, name="one.yaml")
    second = tree_with(tmp_path, ("tree: education", "tree: education_two"), name="two.yaml")
    result = load_definitions([first, second])
    assert {(i.file, i.line, i.rule) for i in result.errors} == {
        (first, line_of(first, "product:"), "one-north-star"),
        (second, line_of(second, "product:"), "one-north-star"),
    }
    assert f"{second}:{line_of(second, 'product:')}" in result.errors[0].message


def test_two_trees_with_one_name_are_an_error_on_both(tmp_path: Path) -> None:
    first = tree_with(tmp_path, name="one.yaml")
    second = tree_with(tmp_path, ("product: Lingo Academy", "product: Lingo Kids"), name="two.yaml")
    result = load_definitions([first, second])
    assert sorted((i.file.name, i.rule) for i in result.errors) == [
        ("one.yaml", "unique-tree-names"),
        ("two.yaml", "unique-tree-names"),
    ]


def test_references_include_nested_inline_ratios() -> None:
    measure = RatioMeasure.model_validate(
        {
            "kind": "ratio",
            "numerator": "a",
            "denominator": {
                "kind": "ratio",
                "numerator": {"kind": "count", "event": "x"},
                "denominator": "b",
            },
        }
    )
    assert references(measure) == ["a", "b"]


def test_guarded_turns_a_crash_into_an_issue() -> None:
    def broken(subject: int) -> list[Issue]:
        return [Issue("error", Path("x"), 1, "", str(1 // subject))]

    (issue,) = guarded(broken, 0, Path("f.yaml"))
    assert issue.rule == "internal" and issue.file == Path("f.yaml")
    assert "ZeroDivisionError" in issue.message
    assert guarded(broken, 1, Path("f.yaml"))[0].message == "1"


@pytest.mark.parametrize(
    ("seconds", "text"), [(604800, "7d"), (7257600, "84d"), (43200, "12h"), (90, "90s")]
)
def test_span_writes_days_as_days(seconds: int, text: str) -> None:
    assert span(seconds) == text
