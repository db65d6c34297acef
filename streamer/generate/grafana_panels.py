"""Grafana panels of the North Star boards, built with grafana-foundation-sdk.

``streamer.generate.grafana`` assembles them into boards; the PromQL comes
from ``grafana_queries``. Panels that show one metric (value, change, history,
guardrail band) are shared by the tree boards and the squad boards, so a
squad sees its metrics drawn the same way on both.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from streamer.generate.grafana_queries import (
    DATASOURCE,
    RATE_INTERVAL,
    SQUAD,
    Regex,
    degradation,
    selector,
    snapshot,
    target,
    tolerated_limit,
)
from streamer.spec.duration import format_duration
from streamer.spec.model import Guardrail, Metric, NorthStar

PanelBuilder = stat.Panel | timeseries.Panel
"""What the panel functions return: the SDK builders with ``span``/``height``."""

_UNITS = {"ratio": "percentunit", "seconds": "s", "usd": "currencyUSD", "percent": "percent"}
_GREEN, _YELLOW, _RED, _GREY, _BLUE = "green", "yellow", "red", "text", "blue"


# --------------------------------------------------------------------------- field config


def grafana_unit(unit: str) -> str:
    """The Grafana unit for a definition's ``unit:`` (ratios as percentages)."""
    return _UNITS.get(unit, f"suffix: {unit}")


def _steps(base: str, *steps: tuple[float, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps(
            [dm.Threshold(value=None, color=base)]
            + [dm.Threshold(value=v, color=c) for v, c in steps]
        )
    )


def change_thresholds(direction: str, min_improvement: float = 0.0) -> db.ThresholdsConfig:
    """Colours of a relative change: green when it moves the good way (by at
    least ``min_improvement``), red when it moves the bad way."""
    if direction == "lower_is_better":
        if min_improvement:
            return _steps(_GREEN, (-min_improvement, _YELLOW), (0.0, _RED))
        return _steps(_GREEN, (0.0, _RED))
    if min_improvement:
        return _steps(_RED, (0.0, _YELLOW), (min_improvement, _GREEN))
    return _steps(_RED, (0.0, _GREEN))


def _value_map(options: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                value: dm.ValueMappingResult(text=text, color=color, index=index)
                for index, (value, (text, color)) in enumerate(options.items())
            }
        )
    ]


_FLAG = _value_map({"0": ("OK", _GREEN), "1": ("FIRING", _RED)})
_GUARD_STATUS = _value_map(
    {"0": ("OK", _GREEN), "1": ("insufficient data", _GREY), "2": ("DEGRADED", _RED)}
)


def _fixed(color: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})


_DASHED = dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})


# --------------------------------------------------------------------------- panel shapes


def big_stat(title: str, description: str, unit: str, *, sparkline: bool = True) -> stat.Panel:
    """A stat of the last value; with a sparkline of the range when ``sparkline``."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .graph_mode(common.BigValueGraphMode.AREA if sparkline else common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .text_mode(common.BigValueTextMode.AUTO)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .no_value("no data")
        .span(4)
        .height(6)
    )


def graph(title: str, description: str, unit: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .legend(
            cb.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.NONE)
        )
        .line_width(2)
        .fill_opacity(0)
        .span_nulls(True)
        .no_value("no data")
        .span(16)
        .height(6)
    )


# --------------------------------------------------------------------------- metrics


def owner_of(metric: Metric) -> str | None:
    owner: str | None = getattr(metric, "owner", None)
    return owner


def titled(metric: Metric) -> str:
    """The metric's title with its owner: squads find their panels by name."""
    owner = owner_of(metric)
    return f"{metric.title} · {owner}" if owner else metric.title


def describe(metric: Metric, role: str) -> str:
    owner = owner_of(metric)
    parts = [metric.description.strip()]
    dimension = getattr(metric, "dimension", None)
    if dimension:
        parts.append(f"Input ({dimension}).")
    elif role == "north_star":
        parts.append("The North Star.")
    if role != "north_star":  # the whole product owns the North Star
        parts.append(f"Owner: {owner}." if owner else "No owner in the definition.")
    parts.append(
        f"`{metric.name}`, in {metric.unit} over a {format_duration(metric.window)} window, "
        f"{metric.direction.replace('_', ' ')}."
    )
    return " ".join(parts)


def value_stat(tree: str, role: str, metric: Metric) -> PanelBuilder:
    """The metric's current value, big, with its sparkline."""
    expr = snapshot("northstar_metric_value", "metric", tree=tree, metric=metric.name)
    panel = big_stat(titled(metric), describe(metric, role), grafana_unit(metric.unit))
    panel = panel.with_target(target(expr, metric.title))
    if isinstance(metric, NorthStar) and metric.target is not None:
        good, bad = (
            (_GREEN, _YELLOW) if metric.direction == "higher_is_better" else (_YELLOW, _GREEN)
        )
        panel = panel.thresholds(_steps(bad, (metric.target, good)))
    else:
        panel = panel.thresholds(_steps(_BLUE))
    return panel


def change_stat(tree: str, metric: Metric) -> PanelBuilder:
    """The trend: relative change vs the baseline (the previous window)."""
    expr = snapshot("northstar_metric_change_ratio", "metric", tree=tree, metric=metric.name)
    min_improvement = metric.min_improvement if isinstance(metric, NorthStar) else 0.0
    description = (
        f"Change of {metric.title} vs its baseline: (value - baseline) / |baseline|. "
        f"{metric.direction.replace('_', ' ').capitalize()}"
        + (
            f"; improving means a rise of at least {min_improvement:.0%}."
            if min_improvement
            else "."
        )
    )
    return (
        big_stat("Change vs baseline", description, "percentunit")
        .with_target(target(expr, metric.title))
        .thresholds(change_thresholds(metric.direction, min_improvement))
        .span(3)
    )


def history(tree: str, role: str, metric: Metric) -> PanelBuilder:
    """Value and baseline over time (and the North Star's target)."""
    value = snapshot("northstar_metric_value", "metric", tree=tree, metric=metric.name)
    baseline = snapshot("northstar_metric_baseline", "metric", tree=tree, metric=metric.name)
    panel = (
        graph(
            f"{titled(metric)}: value vs baseline",
            describe(metric, role),
            grafana_unit(metric.unit),
        )
        .with_target(target(value, "value", "A"))
        .with_target(target(baseline, "baseline", "B"))
        .override_by_name("baseline", [_DASHED, _fixed(_GREY)])
        .span(17)
    )
    if isinstance(metric, NorthStar) and metric.target is not None:
        goal = snapshot("northstar_north_star_target", "metric", tree=tree, metric=metric.name)
        panel = panel.with_target(target(goal, "target", "C")).override_by_name(
            "target", [_DASHED, _fixed(_GREEN)]
        )
    return panel


def target_stats(tree: str, north_star: NorthStar) -> list[PanelBuilder]:
    """The North Star's target and the share of it reached (trees with a target)."""
    if north_star.target is None:
        return []
    goal = snapshot("northstar_north_star_target", "tree", tree=tree)
    value = snapshot("northstar_metric_value", "tree", tree=tree, role="north_star")
    unit = grafana_unit(north_star.unit)
    return [
        big_stat(
            "Target", f"Target of {north_star.title} from the definition.", unit, sparkline=False
        )
        .with_target(target(goal, "target"))
        .thresholds(_steps(_GREEN))
        .span(3),
        big_stat("Target attainment", f"{north_star.title} / its target.", "percentunit")
        .with_target(target(f"{value} / {goal}", "attainment"))
        .thresholds(_steps(_YELLOW, (1.0, _GREEN)))
        .span(3),
    ]


# --------------------------------------------------------------------------- guardrails


def guardrail_status(tree: str, guard: Guardrail) -> PanelBuilder:
    """OK / insufficient data / DEGRADED, from the one-hot status family."""

    def status(name: str) -> str:
        return snapshot(
            "northstar_guardrail_status", "tree, metric", tree=tree, metric=guard.name, status=name
        )

    expr = f"2 * {status('degraded')} + {status('insufficient_data')}"
    description = (
        f"Status of guardrail {guard.title} as the evaluator judged it: degraded once it is "
        f"worse than its baseline by more than {guard.tolerance:.0%}, significant at "
        f"{guard.confidence:.0%} confidence with at least {guard.min_sample} behind both values, "
        f"for {format_duration(guard.for_)}. "
        + (f"Owner: {guard.owner}." if guard.owner else "No owner in the definition.")
    )
    return (
        big_stat(titled(guard), description, "none", sparkline=False)
        .with_target(target(expr, guard.title))
        .mappings(_GUARD_STATUS)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .span(4)
    )


def degradation_stat(tree: str, guard: Guardrail) -> PanelBuilder:
    """How much worse than its baseline, against the tolerance."""
    description = (
        f"Relative degradation of {guard.title} vs its baseline, positive when worse "
        f"({guard.direction.replace('_', ' ')}); {guard.tolerance:.0%} is tolerated. Below "
        f"min_sample ({guard.min_sample}) the evaluator does not judge it (status: insufficient "
        "data) and this shows the raw move."
    )
    return (
        big_stat(f"Degradation (tolerated {guard.tolerance:.0%})", description, "percentunit")
        .with_target(target(degradation(tree, guard), guard.title))
        .thresholds(_steps(_GREEN, (guard.tolerance / 2, _YELLOW), (guard.tolerance, _RED)))
        .span(3)
    )


def guardrail_band(tree: str, guard: Guardrail) -> PanelBuilder:
    """Value, baseline and the tolerated limit; the band between baseline and
    limit is shaded: the guardrail may move inside it without degrading."""
    value = snapshot("northstar_metric_value", "metric", tree=tree, metric=guard.name)
    baseline = snapshot("northstar_metric_baseline", "metric", tree=tree, metric=guard.name)
    side = "+" if guard.direction == "lower_is_better" else "-"
    description = (
        f"{describe(guard, 'guardrail')} Tolerated limit = baseline {side} "
        f"{guard.tolerance:.0%} x |baseline|; the shaded band is the tolerated move."
    )
    return (
        graph(f"{titled(guard)}: value vs tolerated band", description, grafana_unit(guard.unit))
        .with_target(target(value, "value", "A"))
        .with_target(target(baseline, "baseline", "B"))
        .with_target(target(tolerated_limit(tree, guard), "tolerated limit", "C"))
        .override_by_name("baseline", [_DASHED, _fixed(_GREY)])
        .override_by_name(
            "tolerated limit",
            [
                _DASHED,
                _fixed(_RED),
                dm.DynamicConfigValue(id_val="custom.fillBelowTo", value="baseline"),
                dm.DynamicConfigValue(id_val="custom.fillOpacity", value=10),
            ],
        )
        .span(17)
    )


# --------------------------------------------------------------------------- tree-wide


def divergence_stat(tree: str) -> PanelBuilder:
    expr = snapshot("northstar_divergence_firing", "tree", tree=tree)
    return (
        big_stat(
            "Divergence",
            "FIRING while the North Star improves and at least one guardrail is degraded "
            "(the evaluator's verdict, held for the tree's alerting.for).",
            "none",
        )
        .with_target(target(expr, "divergence"))
        .mappings(_FLAG)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .span(3)
    )


def degraded_count_stat(tree: str) -> PanelBuilder:
    expr = f"sum by (tree) ({snapshot('northstar_guardrail_degraded', 'tree, metric', tree=tree)})"
    return (
        big_stat("Degraded guardrails", "Guardrails of this tree degraded now.", "none")
        .with_target(target(expr, "degraded"))
        .thresholds(_steps(_GREEN, (1.0, _RED)))
        .span(3)
    )


# --------------------------------------------------------------------------- squads


def squad_inputs(tree: str) -> list[PanelBuilder]:
    """The inputs of the squads chosen in ``$squad``: value and change."""
    owned = {"tree": tree, "role": "input", "owner": Regex(SQUAD)}
    values = snapshot("northstar_metric_value", "metric, dimension, owner", **owned)
    changes = snapshot("northstar_metric_change_ratio", "metric, dimension, owner", **owned)
    legend = "{{metric}} ({{dimension}}, {{owner}})"
    return [
        big_stat(
            f"Inputs owned by {SQUAD}",
            "Current value of every input whose owner is selected in the squad variable.",
            "short",
        )
        .with_target(target(values, legend))
        .thresholds(_steps(_BLUE))
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .span(10),
        graph(
            f"Inputs owned by {SQUAD}: change vs baseline",
            "Relative change vs the previous window of every input the selected squads own.",
            "percentunit",
        )
        .with_target(target(changes, legend))
        .span(14),
    ]


def squad_guardrails(tree: str) -> PanelBuilder:
    expr = snapshot("northstar_guardrail_degraded", "metric, owner", tree=tree, owner=Regex(SQUAD))
    return (
        big_stat(
            f"Guardrails owned by {SQUAD}",
            "OK or FIRING (degraded) for every guardrail the selected squads own.",
            "none",
            sparkline=False,
        )
        .with_target(target(expr, "{{metric}} ({{owner}})"))
        .mappings(_FLAG)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .no_value("no guardrail owned")
        .span(24)
        .height(4)
    )


# --------------------------------------------------------------------------- pipeline


def pipeline(tree: str) -> list[PanelBuilder]:
    """Health of the workers feeding the tree (worker metrics; lag and invalid
    records are per worker, not per tree: a worker reads every tree's topic)."""
    accepted = (
        f"sum by (tree) (rate({selector('northstar_events_accepted_total', tree=tree)}"
        f"[{RATE_INTERVAL}]))"
    )
    invalid = f"sum by (reason) (rate(northstar_events_invalid_total[{RATE_INTERVAL}]))"
    latency = (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(northstar_batch_processing_seconds_bucket[{RATE_INTERVAL}])))"
    )
    evaluated = snapshot("northstar_snapshot_evaluated_timestamp_seconds", "tree", tree=tree)
    stages = f"sum by (stage) (rate(northstar_batch_stage_seconds_sum[{RATE_INTERVAL}]))"
    return [
        graph("Events accepted /s", "Events applied to the tree's state, per second.", "reqps")
        .with_target(target(accepted, "{{tree}}"))
        .span(8),
        graph(
            "Consumer lag",
            "Records behind the high watermarks, summed over every worker and partition.",
            "short",
        )
        .with_target(target("sum(northstar_consumer_lag_records)", "lag"))
        .span(8),
        graph(
            "Invalid records /s by reason",
            "Records the decoder rejected (sent to the dead-letter topic), by reason.",
            "reqps",
        )
        .with_target(target(invalid, "{{reason}}"))
        .span(8),
        graph("Batch processing p95", "95th percentile of fetch-to-commit time per batch.", "s")
        .with_target(target(latency, "p95"))
        .span(8),
        big_stat(
            "Snapshot age",
            "Wall-clock seconds since the evaluator last wrote this tree's snapshot.",
            "s",
        )
        .with_target(target(f"time() - {evaluated}", "age"))
        .thresholds(_steps(_GREEN, (120.0, _YELLOW), (300.0, _RED)))
        .span(8),
        big_stat("Exporter", "1 when the exporter's last Redis read succeeded.", "none")
        .with_target(target("min(northstar_exporter_up)", "exporter"))
        .mappings(_value_map({"0": ("DOWN", _RED), "1": ("UP", _GREEN)}))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .span(8),
        graph(
            "Write path by stage",
            "Seconds per second the workers' lanes spend in each stage of a batch: prepare "
            "(decode, verdict requests), verdicts (round trip 1), aggregate (Python between the "
            "round trips), apply (round trip 2). Near the number of partitions: the lanes never "
            "rest; the largest stage is where a faster worker must start (docs/worker.md).",
            "short",
        )
        .with_target(target(stages, "{{stage}}"))
        .span(24),
    ]
