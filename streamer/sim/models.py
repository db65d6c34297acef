"""Behaviour models of the example products. Each yields Amplitude-shaped
events (dicts) in event-time order, one simulated day at a time, deterministic
for a seed. The scenario's drift applies from ``drift_from_ms`` on."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from streamer.sim.scenarios import Drift, factor

DAY_MS = 86_400_000
Event = dict[str, Any]


def _event(rng: random.Random, name: str, user: str, t: int, props: dict[str, Any] | None = None,
           groups: dict[str, Any] | None = None) -> Event:
    ev: Event = {"event_type": name, "user_id": user, "time": t, "insert_id": f"{rng.getrandbits(64):016x}"}
    if props:
        ev["event_properties"] = props
    if groups:
        ev["groups"] = groups
    return ev


@dataclass
class Education:
    """Learners take lessons (started -> completed or abandoned), some buy a
    subscription, a few ask for refunds."""

    users: int = 400
    base_activity: float = 0.35
    base_minutes: float = 14.0
    base_abandon: float = 0.18
    signups_per_day: float = 12.0
    base_churn: float = 0.03
    base_refund: float = 0.06
    _known: list[str] = field(default_factory=list)
    _next: int = 0
    _last_active: dict[str, int] = field(default_factory=dict)

    def day(self, rng: random.Random, day_start: int, drift: Drift, days: float) -> Iterator[Event]:
        noise = 1.0 + rng.gauss(0, drift.noise)
        activity = self.base_activity * factor(drift.activity, days) * noise
        returning = factor(drift.returning_activity, days)
        minutes = self.base_minutes * factor(drift.minutes, days)
        abandon = min(0.9, self.base_abandon * factor(drift.abandon, days))
        refund = min(0.9, self.base_refund * factor(drift.refunds, days))
        churn = min(0.5, self.base_churn * factor(drift.churn, days))
        out: list[Event] = []
        if not self._known and self._next == 0:
            self._known = [f"learner-{i}" for i in range(self.users)]
            self._next = self.users
        for _ in range(max(0, round(rng.gauss(self.signups_per_day * factor(drift.signups, days), 2)))):
            self._next += 1
            user = f"learner-{self._next}"
            self._known.append(user)
            t = day_start + rng.randrange(DAY_MS - 6 * 3_600_000)
            out.append(_event(rng, "signed_up", user, t))
            if rng.random() < 0.7:  # first lesson within hours
                out += self._lessons(rng, user, t + rng.randrange(60_000, 5 * 3_600_000), 1, minutes, abandon)
        # learners leave for good; steady state: users ~ signups / churn
        self._known = [u for u in self._known if rng.random() >= churn]
        for user in self._known:
            recent = day_start - self._last_active.get(user, -10 * DAY_MS) <= 7 * DAY_MS
            p = min(0.95, activity * (returning if recent else 1.0))
            if rng.random() >= p:
                continue
            self._last_active[user] = day_start
            t = day_start + rng.randrange(DAY_MS - 3_600_000)
            out += self._lessons(rng, user, t, 1 + int(rng.expovariate(1.2)), minutes, abandon)
            if rng.random() < 0.015:
                plan = rng.choice(["monthly", "annual"])
                amount = 12.0 if plan == "monthly" else 99.0
                out.append(_event(rng, "subscription_purchased", user, t + 1000, {"plan": plan, "amount_usd": amount}))
                if rng.random() < refund:
                    out.append(_event(rng, "refund_issued", user, t + 3_600_000, {"amount_usd": amount}))
        out.sort(key=lambda e: int(e["time"]))
        yield from (e for e in out if int(e["time"]) < day_start + DAY_MS)

    def _lessons(self, rng: random.Random, user: str, t: int, n: int, minutes: float,
                 abandon: float) -> list[Event]:
        out = []
        for _ in range(n):
            lesson = rng.randrange(300)
            props = {"lesson_id": f"L{lesson}", "course_id": f"C{lesson // 20}"}
            out.append(_event(rng, "lesson_started", user, t, props))
            if rng.random() < abandon:
                m = max(1, round(rng.uniform(1, minutes / 3)))
                t += m * 60_000
                out.append(_event(rng, "lesson_abandoned", user, t, {**props, "minutes": m}))
            else:
                m = max(1, round(rng.gauss(minutes, minutes / 4)))
                t += m * 60_000
                out.append(_event(rng, "lesson_completed", user, t, {**props, "minutes": m}))
            t += rng.randrange(60_000, 600_000)
        return out


@dataclass
class LearningUsers:
    """Analysts in organizations share learnings; colleagues view them."""

    users: int = 300
    orgs: int = 12
    share_rate: float = 0.12
    views_per_share: float = 2.5
    _pending: list[tuple[int, str, str]] = field(default_factory=list)

    def day(self, rng: random.Random, day_start: int, drift: Drift, days: float) -> Iterator[Event]:
        noise = 1.0 + rng.gauss(0, drift.noise)
        share = min(0.9, self.share_rate * factor(drift.activity, days) * noise)
        views = self.views_per_share * factor(drift.returning_activity, days)
        out: list[Event] = []
        for i in range(self.users):
            user, org = f"analyst-{i}", f"org-{i % self.orgs}"
            if rng.random() < share:
                t = day_start + rng.randrange(DAY_MS - 3_600_000)
                learning = f"chart-{rng.getrandbits(32):08x}"
                out.append(_event(rng, "learning_shared", user, t, {"learning_id": learning}, {"org": org}))
                for _ in range(int(rng.expovariate(1 / views))):
                    viewer = f"analyst-{rng.randrange(self.users // self.orgs) * self.orgs + i % self.orgs}"
                    lag = rng.randrange(60_000, 3 * DAY_MS)
                    self._pending.append((t + lag, viewer, learning))
        due = [p for p in self._pending if p[0] < day_start + DAY_MS]
        self._pending = [p for p in self._pending if p[0] >= day_start + DAY_MS]
        for t, viewer, learning in due:
            org = f"org-{int(viewer.split('-')[1]) % self.orgs}"
            out.append(_event(rng, "learning_viewed", viewer, t, {"learning_id": learning}, {"org": org}))
        out.sort(key=lambda e: int(e["time"]))
        yield from out


MODELS = {"education": Education, "learning_users": LearningUsers}


Schedule = list[tuple[int, Drift]]
"""(from_ms, drift) pairs, ascending: each drift applies from its start time,
compounded over the days since that start."""


def simulate(tree: str, start_ms: int, days: int, drift: Drift, drift_from_ms: int | None = None,
             seed: int = 1, schedule: Schedule | None = None, **model_args: Any) -> Iterator[Event]:
    """Events of ``days`` simulated days from ``start_ms`` (a UTC midnight) in
    time order. Without a ``schedule``, behaviour is steady until
    ``drift_from_ms`` and drifts by ``drift`` after it."""
    if tree not in MODELS:
        raise KeyError(f"no simulation model for tree {tree!r}; known: {', '.join(sorted(MODELS))}")
    rng = random.Random(seed)
    model = MODELS[tree](**model_args)
    plan = schedule or [(start_ms if drift_from_ms is None else drift_from_ms, drift)]
    for d in range(days):
        day_start = start_ms + d * DAY_MS
        active = [(t, dr) for t, dr in plan if t <= day_start]
        since, current = active[-1] if active else (day_start, Drift())
        yield from model.day(rng, day_start, current, (day_start - since) / DAY_MS)
