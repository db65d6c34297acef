"""The North Star tree as data: pydantic models of one definitions file.

A file holds one tree: a North Star metric, 3-5 input metrics, guardrails, an
optional business KPI and supporting metrics that ratios may reference. Every
model is frozen and rejects unknown keys; cross-object rules (references,
cycles, one North Star per product) live in ``rules.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streamer.spec.duration import Duration

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
FIELD_PATTERN = r"^(user|(prop|group|user_prop)\.[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$"

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
FieldRef = Annotated[str, Field(pattern=FIELD_PATTERN)]
"""Where a value comes from in a decoded event: ``user`` (the event's user id),
``prop.X`` (event property X), ``group.X`` (group X, e.g. ``group.org``) or
``user_prop.X`` (user property X)."""

Scalar = str | int | float | bool


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- filters

_OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")


class Condition(Model):
    """Comparison of one event property; all given operators must hold."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in")
    not_in: tuple[Scalar, ...] | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    exists: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar_means_eq(cls, value: Any) -> Any:
        if isinstance(value, str | int | float | bool):
            return {"eq": value}
        return value

    @model_validator(mode="after")
    def _at_least_one(self) -> Condition:
        if all(getattr(self, "in_" if op == "in" else op) is None for op in _OPERATORS):
            raise ValueError(f"a condition needs a value or one of: {', '.join(_OPERATORS)}")
        return self


class EventFilter(Model):
    """Which events a measure looks at: event names plus property conditions."""

    event: tuple[str, ...]
    where: dict[str, Condition] = Field(default_factory=dict)

    @field_validator("event", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("event")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not name for name in value):
            raise ValueError("name at least one event type, e.g. event: lesson_completed")
        return value


# --------------------------------------------------------------------------- measures


class CountMeasure(EventFilter):
    """Number of matching events in the window."""

    kind: Literal["count"]


class SumMeasure(EventFilter):
    """Sum of a numeric event property over matching events in the window.
    Events whose property is missing or not a number contribute nothing."""

    kind: Literal["sum"]
    property: str


class DistinctMeasure(EventFilter):
    """Distinct entities with a matching event in the window; ``per_day`` counts
    distinct (entity, UTC date) pairs. ``approximate`` uses HyperLogLog."""

    kind: Literal["distinct"]
    entity: FieldRef = "user"
    per_day: bool = False
    approximate: bool = False


class GroupQualification(Model):
    """Count groups (e.g. organizations) instead of entities: a group qualifies
    when at least ``min_entities`` of its entities qualify. An entity belongs to
    the group value of its latest event (by event time) that carries one."""

    by: FieldRef
    min_entities: int = Field(ge=1)


class EntitiesMeasure(EventFilter):
    """Entities with at least ``min_events`` matching events in the window."""

    kind: Literal["entities"]
    entity: FieldRef = "user"
    min_events: int = Field(default=1, ge=1)
    group: GroupQualification | None = None


class PerEntityAverageMeasure(EventFilter):
    """Average per entity active in the window: sum of ``property`` (or the
    number of events when no property is named) / distinct entities."""

    kind: Literal["per_entity_average"]
    entity: FieldRef = "user"
    property: str | None = None


class PercentileMeasure(Model):
    """Percentile ``q`` (linear interpolation) over entities whose first ``start``
    event lies in the window and who have an ``end`` event after it before the
    evaluation time, of the seconds from that start to their first such end."""

    kind: Literal["percentile"]
    entity: FieldRef = "user"
    start: EventFilter
    end: EventFilter
    q: float = Field(default=50.0, gt=0, le=100)


class ConversionMeasure(Model):
    """Share of entities whose first ``start`` event lies in the window that had
    ``min_events`` ``end`` events within ``within`` after it (before the
    evaluation time)."""

    kind: Literal["conversion"]
    entity: FieldRef = "user"
    start: EventFilter
    end: EventFilter
    within: Duration
    min_events: int = Field(default=1, ge=1)


class RetentionMeasure(EventFilter):
    """Of the entities active in the previous window, the share also active in
    the window ("active" = a matching event)."""

    kind: Literal["retention"]
    entity: FieldRef = "user"


class OwnerGroup(Model):
    by: FieldRef
    min_owners: int = Field(ge=1)


class RelationalMeasure(Model):
    """Items created by one user and consumed by others (Amplitude's Weekly
    Learning Users). An item's owner is the user of its earliest ``created_by``
    event; it is *broadcast* in a window when at least ``min_consumers``
    distinct users other than its owner have a ``consumed_by`` event for it in
    the window. ``result`` picks the number reported:

    - ``items``: broadcast items;
    - ``consumptions``: sum over broadcast items of their distinct consumers
      other than the owner;
    - ``owners``: distinct owners of at least one broadcast item;
    - ``groups``: groups (``group.by`` of the owner) with at least
      ``group.min_owners`` such owners.
    """

    kind: Literal["relational"]
    item: FieldRef
    created_by: EventFilter
    consumed_by: EventFilter
    min_consumers: int = Field(default=2, ge=1)
    result: Literal["items", "consumptions", "owners", "groups"]
    group: OwnerGroup | None = None

    @model_validator(mode="after")
    def _group_with_groups(self) -> RelationalMeasure:
        if (self.result == "groups") != (self.group is not None):
            raise ValueError("give `group: {by: ..., min_owners: N}` exactly when result is 'groups'")
        return self


class RatioMeasure(Model):
    """numerator / denominator, each a metric name or an inline measure; null
    when the denominator is zero or null."""

    kind: Literal["ratio"]
    numerator: str | Measure
    denominator: str | Measure


Measure = Annotated[
    CountMeasure
    | SumMeasure
    | DistinctMeasure
    | EntitiesMeasure
    | PerEntityAverageMeasure
    | PercentileMeasure
    | ConversionMeasure
    | RetentionMeasure
    | RelationalMeasure
    | RatioMeasure,
    Field(discriminator="kind"),
]
MEASURE_KINDS = (
    "count",
    "sum",
    "distinct",
    "entities",
    "per_entity_average",
    "percentile",
    "conversion",
    "retention",
    "relational",
    "ratio",
)

# --------------------------------------------------------------------------- metrics


class Breakdown(Model):
    """Split a count, sum or distinct metric by a low-cardinality property; values
    beyond the first ``max_values`` seen are reported as ``other``."""

    property: FieldRef
    max_values: int = Field(default=10, ge=1, le=50)


class Metric(Model):
    name: Name
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    unit: str = Field(min_length=1)
    window: Duration
    measure: Measure
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"
    breakdown: Breakdown | None = None


class NorthStar(Metric):
    target: float | None = None
    min_improvement: float = Field(
        default=0.02,
        ge=0,
        description="relative rise vs baseline that counts as 'improving' for divergence",
    )


class Input(Metric):
    dimension: Literal["breadth", "depth", "frequency", "efficiency"]
    owner: str | None = None


class Baseline(Model):
    """What a value is compared with: the same window one period earlier, or the
    average of the ``periods`` windows before it."""

    kind: Literal["previous_window", "trailing_average"] = "previous_window"
    periods: int = Field(default=1, ge=1, le=12)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"kind": value}
        return value


class Guardrail(Metric):
    owner: str | None = None
    baseline: Baseline = Field(default_factory=Baseline)
    tolerance: float = Field(
        gt=0, lt=10, description="relative degradation vs baseline that is tolerated"
    )
    min_sample: int = Field(default=100, ge=0)
    for_: Duration = Field(default=3600, alias="for")
    confidence: float = Field(default=0.95, gt=0.5, lt=1)


class Kpi(Metric):
    owner: str | None = None


# --------------------------------------------------------------------------- tree


class GenericMapping(Model):
    """Dotted paths into a custom JSON event."""

    event: str
    user: str
    time: str
    time_format: Literal["ms", "s", "iso8601"] = "ms"
    insert_id: str | None = None
    properties: str | None = None
    groups: str | None = None
    user_properties: str | None = None


class Source(Model):
    topic: str = Field(default="product-events", min_length=1)
    shape: Literal["amplitude", "segment", "generic"] = "amplitude"
    mapping: GenericMapping | None = None
    future_skew: Duration = 3600
    max_event_bytes: int = Field(default=65536, ge=256)

    @model_validator(mode="after")
    def _mapping_iff_generic(self) -> Source:
        if (self.shape == "generic") != (self.mapping is not None):
            raise ValueError("give `mapping:` exactly when shape is 'generic'")
        return self


class Alerting(Model):
    for_: Duration = Field(default=1800, alias="for")
    stale_after: Duration = 900


class Tree(Model):
    tree: Name
    product: str = Field(min_length=1)
    description: str = ""
    game: Literal["attention", "transaction", "productivity"]
    resolution: Duration = 86400
    lateness: Duration | None = None
    dedupe_horizon: Duration = 7 * 86400
    source: Source = Field(default_factory=Source)
    north_star: NorthStar
    inputs: tuple[Input, ...]
    guardrails: tuple[Guardrail, ...] = ()
    kpi: Kpi | None = None
    supporting: tuple[Metric, ...] = ()
    alerting: Alerting = Field(default_factory=Alerting)

    def metrics(self) -> Iterator[tuple[str, Metric]]:
        """Every metric with its role: north_star, input, guardrail, kpi, supporting."""
        yield "north_star", self.north_star
        for metric in self.inputs:
            yield "input", metric
        for guard in self.guardrails:
            yield "guardrail", guard
        if self.kpi is not None:
            yield "kpi", self.kpi
        for extra in self.supporting:
            yield "supporting", extra

    def metric(self, name: str) -> Metric:
        for _, metric in self.metrics():
            if metric.name == name:
                return metric
        raise KeyError(name)


def walk_measures(measure: Measure) -> Iterator[Measure]:
    """The measure and, for ratios, every inline measure below it."""
    yield measure
    if isinstance(measure, RatioMeasure):
        for side in (measure.numerator, measure.denominator):
            if not isinstance(side, str):
                yield from walk_measures(side)


def event_names(measure: Measure) -> set[str]:
    """Event types an (inline-expanded) measure reads; ratio references excluded."""
    names: set[str] = set()
    for m in walk_measures(measure):
        if isinstance(m, EventFilter):
            names.update(m.event)
        for attr in ("start", "end", "created_by", "consumed_by"):
            sub = getattr(m, attr, None)
            if isinstance(sub, EventFilter):
                names.update(sub.event)
    return names


RatioMeasure.model_rebuild()
