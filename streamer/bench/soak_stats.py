"""Soak verdicts: is a series flat or growing? Pure logic, no I/O.

A soak samples a handful of series over time (worker RSS, Redis memory, lag,
error counts). Start-up is allowed to move (caches fill, the consumer catches
up), so only the **second half** of the samples is judged: the least-squares
slope times the second half's span is the growth the trend predicts over that
span. A series is ``flat`` when that growth is at most its tolerance:

- gauges (memory, lag): ``max(rel * mean, floor)``, ``rel`` = 5 % by default
  and ``floor`` an absolute amount below which growth is noise (1 MiB of
  memory, one second of produced events of lag);
- counters of errors: ``zero`` when the count stayed 0 for the whole run,
  ``errors`` otherwise (there is no acceptable error rate in a soak).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["gauge", "errors"]

REL_TOLERANCE = 0.05
"""Growth over the second half allowed for a gauge, relative to its mean."""


@dataclass(frozen=True)
class Series:
    """One sampled quantity: its name, unit, kind and absolute tolerance floor."""

    name: str
    unit: str
    kind: Kind = "gauge"
    floor: float = 0.0
    expected_growth: str | None = None
    """Why this series may legitimately grow (printed with a ``growing`` verdict)."""


@dataclass(frozen=True)
class Verdict:
    series: str
    verdict: str  # flat | growing | zero | errors | no data
    mean: float | None
    growth: float | None
    """Trend growth over the second half (least squares), in the series' unit."""
    tolerance: float | None
    per_hour: float | None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "series": self.series, "verdict": self.verdict, "mean": _r(self.mean),
            "growth_second_half": _r(self.growth), "tolerance": _r(self.tolerance),
            "slope_per_hour": _r(self.per_hour), "note": self.note,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def slope(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (0 for fewer than 2 points)."""
    n = len(times)
    if n < 2:
        return 0.0
    mt = sum(times) / n
    mv = sum(values) / n
    var = sum((t - mt) ** 2 for t in times)
    if var == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=True)) / var


def judge(
    series: Series, times: Sequence[float], values: Sequence[float | None],
    rel: float = REL_TOLERANCE,
) -> Verdict:
    """The verdict on one series sampled at ``times`` (seconds)."""
    points = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
    if not points:
        return Verdict(series.name, "no data", None, None, None, None)
    if series.kind == "errors":
        last = points[-1][1]
        verdict = "zero" if all(v == 0 for _, v in points) else "errors"
        return Verdict(series.name, verdict, last, None, 0.0, None)
    half = points[len(points) // 2:] if len(points) >= 4 else points
    ts = [t for t, _ in half]
    vs = [v for _, v in half]
    mean = sum(vs) / len(vs)
    k = slope(ts, vs)
    growth = k * (ts[-1] - ts[0])
    tolerance = max(rel * abs(mean), series.floor)
    flat = growth <= tolerance
    note = None if flat else series.expected_growth
    return Verdict(series.name, "flat" if flat else "growing", mean, growth, tolerance, k * 3600, note)


def table(columns: Sequence[Series], rows: Sequence[dict[str, Any]], every: int = 1) -> str:
    """A fixed-width table: elapsed seconds, then one column per series;
    ``every`` keeps one row in ``every`` (the last row always)."""
    heads = ["t_s", *(f"{c.name} ({c.unit})" for c in columns)]
    kept = [r for i, r in enumerate(rows) if i % every == 0 or i == len(rows) - 1]
    body = [[f"{r['t_s']:.0f}", *(_cell(r.get(c.name)) for c in columns)] for r in kept]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.1f}"
    return f"{value:.0f}"


def verdict_lines(verdicts: Sequence[Verdict], units: dict[str, str]) -> str:
    lines = []
    for v in verdicts:
        unit = units.get(v.series, "")
        if v.verdict in ("flat", "growing"):
            detail = (f"mean {v.mean:.1f} {unit}, trend over 2nd half {v.growth:+.2f} {unit} "
                      f"(tolerance {v.tolerance:.2f}; {v.per_hour:+.1f} {unit}/h)")
        elif v.verdict in ("zero", "errors"):
            detail = f"total {v.mean:.0f}"
        else:
            detail = ""
        note = f"  [{v.note}]" if v.note else ""
        lines.append(f"{v.series:<22} {v.verdict.upper():<8} {detail}{note}")
    return "\n".join(lines)
