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
