"""Evaluation: baselines, guardrail status, divergence alerts (pure logic),
and the evaluator that runs them on the faust leader."""
