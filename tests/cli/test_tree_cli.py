"""``northstar tree FILE``: every example renders, readable without a TTY."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from streamer.cli import main
from streamer.cli.tree import describe_measure, render
from streamer.spec.loader import load_definitions
from streamer.spec.model import Input

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "definitions").glob("*.yaml"))


@pytest.mark.parametrize("width", [None, 200])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_renders(
    capsys: pytest.CaptureFixture[str], path: Path, width: int | None
) -> None:
    argv = ["tree", str(path)] + ([] if width is None else ["--width", str(width)])
    assert main(argv) == 0
    out = capsys.readouterr().out
    tree = load_definitions([path]).trees[0].tree
    assert "\x1b[" not in out  # captured output is not a terminal: no escape codes
    for _, metric in tree.metrics():
        assert metric.name in out
    for metric in tree.inputs:
        assert isinstance(metric, Input) and metric.owner
        assert metric.owner in out
        assert metric.dimension in out
    assert out.index(tree.north_star.name) < min(out.index(m.name) for m in tree.inputs)
    if tree.guardrails:
        assert "Guardrails" in out
        assert out.index("Guardrails") > max(out.index(m.name) for m in tree.inputs)


def test_layout_of_the_education_tree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tree", "--width", "200", str(ROOT / "definitions" / "education.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "education - Lingo Academy - attention game - resolution 1d"
    assert lines[1] == "North Star: weekly_learning_minutes  Weekly learning minutes"
    assert lines[2] == (
        "sum of minutes over lesson_completed - window 7d - unit minutes - higher is better - target 50000"
    )
    text = "\n".join(lines)
    assert "breadth (1 input)" in text
    assert "weekly_active_learners  Weekly active learners  [owner: growth-squad]" in text
    assert (
        "refund_rate  Refund rate  [tolerance 20% - for 12h - min sample 50 - baseline previous window"
        " - owner: payments-squad]" in text
    )
    assert "(count of refund_issued) / (count of subscription_purchased) - window 7d" in text
    assert "Business KPI" in text and "paid_conversions" in text


def test_render_is_usable_without_the_cli() -> None:
    console = Console(force_terminal=False, width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render(load_definitions([EXAMPLES[0]]).trees[0].tree))
    assert "North Star:" in console.export_text()


def test_measures_in_words() -> None:
    tree = load_definitions([ROOT / "definitions" / "instacart.yaml"]).trees[0].tree
    assert (
        describe_measure(tree.north_star.measure)
        == "sum of items over order_delivered where on_time=true"
    )
    assert (
        describe_measure(tree.inputs[2].measure) == "average events per user over order_delivered"
    )


def test_missing_file_exits_2_and_invalid_file_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["tree", str(tmp_path / "nope.yaml")]) == 2
    assert "not a file" in capsys.readouterr().err
    assert main(["tree", str(ROOT / "tests" / "spec" / "data" / "seeded_mistakes.yaml")]) == 1
    err = capsys.readouterr().err
    assert "unknown key `ownr`" in err and "does not validate" in err
