"""Ratios, targets and the printed table of a ``northstar bench`` result.

Benchmarks print figures; they never fail: a target reads "met" or "missed"
(or "n/a" when its section did not run), and the exit code does not depend
on it. A ratio against a peer whose values differ from northstar's is void
(None), since the peer did not compute the same thing. A peer's target is
judged on the same records for both systems (``northstar_vs_<peer>_same_events``:
the main topic when the peer ran it, else the peers' topic);
``northstar_vs_<peer>`` (northstar's main topic against the peer's smaller
one) is printed too, but mixes two workloads.
"""

from __future__ import annotations

import statistics
from typing import Any

TARGETS = (
    ("northstar_vs_ceiling", ">=", 0.5,
     "northstar events/s >= 50% of the ceiling (aiokafka + orjson; the median of the interleaved pairs)"),
    ("northstar_vs_faust_same_events", ">=", 10.0, "northstar events/s >= 10x the faust-table peer, same records"),
    ("northstar_vs_quixstreams_same_events", ">=", 3.0,
     "northstar events/s >= 3x the Quix Streams peer, same records"),
    ("freshness_snapshot_p99_s", "<=", 2.0, "freshness p99 <= 2 s (snapshot in Redis)"),
    ("freshness_metrics_p99_s", "<=", 2.0, "freshness p99 <= 2 s (/metrics)"),
    ("eval_ms_1m_users", "<=", 50.0, "evaluating the tree <= 50 ms with 1M users"),
    ("eval_ms_largest_vs_smallest", "<=", 1.5,
     "evaluation flat: the largest population costs <= 1.5x the smallest"),
    ("eval_ms_more_events_vs_same_users", "<=", 1.5,
     "evaluation flat in events: the same users with 10x the events cost <= 1.5x"),
    ("restart_s", "<=", 5.0, "restart (SIGKILL to processing again) <= 5 s"),
)


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _div(a: Any, b: Any) -> float | None:
    if a is None or b in (None, 0):
        return None
    return round(float(a) / float(b), 3)


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    one = _get(result, "northstar", "one_worker", "events_per_s")
    first = _div(one, _get(result, "ceiling", "consume", "events_per_s"))
    # the target: the median over the interleaved (ceiling, one worker) pairs when they ran
    paired = [p["ratio"] for p in result.get("pairs") or () if p.get("ratio") is not None]
    out = {
        "northstar_vs_ceiling": round(statistics.median(paired), 3) if paired else first,
        "northstar_vs_ceiling_first_pair": first,
        "northstar_vs_ceiling_lowest_pair": min(paired) if paired else first,
        "northstar_vs_ceiling_highest_pair": max(paired) if paired else first,
        # what the least exact work leaves of the ceiling, and how close northstar gets to it
        "floor_vs_ceiling": _div(_get(result, "ceiling", "floor", "events_per_s"),
                                 _get(result, "ceiling", "consume", "events_per_s")),
        "northstar_vs_floor": _div(one, _get(result, "ceiling", "floor", "events_per_s")),
        "two_workers_vs_one": _div(_get(result, "northstar", "two_workers", "events_per_s"), one),
    }
    same_n = _get(result, "peers", "northstar", "events_per_s")
    for peer in ("faust", "quixstreams"):
        data = _get(result, "peers", peer) or {}
        valid = data.get("available") and data.get("equal")
        rate = data.get("events_per_s") if valid else None
        out[f"northstar_vs_{peer}"] = _div(one, rate)
        out[f"northstar_vs_{peer}_same_records"] = _div(same_n, rate)
        main = _get(result, "peers", f"{peer}_main_topic") or {}
        on_main = None
        if main:
            on_main = out[f"northstar_vs_{peer}_main_topic"] = _div(
                one, main.get("events_per_s") if main.get("available") and main.get("equal") else None)
        # the target's ratio: both systems over the same records, the main
        # topic's when the peer ran it (the larger run), else the peers' topic
        out[f"northstar_vs_{peer}_same_events"] = on_main if on_main is not None else out[
            f"northstar_vs_{peer}_same_records"]
    out["restart_faust_vs_northstar"] = _div(
        _get(result, "restart", "faust", "kill_to_processing_s"),
        _get(result, "restart", "northstar", "kill_to_processing_median_s"),
    )
    return out


def _eval_at_1m(result: dict[str, Any]) -> float | None:
    """Measured with 1M+ users, else extrapolated from the populations that ran."""
    from streamer.bench.evaluation import extrapolate

    rows = _get(result, "evaluation", "rows") or []
    big = [r for r in rows if r["users"] >= 1_000_000]
    if big:
        return float(big[0]["eval_ms_median"])
    fit = extrapolate(rows, "eval_ms_median", 1_000_000, "log")
    return fit["predicted"] if fit else None


def targets(result: dict[str, Any], ratio: dict[str, float | None]) -> list[dict[str, Any]]:
    values: dict[str, Any] = dict(ratio)
    values["freshness_snapshot_p99_s"] = _get(result, "freshness", "snapshot", "p99_s")
    values["freshness_metrics_p99_s"] = _get(result, "freshness", "metrics_endpoint", "p99_s")
    values["eval_ms_1m_users"] = _eval_at_1m(result)
    values["eval_ms_largest_vs_smallest"] = _get(result, "evaluation", "eval_ms_largest_vs_smallest")
    values["eval_ms_more_events_vs_same_users"] = _get(
        result, "evaluation", "more_events", "eval_ms_more_events_vs_same_users")
    values["restart_s"] = _get(result, "restart", "northstar", "kill_to_processing_median_s")
    out = []
    for key, op, bound, text in TARGETS:
        value = values.get(key)
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out.append({"name": key, "target": text, "bound": f"{op} {bound:g}", "value": value,
                    "status": "n/a" if met is None else ("met" if met else "missed")})
    return out


CPU_RUNS = (
    ("ceiling", ("ceiling", "consume")),
    ("floor", ("ceiling", "floor")),
    ("northstar_one_worker", ("northstar", "one_worker")),
)


def cpu_budget(result: dict[str, Any]) -> dict[str, Any] | None:
    """What the machine's cores allow: the CPU per event the ceiling target
    leaves (``cores / (0.5 x ceiling)``: every process of the run together,
    with every core busy all the time), and for the ceiling, the floor and
    one worker their measured CPU per event and the rate it would allow on
    the same cores with no idle time at all (``at_most_events_per_s``). A
    run whose CPU per event exceeds the budget cannot reach the target on
    this machine however well its processes overlap. None when the ceiling
    or the core count is missing."""
    cores = _get(result, "machine", "cpus")
    ceiling_rate = _get(result, "ceiling", "consume", "events_per_s")
    if not cores or not ceiling_rate:
        return None
    target_bound = next(bound for key, _, bound, _ in TARGETS if key == "northstar_vs_ceiling")
    target = target_bound * float(ceiling_rate)
    out: dict[str, Any] = {"cores": cores, "target_events_per_s": round(target, 1),
                           "budget_us_per_event": round(cores / target * 1e6, 2)}
    for name, path in CPU_RUNS:
        cpu = _get(result, *path, "cpu")
        total = (cpu or {}).get("total_us_per_event")
        if not total:
            continue
        at_most = cores / total * 1e6
        out[name] = {**cpu, "at_most_events_per_s": round(at_most, 1),
                     "at_most_vs_ceiling": round(at_most / float(ceiling_rate), 3),
                     "within_budget": total <= out["budget_us_per_event"]}
    return out


def finish(result: dict[str, Any]) -> dict[str, Any]:
    """The result with ``ratios``, ``targets`` and ``cpu_budget`` added."""
    ratio = ratios(result)
    return {**result, "ratios": ratio, "targets": targets(result, ratio), "cpu_budget": cpu_budget(result)}


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return text + unit


def table(result: dict[str, Any]) -> str:
    """The human-readable summary (``northstar bench`` without ``--json``)."""
    def g(*path: str) -> Any:
        return _get(result, *path)

    rows: list[tuple[str, str, str]] = []

    def row(what: str, value: Any, note: str = "", unit: str = "") -> None:
        rows.append((what, _fmt(value, unit), note))

    m = result.get("machine", {})
    row("machine", f"{m.get('cpus')} cpus, {m.get('cpu_model')}, {m.get('memory_gib')} GiB",
        f"python {m.get('python')}, redis {m.get('redis')}, {m.get('broker')}")
    row("run, UTC", f"{g('started_utc')} to {g('ended_utc')}", f"{_fmt(g('wall_seconds'))} s")
    row("load average start / end", f"{g('load_average_start')} / {g('load_average_end')}")
    records = g("workload", "records")
    row("ceiling: aiokafka getmany + orjson", g("ceiling", "consume", "events_per_s"), f"{_fmt(records)} records",
        " ev/s")
    row("ceiling: redis-py pipelined HINCRBY", g("ceiling", "redis_pipeline", "commands_per_s"), "one process",
        " cmd/s")
    row("floor: ceiling + least exact Redis state", g("ceiling", "floor", "events_per_s"),
        "dedupe answered per insert id, learners per day, funnel starts", " ev/s")
    row("northstar, 1 worker", g("northstar", "one_worker", "events_per_s"),
        f"{_fmt(records)} records, RSS {_fmt(g('northstar', 'one_worker', 'worker_rss_max_mib'))} MiB", " ev/s")
    for i, pair in enumerate(g("pairs") or [], 1):
        row(f"pair {i}: ceiling / 1 worker", f"{_fmt(pair['ceiling_events_per_s'])} / "
            f"{_fmt(pair['one_worker_events_per_s'])} ev/s", f"ratio {_fmt(pair['ratio'])}")
    row("northstar, 2 workers", g("northstar", "two_workers", "events_per_s"),
        f"RSS {_fmt(g('northstar', 'two_workers', 'worker_rss_max_mib'))} MiB", " ev/s")
    peer_records = g("peers", "records")
    row("northstar, 1 worker, peer topic", g("peers", "northstar", "events_per_s"), f"{_fmt(peer_records)} records",
        " ev/s")
    for peer in ("faust", "quixstreams"):
        data = g("peers", peer) or {}
        if data.get("available"):
            note = f"{_fmt(peer_records)} records; values equal northstar: {data.get('equal')}"
            if data.get("differences"):
                note += " (" + "; ".join(data["differences"][:3]) + ")"
            row(f"peer {peer}", data.get("events_per_s"), note, " ev/s")
        elif data:
            row(f"peer {peer}", None, data.get("reason", ""))
        main = g("peers", f"{peer}_main_topic") or {}
        if main:
            row(f"peer {peer}, main topic", main.get("events_per_s"),
                f"{_fmt(main.get('records'))} records; values equal northstar: {main.get('equal')}", " ev/s")
    for name, label in (("snapshot", "snapshot in Redis"), ("metrics_endpoint", "/metrics")):
        d = g("freshness", name) or {}
        row(f"freshness p50 / p99, {label}", f"{_fmt(d.get('p50_s'))} / {_fmt(d.get('p99_s'))} s",
            f"{_fmt(g('freshness', 'rate_produced_events_per_s'))} ev/s, evaluate every "
            f"{_fmt(g('freshness', 'evaluate_interval_s'))} s, {d.get('markers')} markers")
    for name, label in (("produced_to_applied", "produced to applied"), ("applied_to_snapshot", "applied to snapshot")):
        d = g("freshness", "parts", name) or {}
        if d:
            row(f"freshness p50 / p99, {label}", f"{_fmt(d.get('p50_s'))} / {_fmt(d.get('p99_s'))} s",
                "where the snapshot's delay goes")
    for r in g("evaluation", "rows") or []:
        row(f"evaluation, {r['users']:,} users", r["eval_ms_median"],
            f"{_fmt(r.get('active_in_window'))} active in the window, {r['events']:,} events, "
            f"Redis {r['redis_used_mib']} MiB", " ms")
    more = g("evaluation", "more_events") or {}
    if more:
        r = more["row"]
        row(f"evaluation, {r['users']:,} users, {more['factor']}x the events", r["eval_ms_median"],
            f"{r['events']:,} events ({r['events_per_user']} per user), Redis {r['redis_used_mib']} MiB; "
            f"{more['eval_ms_more_events_vs_same_users']}x the same users' time", " ms")
    fit = g("evaluation", "eval_ms_fit")
    if fit:
        row(f"evaluation, {fit['at_users']:,} users (extrapolated)", fit["predicted"],
            f"fit in log10(users): {fit['slope']:+.3f} ms per tenfold users", " ms")
    d = g("memory", "distinct") or {}
    if d:
        row("memory: distinct exact", g("memory", "distinct", "exact", "used_memory_bytes_per_user"),
            f"{d.get('users'):,} users, used_memory delta", " B/user")
        row("memory: distinct HyperLogLog", g("memory", "distinct", "hll", "used_memory_bytes_per_user"),
            "same events, approximate: true", " B/user")
        row("memory: whole education tree", g("memory", "per_unit", "all_units_bytes_per_user"),
            "MEMORY USAGE of every unit's keys", " B/user")
    for name, data in (g("memory", "per_unit", "metrics") or {}).items():
        row(f"  {name}", data["bytes_per_user"], f"units {', '.join(data['units'])}", " B/user")
    row("restart northstar (median)", g("restart", "northstar", "kill_to_processing_median_s"),
        f"session timeout {_fmt(g('restart', 'northstar', 'session_timeout_ms'))} ms, trials "
        f"{g('restart', 'northstar', 'kill_to_processing_s')} s", " s")
    row("restart northstar, no instance id", g("restart", "northstar_without_instance_id",
                                                 "kill_to_processing_median_s"),
        "the killed member stays until its session expires; trials "
        f"{g('restart', 'northstar_without_instance_id', 'kill_to_processing_s')} s", " s")
    row("restart faust peer (changelog)", g("restart", "faust", "kill_to_processing_s"),
        f"killed after {_fmt(g('restart', 'faust', 'killed_after_records'))} records", " s")
    budget = result.get("cpu_budget") or {}
    if budget:
        row("CPU budget at the ceiling target", budget["budget_us_per_event"],
            f"{budget['cores']} cores at {_fmt(budget['target_events_per_s'])} ev/s, every process together",
            " us/ev")
    for name, _ in CPU_RUNS:
        cpu = budget.get(name)
        if cpu:
            broker = cpu.get("broker_us_per_event")
            row(f"CPU per event, {name.replace('_', ' ')}", cpu["total_us_per_event"],
                f"client {_fmt(cpu['client_us_per_event'])} + redis {_fmt(cpu['redis_us_per_event'])} + broker "
                f"{_fmt(broker)}; {_fmt(cpu['cores_busy'])} cores busy; all cores busy: at most "
                f"{_fmt(cpu['at_most_events_per_s'])} ev/s ({_fmt(cpu['at_most_vs_ceiling'])} of the ceiling)",
                " us/ev")
    for name, value in (result.get("ratios") or {}).items():
        row(f"ratio {name}", value)
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    lines = [f"{what:<{width}}  {value:>{vwidth}}  {note}".rstrip() for what, value, note in rows]
    lines.append("")
    for t in result.get("targets") or []:
        lines.append(f"[{t['status']:^6}] {t['target']}: {_fmt(t['value'])}")
    return "\n".join(lines)
