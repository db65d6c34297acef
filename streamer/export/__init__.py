"""Prometheus export of the evaluator's snapshots (see docs/prometheus.md)."""

from streamer.export.collector import FAMILIES, ExportError, Family, SnapshotCollector

__all__ = ["FAMILIES", "ExportError", "Family", "SnapshotCollector"]
