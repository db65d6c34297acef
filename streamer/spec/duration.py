"""Durations as written in definitions: ``90s``, ``30m``, ``1h``, ``7d``, ``12w``.

A duration is stored as a whole number of seconds so that window arithmetic
stays in integers (milliseconds are ``seconds * 1000``).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(value: object) -> int:
    """Return the duration in whole seconds; raise ValueError with a hint otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '7d', '1h' or '30m', not a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return value
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            seconds = int(match.group(1)) * _UNITS[match.group(2)]
            if seconds <= 0:
                raise ValueError("a duration must be positive")
            return seconds
    raise ValueError(
        f"invalid duration {value!r}: write a number and a unit, e.g. '90s', '30m', '1h', '7d', '12w'"
    )


def format_duration(seconds: int) -> str:
    """The shortest exact spelling of ``seconds`` ('7d', '36h', '90s')."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A positive duration in seconds, written in YAML as '7d', '1h', ..."""
