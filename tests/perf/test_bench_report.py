"""Ratios and targets of a bench result (pure: no services)."""

from __future__ import annotations

from typing import Any

from streamer.bench.report import finish


def _result(quix_main: dict[str, Any] | None) -> dict[str, Any]:
    peers: dict[str, Any] = {
        "northstar": {"events_per_s": 30_000.0},
        "faust": {"available": True, "equal": True, "events_per_s": 2_000.0},
        "quixstreams": {"available": True, "equal": True, "events_per_s": 12_000.0},
    }
    if quix_main is not None:
        peers["quixstreams_main_topic"] = quix_main
    return {"northstar": {"one_worker": {"events_per_s": 36_000.0}}, "ceiling": {"consume": {"events_per_s": 180_000.0}},
            "peers": peers}


def _target(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in result["targets"] if t["name"] == name)


def test_peer_targets_compare_the_same_records() -> None:
    # main topic ran: 36k vs 10k on the same 1M records
    done = finish(_result({"available": True, "equal": True, "events_per_s": 10_000.0}))
    assert done["ratios"]["northstar_vs_quixstreams_same_events"] == 3.6
    assert done["ratios"]["northstar_vs_quixstreams"] == 3.0  # across topics: printed, not judged
    assert _target(done, "northstar_vs_quixstreams_same_events")["status"] == "met"
    # no main-topic run: the peers' topic for both (30k vs 12k)
    done = finish(_result(None))
    assert done["ratios"]["northstar_vs_quixstreams_same_events"] == 2.5
    assert _target(done, "northstar_vs_quixstreams_same_events")["status"] == "missed"
    assert done["ratios"]["northstar_vs_faust_same_events"] == 15.0
    assert _target(done, "northstar_vs_ceiling")["value"] == 0.2


def test_a_peer_with_other_values_voids_its_ratio() -> None:
    done = finish(_result({"available": True, "equal": False, "events_per_s": 10_000.0}))
    # the main-topic run computed other values: its ratio is void, the peers' topic is judged
    assert done["ratios"]["northstar_vs_quixstreams_main_topic"] is None
    assert done["ratios"]["northstar_vs_quixstreams_same_events"] == 2.5
    result = _result(None)
    result["peers"]["faust"]["equal"] = False
    done = finish(result)
    assert done["ratios"]["northstar_vs_faust_same_events"] is None
    assert _target(done, "northstar_vs_faust_same_events")["status"] == "n/a"


def _cpu(total: float) -> dict[str, float]:
    return {"client_us_per_event": total / 2, "redis_us_per_event": total / 2, "broker_us_per_event": 0.0,
            "total_us_per_event": total, "cores_busy": 1.5}


def test_the_cpu_budget_says_what_the_cores_allow() -> None:
    result = _result(None)
    result["machine"] = {"cpus": 2}
    result["ceiling"]["consume"]["cpu"] = _cpu(8.0)
    result["ceiling"]["floor"] = {"events_per_s": 70_000.0, "cpu": _cpu(20.0)}
    result["northstar"]["one_worker"]["cpu"] = _cpu(40.0)
    budget = finish(result)["cpu_budget"]
    # 50% of a 180k/s ceiling on 2 cores: 2 s of CPU per 90k events
    assert budget["target_events_per_s"] == 90_000.0
    assert budget["budget_us_per_event"] == 22.22
    assert budget["floor"]["at_most_events_per_s"] == 100_000.0  # 2 cores / 20 us
    assert budget["floor"]["within_budget"] is True
    assert budget["northstar_one_worker"]["at_most_events_per_s"] == 50_000.0
    assert budget["northstar_one_worker"]["at_most_vs_ceiling"] == 0.278
    assert budget["northstar_one_worker"]["within_budget"] is False
    assert budget["ceiling"]["at_most_vs_ceiling"] == 1.389


def test_no_cpu_budget_without_a_ceiling_or_cores() -> None:
    assert finish(_result(None))["cpu_budget"] is None  # no machine.cpus
    result = _result(None)
    result["machine"] = {"cpus": 2}
    del result["ceiling"]
    assert finish(result)["cpu_budget"] is None
    result = _result(None)
    result["machine"] = {"cpus": 2}
    budget = finish(result)["cpu_budget"]
    assert budget["budget_us_per_event"] == 22.22 and "northstar_one_worker" not in budget  # no CPU measured


def test_the_ceiling_target_reads_the_median_of_the_pairs() -> None:
    result = _result(None)  # the sections' own runs: 36k of 180k
    result["pairs"] = [
        {"ceiling_events_per_s": 180_000.0, "one_worker_events_per_s": 36_000.0, "ratio": 0.2},
        {"ceiling_events_per_s": 100_000.0, "one_worker_events_per_s": 60_000.0, "ratio": 0.6},
        {"ceiling_events_per_s": 100_000.0, "one_worker_events_per_s": 52_000.0, "ratio": 0.52},
    ]
    done = finish(result)
    assert _target(done, "northstar_vs_ceiling")["value"] == 0.52
    assert _target(done, "northstar_vs_ceiling")["status"] == "met"
    ratios = done["ratios"]
    assert (ratios["northstar_vs_ceiling_first_pair"], ratios["northstar_vs_ceiling_lowest_pair"],
            ratios["northstar_vs_ceiling_highest_pair"]) == (0.2, 0.2, 0.6)
    result["pairs"] = result["pairs"][:2]  # an even count: the mean of the middle two
    assert finish(result)["ratios"]["northstar_vs_ceiling"] == 0.4
    result["pairs"] = [{"ratio": 0.505}, {"ratio": 0.512}, {"ratio": None}]  # a pair without a ratio is left out
    assert finish(result)["ratios"]["northstar_vs_ceiling"] == 0.508  # 0.5085, to 3 places
    del result["pairs"]  # one pair only (--pairs 1, or a section left out): that pair
    assert finish(result)["ratios"]["northstar_vs_ceiling"] == 0.2
