"""Artifacts generated from the definitions (Prometheus rules; see docs/prometheus.md)."""

from streamer.generate.rules import GenerateError, render, rules_for

__all__ = ["GenerateError", "render", "rules_for"]
