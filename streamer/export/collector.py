"""The snapshot exporter: every tree's latest snapshot as Prometheus gauges.

A custom collector (prometheus_client's ``collect()`` protocol): each scrape
reads the snapshot the evaluator stored in Redis (``<ns>:{<tree>}:snapshot``)
for every tree (or at most once per ``cache_seconds``, when given, however
many scrapers ask).
Nothing is kept between reads, so the exposition is always the stored state:
a tree without a snapshot has no series, and a Redis error yields
``northstar_exporter_up 0`` and no snapshot series (never stale values).

Labels come only from the definitions (tree, metric, role, dimension, owner),
from fixed state sets (status, state) and from breakdown labels, of which a
metric has at most ``max_values + 1`` (admitted values, then ``other``): the
cardinality is bounded by the definitions files, never by users or accounts. A missing dimension or owner is
the empty string, which Prometheus stores as "label absent".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import redis
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from streamer.evaluate.evaluator import load_snapshot
from streamer.evaluate.snapshot import MetricSnapshot, Snapshot
from streamer.spec.model import Tree
from streamer.state.store import Store

logger = logging.getLogger(__name__)

METRIC_LABELS = ("tree", "metric", "role", "dimension", "owner")
GUARDRAIL_LABELS = ("tree", "metric", "owner")
GUARDRAIL_STATUSES = ("ok", "degraded", "insufficient_data")
DIVERGENCE_STATES = ("inactive", "pending", "firing", "resolved")


@dataclass(frozen=True)
class Family:
    """One exported metric family: name, help text and label names."""

    name: str
    help: str
    labels: tuple[str, ...]


METRIC_VALUE = Family(
    "northstar_metric_value",
    "Value of a tree's metric at the snapshot's evaluation time, in the metric's unit",
    METRIC_LABELS,
)
METRIC_BASELINE = Family(
    "northstar_metric_baseline",
    "Baseline the metric's value is compared with (previous window or trailing average)",
    METRIC_LABELS,
)
METRIC_CHANGE = Family(
    "northstar_metric_change_ratio",
    "Relative change of the metric vs its baseline: (value - baseline) / |baseline|",
    METRIC_LABELS,
)
METRIC_BREAKDOWN = Family(
    "northstar_metric_breakdown_value",
    "Value of a broken-down metric for one label (an admitted value of its breakdown field, "
    "(none), or other), at the snapshot's evaluation time",
    (*METRIC_LABELS, "breakdown"),
)
GUARDRAIL_STATUS = Family(
    "northstar_guardrail_status",
    "Guardrail status, one-hot over ok, degraded and insufficient_data",
    (*GUARDRAIL_LABELS, "status"),
)
GUARDRAIL_DEGRADED = Family(
    "northstar_guardrail_degraded",
    "1 when the guardrail is degraded (significant, beyond tolerance, held for its `for`)",
    GUARDRAIL_LABELS,
)
GUARDRAIL_DEGRADATION = Family(
    "northstar_guardrail_degradation_ratio",
    "Relative degradation of the guardrail vs its baseline, positive when worse",
    GUARDRAIL_LABELS,
)
GUARDRAIL_TOLERANCE = Family(
    "northstar_guardrail_tolerance_ratio",
    "Relative degradation the guardrail's definition tolerates",
    GUARDRAIL_LABELS,
)
DIVERGENCE_STATE = Family(
    "northstar_divergence_state",
    "Divergence alert state, one-hot over inactive, pending, firing and resolved",
    ("tree", "state"),
)
DIVERGENCE_FIRING = Family(
    "northstar_divergence_firing",
    "1 when the divergence alert fires: North Star improving while a guardrail is degraded",
    ("tree",),
)
NORTH_STAR_TARGET = Family(
    "northstar_north_star_target",
    "Target of the tree's North Star from its definition, in the metric's unit",
    ("tree", "metric"),
)
SNAPSHOT_TIMESTAMP = Family(
    "northstar_snapshot_timestamp_seconds",
    "Evaluation time of the snapshot (event time when the clock is the watermark)",
    ("tree",),
)
SNAPSHOT_EVALUATED = Family(
    "northstar_snapshot_evaluated_timestamp_seconds",
    "Wall-clock time at which the snapshot was evaluated",
    ("tree",),
)
EXPORTER_UP = Family(
    "northstar_exporter_up",
    "1 when the last read of the snapshots from Redis succeeded",
    (),
)

FAMILIES: tuple[Family, ...] = (
    METRIC_VALUE,
    METRIC_BASELINE,
    METRIC_CHANGE,
    METRIC_BREAKDOWN,
    GUARDRAIL_STATUS,
    GUARDRAIL_DEGRADED,
    GUARDRAIL_DEGRADATION,
    GUARDRAIL_TOLERANCE,
    DIVERGENCE_STATE,
    DIVERGENCE_FIRING,
    NORTH_STAR_TARGET,
    SNAPSHOT_TIMESTAMP,
    SNAPSHOT_EVALUATED,
    EXPORTER_UP,
)
"""Every family the collector exports, in exposition order."""


class ExportError(Exception):
    """Base of the export package's errors."""


def _gauge(family: Family) -> GaugeMetricFamily:
    return GaugeMetricFamily(family.name, family.help, labels=family.labels)


def _metric_labels(tree: str, metric: MetricSnapshot) -> list[str]:
    return [
        tree,
        metric.get("name", ""),
        metric.get("role", ""),
        metric.get("dimension") or "",
        metric.get("owner") or "",
    ]


CACHE_SECONDS = 0.0
"""Default: no cache, each scrape reads the stored snapshots (one ``GET`` per
tree), so a scrape adds nothing to a value's age. A cache of ``c`` s adds up
to ``c`` to it: 0.5 s was 0.3-0.5 s of /metrics' freshness p99 under load
(docs/performance.md); set one only when scrapers poll many times a second."""


class SnapshotCollector:
    """Exports the latest snapshot of each of ``trees`` from ``store``.

    ``cache_seconds`` bounds Redis reads to one per interval (0 reads on every
    scrape); ``monotonic`` is the clock the cache uses. With ``registry`` the
    collector registers itself there, as prometheus_client's own collectors do.
    Safe to scrape from several threads at once.
    """

    def __init__(
        self,
        store: Store,
        trees: Sequence[Tree],
        *,
        cache_seconds: float = CACHE_SECONDS,
        registry: CollectorRegistry | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_seconds < 0:
            raise ExportError(f"cache_seconds must be >= 0, got {cache_seconds}")
        names = [tree.tree for tree in trees]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ExportError(f"trees given more than once: {', '.join(duplicates)}")
        self.store = store
        self.trees = tuple(trees)
        self.cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: list[Metric] | None = None
        self._cached_at = 0.0
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        """The families without samples: lets a registry check names without
        reading Redis at registration."""
        return [_gauge(family) for family in FAMILIES]

    def collect(self) -> Iterable[Metric]:
        """The families for this scrape, read from Redis or from the cache."""
        with self._lock:
            now = self._monotonic()
            if self._cached is None or now - self._cached_at >= self.cache_seconds:
                self._cached = self._read()
                self._cached_at = now
            return list(self._cached)

    # ------------------------------------------------------------------ reading
    def _read(self) -> list[Metric]:
        try:
            snapshots = [(tree, load_snapshot(self.store, tree.tree)) for tree in self.trees]
        except redis.exceptions.RedisError as exc:
            logger.warning("cannot read snapshots from Redis: %s", exc)
            return [self._up(0)]
        families = {family.name: _gauge(family) for family in FAMILIES}
        for tree, snapshot in snapshots:
            if snapshot is None:
                continue
            try:
                self._add(families, tree, snapshot)
            except (KeyError, TypeError, ValueError) as exc:
                # one malformed snapshot (a writer of another version) must not
                # hide the other trees
                logger.warning("skipping malformed snapshot of tree %s: %r", tree.tree, exc)
        families[EXPORTER_UP.name].add_metric([], 1)
        return list(families.values())

    @staticmethod
    def _up(value: int) -> Metric:
        up = _gauge(EXPORTER_UP)
        up.add_metric([], value)
        return up

    @staticmethod
    def _add(families: dict[str, GaugeMetricFamily], tree: Tree, snapshot: Snapshot) -> None:
        name = tree.tree
        staged: list[tuple[Family, list[str], float | None]] = []
        for metric in snapshot["metrics"]:
            labels = _metric_labels(name, metric)
            staged.append((METRIC_VALUE, labels, metric.get("value")))
            staged.append((METRIC_BASELINE, labels, metric.get("baseline")))
            staged.append((METRIC_CHANGE, labels, metric.get("change")))
            for part in metric.get("breakdown") or []:
                staged.append((METRIC_BREAKDOWN, [*labels, str(part["label"])], part.get("value")))
            if metric.get("role") != "guardrail":
                continue
            guard = [name, metric["name"], metric.get("owner") or ""]
            status = metric.get("status")
            if status in GUARDRAIL_STATUSES:
                for option in GUARDRAIL_STATUSES:
                    staged.append((GUARDRAIL_STATUS, [*guard, option], float(option == status)))
                staged.append((GUARDRAIL_DEGRADED, guard, float(status == "degraded")))
            staged.append((GUARDRAIL_DEGRADATION, guard, metric.get("degradation")))
            staged.append((GUARDRAIL_TOLERANCE, guard, metric.get("tolerance")))
        state = snapshot["divergence"]["state"]
        for option in DIVERGENCE_STATES:
            staged.append((DIVERGENCE_STATE, [name, option], float(option == state)))
        staged.append((DIVERGENCE_FIRING, [name], float(state == "firing")))
        staged.append((NORTH_STAR_TARGET, [name, tree.north_star.name], tree.north_star.target))
        staged.append((SNAPSHOT_TIMESTAMP, [name], snapshot["at"] / 1000))
        staged.append((SNAPSHOT_EVALUATED, [name], snapshot["evaluated_at"] / 1000))
        # convert everything before adding anything: a snapshot that fails
        # half-way adds no series at all
        samples = [
            (family, labels, float(value)) for family, labels, value in staged if value is not None
        ]
        for family, labels, value in samples:
            families[family.name].add_metric(labels, value)
