"""Generated Grafana boards and provisioning: the committed files equal the
generator, every board is well-formed (unique panel ids, every target with
the datasource uid and an expression), the boards show what squads need
(North Star, inputs by dimension with owners, guardrail bands, squad filter,
pipeline health), and every query is PromQL a real Prometheus accepts.
That each query also returns data from a running pipeline is proven by
tests/e2e/test_grafana_queries.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from streamer.cli import main
from streamer.generate import GenerateError
from streamer.generate.grafana import boards, owners, squad_slug, squad_uid, tree_uid
from streamer.generate.grafana_files import (
    DATASOURCE_FILE,
    PROVIDER_FILE,
    differences,
    render,
)
from streamer.generate.grafana_queries import (
    DATASOURCE_UID,
    SQUAD_VARIABLE,
    interpolate,
    panels,
    queries,
)
from streamer.spec.loader import load_definitions
from streamer.spec.model import Tree
from streamer.testing.prometheus import Prometheus
from tests.trees import example

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "definitions"
COMMITTED = ROOT / "grafana"
REGENERATE = "northstar grafana --definitions definitions --out grafana"


def _trees() -> list[Tree]:
    result = load_definitions([DEFINITIONS])
    assert not result.errors
    return [loaded.tree for loaded in result.trees]


def _committed_boards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((COMMITTED / "dashboards").glob("*.json"))
    }


def _panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = [p for p in panels(board) if p["title"] == title]
    return found


def _exprs(board: dict[str, Any]) -> list[str]:
    return [q.expr for q in queries(board)]


# --------------------------------------------------------------------------- committed files


def test_committed_files_equal_the_generator_output() -> None:
    files = render(_trees())  # regenerated in memory
    for rel, text in files.items():
        path = COMMITTED / rel
        assert path.is_file(), f"grafana/{rel} is missing: run `{REGENERATE}`"
        assert path.read_text(encoding="utf-8") == text, (
            f"grafana/{rel} is out of date: run `{REGENERATE}`"
        )
    assert differences(COMMITTED, files) == [], f"stale files in grafana/: run `{REGENERATE}`"


def test_there_is_a_board_per_tree_and_per_owner() -> None:
    trees = _trees()
    expected = {f"tree-{t.tree}.json" for t in trees}
    expected |= {f"squad-{squad_slug(o)}.json" for t in trees for o in owners(t)}
    assert set(_committed_boards()) == expected


# --------------------------------------------------------------------------- well-formed boards


def test_every_board_is_valid_json_with_unique_panel_ids() -> None:
    uids = []
    for name, board in _committed_boards().items():
        ids = [p["id"] for p in panels(board)]
        assert all(isinstance(i, int) and i > 0 for i in ids), name
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in panels(board):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{name}: panel {panel['id']} overflows the grid"
        assert board["uid"] and len(board["uid"]) <= 40, name
        uids.append(board["uid"])
    assert len(uids) == len(set(uids)), "dashboard uids must be unique"


def test_every_target_has_the_datasource_uid_and_an_expr() -> None:
    for name, board in _committed_boards().items():
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == DATASOURCE_UID, f"{name}: {panel['title']}"
            assert panel["targets"], f"{name}: panel {panel['title']!r} has no query"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), f"{name}: {panel['title']}"
            for t in panel["targets"]:
                assert t["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, name
                assert isinstance(t["expr"], str) and t["expr"].strip(), f"{name}: {panel['title']}"
        for annotation in board["annotations"]["list"]:
            assert annotation["datasource"]["uid"] == DATASOURCE_UID
            assert annotation["expr"].endswith("== 1")


def test_generation_is_deterministic() -> None:
    assert render(_trees()) == render(list(reversed(_trees())))


# --------------------------------------------------------------------------- what a tree board shows


def test_tree_board_shows_the_north_star_with_trend_target_and_sparkline() -> None:
    board = boards([example("education")])["tree-education.json"]
    value = _panel(board, "Weekly learning minutes")
    assert value["type"] == "stat"
    assert value["options"]["graphMode"] == "area"  # the sparkline
    assert value["targets"][0]["range"] is True
    assert 'metric="weekly_learning_minutes"' in value["targets"][0]["expr"]
    steps = value["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "green", "value": 50000}  # the target
    change = next(p for p in panels(board) if p["title"] == "Change vs baseline")
    assert "northstar_metric_change_ratio" in change["targets"][0]["expr"]
    assert change["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert [s["value"] for s in change["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        None,
        0.0,
        0.02,  # min_improvement
    ]
    assert "northstar_north_star_target" in _panel(board, "Target")["targets"][0]["expr"]
    assert _panel(board, "Target attainment")
    history = _panel(board, "Weekly learning minutes: value vs baseline")
    assert [t["legendFormat"] for t in history["targets"]] == ["value", "baseline", "target"]


def test_a_tree_without_target_has_no_target_panels() -> None:
    board = boards([example("learning_users")])["tree-learning_users.json"]
    titles = {p["title"] for p in panels(board)}
    assert "Target" not in titles and "Target attainment" not in titles
    assert not any("northstar_north_star_target" in e for e in _exprs(board))


def test_inputs_are_grouped_by_dimension_with_owners_in_titles() -> None:
    tree = example("education")
    board = boards([tree])["tree-education.json"]
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    dimension_rows = [
        r for r in rows if r.split(":")[0].lower() in {i.dimension for i in tree.inputs}
    ]
    assert [r.split(":")[0] for r in dimension_rows] == [
        "Breadth",
        "Depth",
        "Frequency",
        "Efficiency",
    ]
    for row, tree_input in zip(dimension_rows, tree.inputs, strict=True):
        assert f"({tree_input.owner})" in row
    for tree_input in tree.inputs:
        panel = _panel(board, f"{tree_input.title} · {tree_input.owner}")
        assert f"Owner: {tree_input.owner}." in panel["description"]
        assert f'metric="{tree_input.name}"' in panel["targets"][0]["expr"]


def test_guardrails_show_the_tolerated_band() -> None:
    tree = example("education")
    board = boards([tree])["tree-education.json"]
    for guard in tree.guardrails:
        band = _panel(board, f"{guard.title} · {guard.owner}: value vs tolerated band")
        by_legend = {t["legendFormat"]: t["expr"] for t in band["targets"]}
        assert set(by_legend) == {"value", "baseline", "tolerated limit"}
        limit = by_legend["tolerated limit"]
        assert "northstar_guardrail_tolerance_ratio" in limit
        sign = "+" if guard.direction == "lower_is_better" else "-"
        assert f") {sign} max by (tree, metric) (northstar_guardrail_tolerance_ratio" in limit
        fill = next(
            o
            for o in band["fieldConfig"]["overrides"]
            if o["matcher"]["options"] == "tolerated limit"
        )
        assert {"id": "custom.fillBelowTo", "value": "baseline"} in fill["properties"]
        status = _panel(board, f"{guard.title} · {guard.owner}")
        assert "northstar_guardrail_status" in status["targets"][0]["expr"]
        assert _panel(board, f"Degradation (tolerated {guard.tolerance:.0%})")


def test_divergence_and_degraded_guardrails_are_annotations() -> None:
    board = boards([example("education")])["tree-education.json"]
    exprs = [a["expr"] for a in board["annotations"]["list"]]
    assert exprs == [
        'max by (tree) (northstar_divergence_firing{tree="education"}) == 1',
        'max by (tree, metric, owner) (northstar_guardrail_degraded{tree="education"}) == 1',
    ]


def test_the_squad_variable_lists_the_owners_and_filters_your_inputs() -> None:
    tree = example("education")
    board = boards([tree])["tree-education.json"]
    (variable,) = board["templating"]["list"]
    assert variable["name"] == SQUAD_VARIABLE and variable["type"] == "custom"
    assert variable["query"].split(",") == owners(tree)
    assert variable["includeAll"] and variable["allValue"] == ".*"
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows[1] == f"Your inputs (squad: ${SQUAD_VARIABLE})"  # right after the North Star
    mine = _panel(board, f"Inputs owned by ${SQUAD_VARIABLE}")
    assert f'owner=~"${SQUAD_VARIABLE}"' in mine["targets"][0]["expr"]
    assert 'role="input"' in mine["targets"][0]["expr"]


def test_the_pipeline_row_shows_events_lag_and_invalid_by_reason() -> None:
    exprs = _exprs(boards([example("education")])["tree-education.json"])
    assert any(
        'rate(northstar_events_accepted_total{tree="education"}[$__rate_interval])' in e
        for e in exprs
    )
    assert "sum(northstar_consumer_lag_records)" in exprs
    assert any(e.startswith("sum by (reason) (rate(northstar_events_invalid_total") for e in exprs)
    assert any("northstar_batch_processing_seconds_bucket" in e for e in exprs)
    assert "sum by (stage) (rate(northstar_batch_stage_seconds_sum[$__rate_interval]))" in exprs


# --------------------------------------------------------------------------- squad boards


def test_a_squad_board_has_only_that_squads_metrics_across_trees() -> None:
    trees = _trees()
    generated = boards(trees)
    for owner in sorted({o for t in trees for o in owners(t)}):
        board = generated[f"squad-{squad_slug(owner)}.json"]
        assert board["uid"] == squad_uid(owner)
        owned = {
            (t.tree, m.name)
            for t in trees
            for _, m in t.metrics()
            if getattr(m, "owner", None) == owner
        }
        shown = set()
        for expr in _exprs(board):
            for tree, metric in re.findall(r'tree="(\w+)",metric="(\w+)"', expr):
                shown.add((tree, metric))
        assert shown == owned, owner


# --------------------------------------------------------------------------- provisioning


def test_provisioning_points_grafana_at_prometheus_and_the_boards() -> None:
    yaml = YAML(typ="safe")
    (datasource,) = yaml.load((COMMITTED / DATASOURCE_FILE).read_text())["datasources"]
    assert datasource["uid"] == DATASOURCE_UID and datasource["type"] == "prometheus"
    assert datasource["url"] == "${PROMETHEUS_URL}"
    assert "PROMETHEUS_URL=http://prometheus:9090" in (COMMITTED / DATASOURCE_FILE).read_text()
    (provider,) = yaml.load((COMMITTED / PROVIDER_FILE).read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/northstar"


# --------------------------------------------------------------------------- names and errors


def test_owner_names_become_safe_unique_names() -> None:
    assert squad_slug("growth-squad") == "growth-squad"
    assert re.fullmatch(r"growth-squad-[0-9a-f]{6}", squad_slug("Growth Squad"))
    assert squad_slug("Growth Squad") != squad_slug("growth squad")
    assert len(tree_uid("a" * 63)) == 40
    assert tree_uid("a" * 63) != tree_uid("a" * 62)


def test_owners_are_quoted_in_promql_and_in_the_variable() -> None:
    base = example("education")
    odd = 'ops, "night" shift'
    tree = base.model_copy(
        update={
            "inputs": (base.inputs[0].model_copy(update={"owner": odd}), *base.inputs[1:]),
            "guardrails": (
                base.guardrails[0].model_copy(update={"owner": odd}),
                *base.guardrails[1:],
            ),
        }
    )
    generated = boards([tree])
    variable = generated["tree-education.json"]["templating"]["list"][0]
    assert 'ops\\, "night" shift' in variable["query"]  # Grafana reads "\\," as a comma
    squad = generated[f"squad-{squad_slug(odd)}.json"]
    degraded = squad["annotations"]["list"][1]["expr"]
    assert degraded == (
        'max by (tree, metric, owner) (northstar_guardrail_degraded{owner="ops, \\"night\\" shift"}) == 1'
    )


def test_duplicate_trees_are_an_error() -> None:
    with pytest.raises(GenerateError, match="more than once: education"):
        boards([example("education"), example("education")])


def test_interpolate_replaces_grafana_variables() -> None:
    expr = 'x{owner=~"$squad"}[$__rate_interval] + y{o="${squad}"} + $unknown'
    assert interpolate(expr, {"squad": "a", "__rate_interval": "1m"}) == (
        'x{owner=~"a"}[1m] + y{o="a"} + $unknown'
    )


# --------------------------------------------------------------------------- the command


def test_the_command_writes_checks_and_removes_stale_boards(tmp_path: Path) -> None:
    out = tmp_path / "grafana"
    args = ["grafana", "--definitions", str(DEFINITIONS / "education.yaml"), "--out", str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in (out / "dashboards").glob("tree-*.json")) == [
        "tree-education.json"
    ]
    assert (out / DATASOURCE_FILE).is_file() and (out / PROVIDER_FILE).is_file()
    assert main([*args, "--check"]) == 0
    board = out / "dashboards" / "tree-education.json"
    board.write_text(board.read_text() + " ")
    assert main([*args, "--check"]) == 1
    stale = out / "dashboards" / "tree-gone.json"
    stale.write_text("{}")
    assert main([*args, "--check"]) == 1
    foreign = out / "dashboards" / "my-own-board.json"  # not ours: kept
    foreign.write_text("{}")
    assert main(args) == 0
    assert not stale.exists() and foreign.exists()
    assert main([*args, "--check"]) == 0


def test_the_committed_files_pass_the_check() -> None:
    assert (
        main(["grafana", "--definitions", str(DEFINITIONS), "--out", str(COMMITTED), "--check"])
        == 0
    )


def test_bad_usage(tmp_path: Path) -> None:
    assert main(["grafana", "--definitions", str(tmp_path / "missing")]) == 2
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main(["grafana", "--out", str(a_file)]) == 2


# --------------------------------------------------------------------------- PromQL


@pytest.mark.services
def test_every_query_of_every_board_is_valid_promql(
    prometheus_bin: Callable[..., Prometheus],
) -> None:
    """Prometheus parses every query (no data needed): a syntax or label-matching
    mistake in any board of any tree fails here, in seconds."""
    import urllib.error

    prometheus = prometheus_bin()
    rejected = []
    for name, board in _committed_boards().items():
        for query in queries(board):
            expr = interpolate(query.expr, {SQUAD_VARIABLE: ".*", "__rate_interval": "1m"})
            try:
                prometheus.query(expr)
            except urllib.error.HTTPError as exc:
                rejected.append(f"{name}: {query.where}: {expr}: {exc.read().decode()}")
    assert not rejected, "\n".join(rejected)
