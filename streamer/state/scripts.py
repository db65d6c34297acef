"""The Lua scripts that mutate state, loaded once from package data."""

from __future__ import annotations

from functools import cache
from importlib import resources

APPLY_KINDS = ("sum", "hll", "entity", "retention", "pair", "relational")


@cache
def _read(name: str) -> str:
    return resources.files("streamer.state").joinpath("lua", f"{name}.lua").read_text("utf-8")


@cache
def apply_source(kind: str) -> str:
    """The full apply script of a unit kind: the shared prelude, then its body."""
    if kind not in APPLY_KINDS:
        raise KeyError(kind)
    return _read("prelude") + "\n" + _read(kind)


def verdict_source() -> str:
    return _read("verdict")


def labels_source() -> str:
    """The breakdown label registry's admission script (not a unit script)."""
    return _read("labels")
