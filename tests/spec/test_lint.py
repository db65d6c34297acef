"""The North Star checklist lint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamer.spec.issues import Issue
from streamer.spec.loader import load_definitions

DATA = Path(__file__).parent / "data" / "lint"
ROOT = Path(__file__).parents[2]
EDUCATION = ROOT / "definitions" / "education.yaml"
LINT_FILES = sorted(DATA.glob("*.yaml"))


def markers(path: Path) -> set[tuple[int, str]]:
    """``(line, rule)`` for every ``# LINT: rule ...`` comment after YAML text."""
    found = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = re.search(r"#\s*LINT:\s*(.+)$", line)
        if match and not line.lstrip().startswith("#"):
            found |= {(number, rule) for rule in match.group(1).split()}
    return found


def lint_issues(path: Path) -> list[Issue]:
    result = load_definitions([path])
    assert result.errors == [], "lint examples must be valid definitions"
    return [i for i in result.issues if i.severity != "error"]


@pytest.mark.parametrize("path", LINT_FILES, ids=lambda p: p.name)
def test_lint_examples_warn_exactly_where_marked(path: Path) -> None:
    assert {(i.line, i.rule) for i in lint_issues(path)} == markers(path)


def test_every_lint_rule_has_an_example_and_a_checklist_hint() -> None:
    issues = [i for path in LINT_FILES for i in lint_issues(path)]
    assert {i.rule for i in issues} == {
        "vanity-north-star",
        "revenue-north-star",
        "input-count",
        "no-guardrail",
        "input-owner",
        "input-unrelated",
        "no-kpi",
    }
    for issue in issues:
        assert issue.hint and len(issue.hint) > 40, issue.rule
    assert {i.severity for i in issues if i.rule == "no-kpi"} == {"info"}
    assert {i.severity for i in issues if i.rule != "no-kpi"} == {"warning"}


def edited(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    text = EDUCATION.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "education.yaml"
    path.write_text(text)
    return path


def rules_of(path: Path) -> set[str]:
    return {i.rule for i in lint_issues(path)}


@pytest.mark.parametrize(
    "title",
    [
        "Weekly DAU",
        "Registered users",
        "Sign-ups this week",
        "Page views",
        "App downloads",
        "Time on page",
        "Installs",
    ],
)
def test_vanity_words_in_the_north_star(tmp_path: Path, title: str) -> None:
    path = edited(tmp_path, ("  title: Weekly learning minutes", f"  title: {title}"))
    assert rules_of(path) == {"vanity-north-star"}


@pytest.mark.parametrize("event", ["signed_up", "page_viewed", "app_opened", "app_downloaded"])
def test_a_plain_count_of_arrival_events_is_vanity(tmp_path: Path, event: str) -> None:
    path = edited(
        tmp_path,
        (
            "    kind: sum\n    event: lesson_completed\n    property: minutes",
            f"    kind: count\n    event: {event}",
        ),
    )
    assert "vanity-north-star" in rules_of(path)


def test_vanity_words_are_matched_as_words(tmp_path: Path) -> None:
    # "downloaded" lessons and "installments" are not downloads or installs
    path = edited(
        tmp_path,
        (
            "  description: Minutes of lessons completed",
            "  description: Minutes of installments and downloaded lessons completed",
        ),
    )
    assert rules_of(path) == set()


@pytest.mark.parametrize("title", ["Weekly revenue", "Monthly MRR", "GMV", "Sales"])
def test_revenue_words_in_the_north_star(tmp_path: Path, title: str) -> None:
    path = edited(tmp_path, ("  title: Weekly learning minutes", f"  title: {title}"))
    assert rules_of(path) == {"revenue-north-star"}


def test_more_than_five_inputs(tmp_path: Path) -> None:
    extra = """
  - name: extra_{n}
    title: Extra {n}
    description: Extra.
    unit: users
    window: 7d
    dimension: breadth
    owner: growth-squad
    measure: {{kind: distinct, event: lesson_completed}}
"""
    path = edited(
        tmp_path, ("\nguardrails:", "".join(extra.format(n=n) for n in (1, 2)) + "\nguardrails:")
    )
    (issue,) = lint_issues(path)
    assert issue.rule == "input-count" and issue.message.startswith("6 input metrics")


def test_inputs_relate_through_ratio_references(tmp_path: Path) -> None:
    # minutes_per_learner reads no event itself: only through its references
    assert lint_issues(EDUCATION) == []


def test_lint_can_be_skipped() -> None:
    assert load_definitions([DATA], lint_checks=False).issues == []
