"""Generated Prometheus rules: the checked-in file equals the generator, promtool
accepts it, and promtool unit tests (rules_test.yaml) prove each alert fires
when intended, resolves after, and stays silent on healthy series."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from streamer.cli import main
from streamer.generate import GenerateError, render, rules_for
from streamer.spec.loader import load_definitions
from streamer.spec.model import Guardrail, Tree
from tests.trees import example

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "definitions"
CHECKED_IN = ROOT / "deploy" / "prometheus" / "rules.yaml"
UNIT_TESTS = Path(__file__).with_name("rules_test.yaml")
REGENERATE = "northstar rules --definitions definitions -o deploy/prometheus/rules.yaml"


def _trees() -> list[Tree]:
    result = load_definitions([DEFINITIONS])
    assert not result.errors
    return [loaded.tree for loaded in result.trees]


def _promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def _alerts(data: dict[str, Any], group: str) -> list[dict[str, Any]]:
    (found,) = [g for g in data["groups"] if g["name"] == group]
    rules: list[dict[str, Any]] = found["rules"]
    return rules


# --------------------------------------------------------------------------- the checked-in file


def test_checked_in_rules_equal_the_generator_output() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == render(_trees()), (
        f"{CHECKED_IN.relative_to(ROOT)} is out of date: run `{REGENERATE}`"
    )


def test_the_file_header_tells_how_to_regenerate() -> None:
    assert REGENERATE in CHECKED_IN.read_text(encoding="utf-8").split("groups:")[0]


def test_promtool_check_rules_passes_on_the_checked_in_file(promtool: str) -> None:
    done = _promtool(promtool, "check", "rules", CHECKED_IN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    done = _promtool(promtool, "test", "rules", UNIT_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_unit_tests_feed_every_tree_of_the_definitions() -> None:
    """Healthy-series groups must name every tree, or the new tree's stale alerts fire."""
    text = UNIT_TESTS.read_text(encoding="utf-8")
    for tree in _trees():
        assert f'northstar_events_accepted_total{{tree="{tree.tree}"' in text, tree.tree


# --------------------------------------------------------------------------- the generator


def test_rules_for_has_a_group_per_tree_by_name() -> None:
    trees = _trees()
    data = rules_for(trees)
    names = [g["name"] for g in data["groups"]]
    assert names[:2] == ["northstar.recording", "northstar.pipeline"]
    assert names[2:] == [f"northstar.tree.{t}" for t in sorted(t.tree for t in trees)]
    records = [r["record"] for r in _alerts(data, "northstar.recording")]
    assert "northstar:guardrails_degraded:count" in records
    assert "northstar:north_star_change:ratio" in records
    assert "northstar:events_accepted:rate5m" in records


def test_output_is_deterministic_whatever_the_input_order() -> None:
    trees = _trees()
    assert render(trees) == render(list(reversed(trees)))


def test_tree_alerts_come_from_the_definition() -> None:
    tree = example("education")
    rules = _alerts(rules_for([tree]), "northstar.tree.education")
    alerts = [r["alert"] for r in rules]
    assert alerts == [
        "NorthStarDivergence",
        *["NorthStarGuardrailDegraded"] * len(tree.guardrails),
        "NorthStarStaleData",
        "NorthStarEvaluatorStale",
    ]
    guards = [r for r in rules if r["alert"] == "NorthStarGuardrailDegraded"]
    for rule, guard in zip(guards, tree.guardrails, strict=True):
        assert rule["labels"] == {
            "severity": "warning",
            "tree": "education",
            "metric": guard.name,
            "owner": guard.owner,
        }
        assert f'metric="{guard.name}"' in rule["expr"]
    (stale,) = [r for r in rules if r["alert"] == "NorthStarStaleData"]
    assert "[15m]" in stale["expr"] and "absent_over_time" in stale["expr"]


def test_stale_after_and_thresholds_are_parameters() -> None:
    tree = example("education")
    changed = tree.model_copy(
        update={"alerting": tree.alerting.model_copy(update={"stale_after": 7200})}
    )
    data = rules_for([changed], lag_threshold=5000, evaluator_stale_after_s=600)
    rules = _alerts(data, "northstar.tree.education")
    (stale,) = [r for r in rules if r["alert"] == "NorthStarStaleData"]
    assert 'increase(northstar_events_accepted_total{tree="education"}[2h])' in stale["expr"]
    (evaluator,) = [r for r in rules if r["alert"] == "NorthStarEvaluatorStale"]
    assert "> 600" in evaluator["expr"] and "[10m]" in evaluator["expr"]
    (lag,) = [
        r for r in _alerts(data, "northstar.pipeline") if r["alert"] == "NorthStarConsumerLag"
    ]
    assert lag["expr"] == "sum(northstar_consumer_lag_records) > 5000"
    assert lag["for"] == "10m"


def test_an_unowned_guardrail_has_no_owner_label() -> None:
    tree = example("education")
    guard = tree.guardrails[0].model_copy(update={"owner": None})
    changed = tree.model_copy(update={"guardrails": (guard,)})
    (rule,) = [
        r
        for r in _alerts(rules_for([changed]), "northstar.tree.education")
        if r["alert"] == "NorthStarGuardrailDegraded"
    ]
    assert "owner" not in rule["labels"]


def test_free_text_cannot_inject_templates(promtool: str, tmp_path: Path) -> None:
    """Prometheus expands Go templates in alert labels and annotations: a title
    or owner containing ``{{`` must come out literally, not break the file."""
    tree = example("education")
    guard: Guardrail = tree.guardrails[0].model_copy(
        update={"owner": "team {{ nope }}", "title": 'Retention {{ "x" }}'}
    )
    changed = tree.model_copy(update={"guardrails": (guard,)})
    path = tmp_path / "rules.yaml"
    path.write_text(render([changed]), encoding="utf-8")
    done = _promtool(promtool, "check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr
    tests = {
        "rule_files": [str(path)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'northstar_guardrail_degraded{tree="education",'
                        f'metric="{guard.name}"}}',
                        "values": "1x5",
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "2m",
                        "alertname": "NorthStarGuardrailDegraded",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "tree": "education",
                                    "metric": guard.name,
                                    "owner": "team {{ nope }}",
                                },
                                "exp_annotations": {
                                    "summary": f"education: guardrail {guard.name} is degraded",
                                    "description": f'Retention {{{{ "x" }}}} ({guard.name}) is n/a '
                                    "worse than the previous window; tolerated: 5%, judged with "
                                    "99% confidence and held for 12h.",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    unit = tmp_path / "unit.yaml"
    YAML(typ="safe", pure=True).dump(tests, unit)
    done = _promtool(promtool, "test", "rules", unit)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lag_threshold": 0}, "lag_threshold must be a positive number of records, got 0"),
        (
            {"evaluator_stale_after_s": -1},
            "evaluator_stale_after_s must be a positive number of seconds, got -1",
        ),
    ],
)
def test_bad_parameters_are_rejected(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(GenerateError) as info:
        rules_for([example("education")], **kwargs)
    assert str(info.value) == message


def test_a_tree_given_twice_is_rejected() -> None:
    with pytest.raises(GenerateError, match="trees given more than once: education"):
        rules_for([example("education"), example("education")])


# --------------------------------------------------------------------------- the command


def test_cli_prints_the_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--definitions", str(DEFINITIONS)]) == 0
    assert capsys.readouterr().out == render(_trees())


def test_cli_writes_and_checks_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "rules.yaml"
    args = ["rules", "--definitions", str(DEFINITIONS), "-o", str(out), "--lag-threshold", "2500"]
    assert main(args) == 0
    text = out.read_text(encoding="utf-8")
    assert text == render(_trees(), lag_threshold=2500)
    assert main([*args, "--check"]) == 0
    out.write_text(text.replace("> 2500", "> 9"), encoding="utf-8")
    capsys.readouterr()
    assert main([*args, "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["rules", "--definitions", str(DEFINITIONS), "-o", str(CHECKED_IN), "--check"]) == 0


def test_cli_evaluator_stale_after_takes_a_duration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--definitions", str(DEFINITIONS), "--evaluator-stale-after", "10m"]) == 0
    assert capsys.readouterr().out == render(_trees(), evaluator_stale_after_s=600)


@pytest.mark.parametrize(
    "argv",
    [
        ["rules", "--lag-threshold", "-5"],
        ["rules", "--lag-threshold", "many"],
        ["rules", "--evaluator-stale-after", "5 minutes"],
        ["rules", "--definitions", "no/such/dir"],
        ["rules", "--check"],
        ["rules", "-o", "no/such/dir/rules.yaml"],
        ["rules", "--unknown"],
    ],
)
def test_cli_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    if "--definitions" not in argv:
        argv = [*argv, "--definitions", str(DEFINITIONS)]
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_cli_invalid_definitions_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (DEFINITIONS / "education.yaml").read_text(encoding="utf-8")
    bad.write_text(text.replace("tree: education", "tree: Not A Name"), encoding="utf-8")
    assert main(["rules", "--definitions", str(bad)]) == 1
    assert "error" in capsys.readouterr().err


def test_every_rule_and_alert_is_documented() -> None:
    docs = (ROOT / "docs" / "prometheus.md").read_text(encoding="utf-8")
    for group in rules_for(_trees())["groups"]:
        for rule in group["rules"]:
            name = rule.get("record") or rule["alert"]
            assert f"`{name}`" in docs, name
