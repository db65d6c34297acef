"""Names the ``northstar bench`` command line offers (no heavy imports here:
``northstar --help`` loads this module)."""

from __future__ import annotations

SECTIONS = ("ceiling", "northstar", "peers", "freshness", "restart", "evaluation", "memory")
"""The benchmark's sections, in the order they run."""

PEER_NAMES = ("faust", "quixstreams")
"""Peers implemented in tests/perf/."""
