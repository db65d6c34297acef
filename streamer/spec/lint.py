"""The North Star checklist as lint: warnings about the metric system, not errors.

A tree can be perfectly computable and still a poor North Star system. These
checks encode the Amplitude North Star Playbook's checklist and the metric
system it describes (a North Star that expresses customer value, 3-5 inputs
that teams own and that drive it, guardrails against gaming it, a business KPI
it should predict). Each issue's hint quotes the rationale briefly.

Severity: ``warning`` (fails ``northstar validate --strict``), except the
missing business KPI, which is ``info``: a tree is still useful without one,
and the KPI is often tracked elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from streamer.spec.issues import Issue
from streamer.spec.model import (
    CountMeasure,
    DistinctMeasure,
    EntitiesMeasure,
    Input,
    Measure,
    Metric,
    SumMeasure,
    event_names,
    walk_measures,
)
from streamer.spec.rules import guarded, metric_of, references

if TYPE_CHECKING:
    from streamer.spec.loader import LoadedTree

# Phrases are matched on whole words of the name, title and description
# (``weekly_dau`` and "Weekly DAU" both contain the word ``dau``).
_VANITY_PHRASES = (
    "dau",
    "daily active users",
    "daily active user",
    "registered users",
    "registrations",
    "sign ups",
    "signups",
    "sign up",
    "signup",
    "page views",
    "pageviews",
    "page view",
    "downloads",
    "download",
    "time on page",
    "installs",
    "app installs",
)
_VANITY_EVENT = re.compile(
    r"sign(ed)?_?up|regist|page_?view|screen_?view|app_?open|download|install|log(ged)?_?in"
)
_REVENUE_PHRASES = (
    "revenue",
    "sales",
    "mrr",
    "arr",
    "gmv",
    "arpu",
    "bookings",
    "monthly recurring revenue",
)
_MONEY_WORDS = {"amount", "revenue", "price", "usd", "eur", "gbp", "gmv", "mrr", "arr", "sales"}

VANITY_HINT = (
    "checklist: 'it's not a vanity metric'. Counts like DAU, registered users, sign-ups, "
    "page views, downloads or time on page rise without telling you whether customers got "
    "value; count the moment value is delivered instead (e.g. lessons completed, items "
    "received on time)"
)
REVENUE_HINT = (
    "checklist: 'it's a leading indicator'. Revenue is a lagging result you can no longer "
    "influence once you count it; the North Star should predict it. Put revenue in `kpi:`"
)


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def _mentions(metric: Metric, phrases: tuple[str, ...]) -> str | None:
    text = _words(f"{metric.name.replace('_', ' ')} {metric.title} {metric.description}")
    return next((p for p in phrases if f" {p} " in text), None)


def vanity_north_star(loaded: LoadedTree) -> Iterator[Issue]:
    """The North Star is not a vanity metric (by its words, or because it is a
    plain count of sign-up, page-view, app-open or download events)."""
    star = loaded.tree.north_star
    phrase = _mentions(star, _VANITY_PHRASES)
    measure = star.measure
    # A plain count (or distinct/entities count) of such events is a head count
    # of arrivals, whatever the metric is called.
    if (
        not phrase
        and isinstance(measure, CountMeasure | DistinctMeasure | EntitiesMeasure)
        and all(_VANITY_EVENT.search(e.lower()) for e in measure.event)
    ):
        phrase = f"a plain {measure.kind} of {', '.join(measure.event)}"
    if phrase:
        yield loaded.issue(
            "warning",
            ("north_star", "name"),
            f"the North Star looks like a vanity metric ({phrase})",
            hint=VANITY_HINT,
            metric=star.name,
            rule="vanity-north-star",
        )


def revenue_north_star(loaded: LoadedTree) -> Iterator[Issue]:
    """The North Star is not revenue (by its words, or a sum of a money property)."""
    star = loaded.tree.north_star
    phrase = _mentions(star, _REVENUE_PHRASES)
    if not phrase:
        for m in walk_measures(star.measure):
            if isinstance(m, SumMeasure) and _MONEY_WORDS & set(
                re.split(r"[^a-z0-9]+", m.property.lower())
            ):
                phrase = f"a sum of `{m.property}`"
    if phrase:
        yield loaded.issue(
            "warning",
            ("north_star", "name"),
            f"the North Star looks like revenue ({phrase})",
            hint=REVENUE_HINT,
            metric=star.name,
            rule="revenue-north-star",
        )


def input_count(loaded: LoadedTree) -> Iterator[Issue]:
    """3 to 5 inputs."""
    count = len(loaded.tree.inputs)
    if not 3 <= count <= 5:
        yield loaded.issue(
            "warning",
            ("inputs",),
            f"{count} input metric{'s' if count != 1 else ''}; a tree has 3 to 5",
            hint="checklist: inputs are 'a small set (3-5) of influential, complementary factors' "
            "(breadth, depth, frequency, efficiency); fewer leave teams without a lever, more dilute focus",
            rule="input-count",
        )


def has_guardrail(loaded: LoadedTree) -> Iterator[Issue]:
    """At least one guardrail."""
    if not loaded.tree.guardrails:
        path = ("guardrails",) if "guardrails" in loaded.document else ("tree",)
        yield loaded.issue(
            "warning",
            path,
            "no guardrail",
            hint="Goodhart's law: 'when a measure becomes a target, it ceases to be a good measure'. "
            "Pair the North Star with a counter-metric that must not degrade (retention, refunds, quality)",
            rule="no-guardrail",
        )


def input_owners(loaded: LoadedTree) -> Iterator[Issue]:
    """Every input has an owner."""
    for role, metric, location in loaded.located_metrics():
        if role == "input" and isinstance(metric, Input) and not metric.owner:
            yield loaded.issue(
                "warning",
                (*location, "name"),
                "input has no `owner:`",
                hint="checklist: every team should 'point to one input they own and can shift this "
                "quarter'; an input nobody owns is moved by nobody",
                metric=metric.name,
                rule="input-owner",
            )


def _reads(loaded: LoadedTree, measure: Measure, seen: set[str]) -> set[str]:
    """Event types a measure reads, following ratio references (cycle-safe)."""
    names = event_names(measure)
    for ref in references(measure):
        target = metric_of(loaded, ref)
        if target is not None and ref not in seen:
            seen.add(ref)
            names |= _reads(loaded, target.measure, seen)
    return names


def inputs_drive_north_star(loaded: LoadedTree) -> Iterator[Issue]:
    """Each input reads at least one event type the North Star reads."""
    star = loaded.tree.north_star
    star_events = _reads(loaded, star.measure, {star.name})
    for role, metric, location in loaded.located_metrics():
        if role != "input":
            continue
        events = _reads(loaded, metric.measure, {metric.name})
        if events and star_events and not events & star_events:
            yield loaded.issue(
                "warning",
                (*location, "measure"),
                f"input reads {', '.join(sorted(events))}, none of the North Star's events "
                f"({', '.join(sorted(star_events))})",
                hint="checklist: inputs are the levers that produce the North Star; one that shares "
                "no event with it may move without moving the North Star",
                metric=metric.name,
                rule="input-unrelated",
            )


def has_kpi(loaded: LoadedTree) -> Iterator[Issue]:
    """A business KPI (info only)."""
    if loaded.tree.kpi is None:
        yield loaded.issue(
            "info",
            ("tree",),
            "no business KPI (`kpi:`)",
            hint="the metric system: the North Star should predict a business result (revenue, paid "
            "seats); tracking it next to the tree shows whether value created turns into value captured",
            rule="no-kpi",
        )


LINTS = (
    vanity_north_star,
    revenue_north_star,
    input_count,
    has_guardrail,
    input_owners,
    inputs_drive_north_star,
    has_kpi,
)


def lint_tree(loaded: LoadedTree) -> list[Issue]:
    """Every checklist issue of one (complete) tree."""
    return [issue for check in LINTS for issue in guarded(check, loaded, loaded.file)]
