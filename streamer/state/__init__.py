"""Redis state: Lua scripts, the store (verdicts, applies, reads), key layout."""
