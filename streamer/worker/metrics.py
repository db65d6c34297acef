"""Every operational metric a worker emits, in one place (bounded labels only:
tree, reason, partition-free). Values of the North Star tree itself are
exported by the evaluator's collector, not here."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# `_created` series double the exposition and nobody graphs them
disable_created_metrics()  # type: ignore[no-untyped-call]


STAGES = ("prepare", "verdicts", "aggregate", "apply")
"""The values of ``northstar_batch_stage_seconds``'s ``stage`` label: a
batch's prepare, then its commit's three (``BatchResult.stages``)."""


LEAVE_OUTCOMES = ("left", "refused", "failed")
"""The values of ``northstar_previous_member_leaves_total``'s ``outcome``
label (streamer/worker/membership.py): the broker took the ``LeaveGroup``
for this instance's killed process, answered it with an error (e.g. the
member had expired already), or it could not be sent (Redis or the broker
unreachable)."""


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter("northstar_events_total", "Records read from source topics", registry=r)
        self.accepted = Counter(
            "northstar_events_accepted_total", "Events applied to state", ["tree"], registry=r
        )
        self.invalid = Counter(
            "northstar_events_invalid_total", "Records rejected by decoding, by reason", ["reason"], registry=r
        )
        self.late = Counter(
            "northstar_events_late_total", "Events older than the lateness horizon, dropped", ["tree"], registry=r
        )
        self.duplicates = Counter(
            "northstar_events_duplicate_total", "Events with an insert id already applied", ["tree"], registry=r
        )
        self.dead_letters = Counter(
            "northstar_dead_letters_total", "Records written to the dead-letter topic", registry=r
        )
        self.batches = Counter("northstar_batches_total", "Batches applied", registry=r)
        self.batch_size = Histogram(
            "northstar_batch_size_records",
            "Records per applied batch",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10_000, 25_000),
            registry=r,
        )
        self.latency = Histogram(
            "northstar_batch_processing_seconds",
            "Time from fetch to committed offset, per batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.stage = Histogram(
            "northstar_batch_stage_seconds",
            "Time per batch in each stage of the write path: prepare (decode, verdict requests), "
            "verdicts (round trip 1), aggregate (the Python between the round trips), apply (round trip 2)",
            ["stage"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.lag = Gauge(
            "northstar_consumer_lag_records",
            "Records behind the high watermark, summed over assigned partitions",
            registry=r,
        )
        self.evaluations = Counter(
            "northstar_evaluations_total",
            "Evaluator runs on this worker (only the faust leader evaluates)",
            registry=r,
        )
        self.previous_member_leaves = Counter(
            "northstar_previous_member_leaves_total",
            "LeaveGroup sent at start for this instance's killed process (NORTHSTAR_INSTANCE_ID), by outcome",
            ["outcome"],
            registry=r,
        )
        for outcome in LEAVE_OUTCOMES:
            self.previous_member_leaves.labels(outcome)
        self.assigned = Gauge("northstar_assigned_partitions", "Partitions assigned to this worker", registry=r)
        self.redis_up = Gauge("northstar_redis_up", "1 when the last Redis call succeeded", registry=r)
        self.last_event_time = Gauge(
            "northstar_last_event_timestamp_seconds", "Event time of the newest applied event", ["tree"], registry=r
        )

    def record(self, counts: dict[str, int]) -> None:
        """Add a BatchResult's counts."""
        for key, n in counts.items():
            kind, _, label = key.partition(":")
            if kind == "accepted":
                self.accepted.labels(label).inc(n)
            elif kind == "late":
                self.late.labels(label).inc(n)
            elif kind == "duplicate":
                self.duplicates.labels(label).inc(n)
            elif kind == "rejected":
                self.invalid.labels(label).inc(n)
