"""Every example tree in definitions/ is valid and passes the checklist."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.cli import main
from streamer.spec.loader import load_definitions
from streamer.spec.model import Input, Tree

DEFINITIONS = Path(__file__).parents[2] / "definitions"
EXAMPLES = sorted(DEFINITIONS.glob("*.yaml"))
NEW_EXAMPLES = ("netflix", "instacart", "b2b_collaboration", "publisher")


def test_the_examples_are_all_there() -> None:
    names = {path.stem for path in EXAMPLES}
    assert {"education", "learning_users", *NEW_EXAMPLES} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates_under_strict(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--strict", str(path)]) == 0, capsys.readouterr().out


def test_examples_validate_together() -> None:
    """Cross-file rules: one tree per product, unique tree names."""
    result = load_definitions([DEFINITIONS])
    assert [i for i in result.issues if i.severity != "info"] == []
    assert len(result.trees) == len(EXAMPLES)


@pytest.mark.parametrize("stem", NEW_EXAMPLES)
def test_new_examples_are_complete_metric_systems(stem: str) -> None:
    result = load_definitions([DEFINITIONS / f"{stem}.yaml"])
    assert result.issues == []  # not even an info
    tree: Tree = result.trees[0].tree
    assert 3 <= len(tree.inputs) <= 5
    assert all(isinstance(m, Input) and m.owner for m in tree.inputs)
    assert tree.guardrails and all(g.owner for g in tree.guardrails)
    assert tree.kpi is not None


def test_examples_use_the_measures_the_playbook_describes() -> None:
    def tree(stem: str) -> Tree:
        return load_definitions([DEFINITIONS / f"{stem}.yaml"]).trees[0].tree

    netflix = tree("netflix").north_star.measure
    assert netflix.kind == "conversion" and netflix.min_events == 3 and netflix.within == 3600
    instacart = tree("instacart").north_star
    assert instacart.measure.kind == "sum" and instacart.window == 30 * 86400
    assert "on_time" in instacart.measure.where
    b2b = tree("b2b_collaboration").north_star.measure
    assert b2b.kind == "entities" and b2b.min_events == 2
    assert b2b.group is not None and (b2b.group.by, b2b.group.min_entities) == ("group.team", 5)
    publisher = tree("publisher").north_star
    assert publisher.measure.kind == "entities" and publisher.measure.min_events == 24
    assert publisher.window == 84 * 86400


def test_reference_trees_keep_their_metric_names() -> None:
    education = load_definitions([DEFINITIONS / "education.yaml"]).trees[0].tree
    assert [m.name for _, m in education.metrics()] == [
        "weekly_learning_minutes",
        "weekly_active_learners",
        "minutes_per_learner",
        "learning_days_per_learner",
        "time_to_first_lesson_p50_seconds",
        "weekly_learner_retention",
        "lesson_abandon_rate",
        "refund_rate",
        "paid_conversions",
    ]
    learning = load_definitions([DEFINITIONS / "learning_users.yaml"]).trees[0].tree
    assert [m.name for _, m in learning.metrics()] == [
        "weekly_learning_users",
        "broadcasted_learnings",
        "consumption_of_learnings",
        "activated_organizations",
        "weekly_sharer_retention",
    ]
