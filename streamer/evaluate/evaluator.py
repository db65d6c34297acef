"""The evaluator: on the faust leader, every few seconds, read every metric
now and one period earlier, judge guardrails and divergence, and store the
snapshot, the state machines and any alert events in one Redis transaction.

Alert events go to an outbox list in the same transaction, so a leader that
dies after evaluating loses nothing: the next leader delivers them
(streamer.evaluate.delivery); a leader that lost the race writes nothing
(``WATCH`` on the state key)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Literal

import orjson
import redis

from streamer.evaluate import divergence, guardrails
from streamer.evaluate.snapshot import (
    DivergenceSnapshot,
    LabelSnapshot,
    MetricSnapshot,
    Snapshot,
    alert_event,
)
from streamer.spec.model import Guardrail, Input, Metric, NorthStar, Tree
from streamer.state.breakdowns import breakdown_values
from streamer.state.evaluate import Reading, read_tree
from streamer.state.keys import Keys
from streamer.state.store import Store
from streamer.windows.units import Plan, compile_tree

logger = logging.getLogger(__name__)
HISTORY_LENGTH = 720
Clock = Literal["watermark", "wall"]


def relative_change(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return (value - baseline) / abs(baseline)


def baseline_times(metric: Metric, at: int) -> list[int]:
    """Evaluation times whose values make up ``metric``'s baseline at ``at``."""
    w = metric.window * 1000
    periods = 1
    if isinstance(metric, Guardrail) and metric.baseline.kind == "trailing_average":
        periods = metric.baseline.periods
    return [at - k * w for k in range(1, periods + 1)]


def baseline_value(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


class TreeEvaluator:
    def __init__(self, store: Store, tree: Tree, clock: Clock = "watermark",
                 wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self.tree = tree
        self.plan: Plan = compile_tree(tree)
        self.clock = clock
        self.wall = wall
        self.keys = Keys(store.keys.namespace)

    # ------------------------------------------------------------------ keys
    def key(self, suffix: str) -> str:
        return self.keys.tree(self.tree.tree, suffix)

    def now(self) -> int | None:
        """The evaluation time: the greatest watermark over partitions (event
        time), or the wall clock."""
        if self.clock == "wall":
            return int(self.wall() * 1000)
        marks = self.store.client.hvals(self.keys.watermark(self.tree.tree))
        return max((int(m) for m in marks), default=None)

    # ------------------------------------------------------------------ one run
    def evaluate(self, at: int | None = None) -> tuple[Snapshot, list[dict[str, Any]]] | None:
        """Evaluate at ``at`` (default: now), persist, and return the snapshot
        and the alert events it produced; None when there is no data yet,
        another evaluator wrote first, or a later time was evaluated already."""
        at = self.now() if at is None else at
        if at is None:
            return None
        times = sorted({at} | {t for _, m in self.tree.metrics() for t in baseline_times(m, at)}, reverse=True)
        rows = dict(zip(times, read_tree(self.store, self.plan, times), strict=True))
        labels: dict[str, list[LabelSnapshot]] = {
            name: [{"label": lv.label, "value": lv.value} for lv in values]
            for name, values in breakdown_values(self.store, self.plan, [at])[0].items()
        }
        state_key = self.key("evalstate")
        # every key of the tree shares the {tree} hash tag: one node, one transaction
        client = self.store.node_client(state_key)
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(state_key)
                raw = pipe.get(state_key)
                state = orjson.loads(raw) if raw else {}
                if at < state.get("at", at):
                    # a leader that lost its place during a fail-over, evaluating an
                    # older time than the new one already did: it would turn the
                    # state machines back in time
                    logger.info("%s was evaluated at a later time already; skipping", self.tree.tree)
                    return None
                snapshot, new_state, events = self._judge(at, rows, state, labels)
                pipe.multi()
                blob = orjson.dumps(snapshot)
                pipe.set(state_key, orjson.dumps(new_state))
                pipe.set(self.key("snapshot"), blob)
                pipe.zadd(self.key("history"), {blob: at})
                pipe.zremrangebyrank(self.key("history"), 0, -HISTORY_LENGTH - 1)
                for event in events:
                    pipe.rpush(self.key("outbox"), orjson.dumps(event))
                pipe.execute()
            except redis.exceptions.WatchError:
                logger.info("another evaluator updated %s first; skipping", self.tree.tree)
                return None
        return snapshot, events

    def _judge(self, at: int, rows: dict[int, dict[str, Reading]], state: dict[str, Any],
               labels: dict[str, list[LabelSnapshot]] | None = None,
               ) -> tuple[Snapshot, dict[str, Any], list[dict[str, Any]]]:
        current = rows[at]
        metrics: list[MetricSnapshot] = []
        guard_states = dict(state.get("guardrails", {}))
        degraded: list[str] = []
        north_change: float | None = None
        for role, metric in self.tree.metrics():
            reading = current[metric.name]
            times = baseline_times(metric, at)
            base = baseline_value([rows[t][metric.name].value for t in times])
            change = relative_change(reading.value, base)
            snap: MetricSnapshot = {
                "name": metric.name, "title": metric.title, "role": role,
                "dimension": metric.dimension if isinstance(metric, Input) else None,
                "owner": getattr(metric, "owner", None), "direction": metric.direction,
                "unit": metric.unit, "window_seconds": metric.window,
                "value": reading.value, "baseline": base, "change": change, "sample": reading.sample,
                "status": None, "degradation": None, "p_value": None, "tolerance": None,
                "breakdown": (labels or {}).get(metric.name),
            }
            if isinstance(metric, Guardrail):
                assessment = guardrails.assess(metric, reading, rows[times[0]][metric.name], base)
                previous = guardrails.GuardState(**guard_states.get(metric.name, {}))
                after = guardrails.step(previous, assessment, metric, at)
                guard_states[metric.name] = asdict(after)
                snap["status"] = after.status
                snap["degradation"] = assessment.degradation
                snap["p_value"] = assessment.evidence.p_value if assessment.evidence else None
                snap["tolerance"] = metric.tolerance
                if after.status == "degraded":
                    degraded.append(metric.name)
            if isinstance(metric, NorthStar):
                north_change = change
            metrics.append(snap)
        north = self.tree.north_star
        improving = divergence.improving(north_change, north.min_improvement, north.direction)
        before = divergence.AlertState(**state.get("divergence", {}))
        after_alert = divergence.step(before, improving and bool(degraded), self.tree.alerting.for_ * 1000, at)
        div: DivergenceSnapshot = {
            "state": after_alert.state, "since": after_alert.since, "started": after_alert.started,
            "north_star_improving": improving, "degraded": degraded,
        }
        snapshot: Snapshot = {
            "tree": self.tree.tree, "product": self.tree.product, "at": at, "clock": self.clock,
            "evaluated_at": int(self.wall() * 1000), "metrics": metrics, "divergence": div,
        }
        events = [alert_event(snapshot, before.state)] if after_alert.state != before.state else []
        new_state = {"guardrails": guard_states, "divergence": asdict(after_alert), "at": at}
        return snapshot, new_state, events


class Evaluator:
    """Evaluates every tree; ``run_once`` is what each tick on the leader calls."""

    def __init__(self, store: Store, trees: Sequence[Tree], clock: Clock = "watermark") -> None:
        self.trees = [TreeEvaluator(store, t, clock) for t in trees]

    def run_once(self) -> list[tuple[Snapshot, list[dict[str, Any]]]]:
        out = []
        for evaluator in self.trees:
            result = evaluator.evaluate()
            if result is not None:
                out.append(result)
        return out


def load_snapshot(store: Store, tree: str) -> Snapshot | None:
    raw = store.client.get(Keys(store.keys.namespace).tree(tree, "snapshot"))
    if not raw:
        return None
    snapshot: Snapshot = orjson.loads(raw)
    return snapshot
