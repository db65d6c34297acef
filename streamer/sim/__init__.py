"""Event simulator: realistic product events for the example trees, with
scenarios (healthy growth, noisy-but-stable, Goodhart inflation)."""
