"""Event times as whole milliseconds since the Unix epoch (UTC).

Each reader takes a decoded JSON value and returns either the time in
milliseconds or, when the value is not a usable time, a phrase saying why
(a ``str`` such as ``"is not a number of milliseconds"`` that the caller puts
after the field's name and value). Returning the reason instead of raising
keeps exception handling off the decoding hot path; callers tell the two apart
with ``type(result) is int``.

A usable time lies in ``[0, MAX_MS]``: from 1970-01-01T00:00:00.000Z to
9999-12-31T23:59:59.999Z. Sub-millisecond digits are truncated (not rounded),
except for seconds given as binary floats, which are rounded to the nearest
millisecond because most decimal fractions (``1700000000.123``) have no exact
float and would otherwise land one millisecond early.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

MAX_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last millisecond of year 9999."""

_MAX_S: Final = MAX_MS // 1000
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MS_PER_DAY: Final = 86_400_000
_RANGE: Final = "is outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z"
_BOOLEAN: Final = "is a boolean, not a time"

# A decimal number as text: digits, optionally a fraction; no sign, exponent,
# spaces or underscores (``int()`` would accept some of those). The integer
# part is capped far above MAX_MS so that ``int()`` never sees huge inputs.
_DECIMAL: Final = re.compile(r"([0-9]{1,20})(?:\.([0-9]+))?", re.ASCII)

# RFC 3339 date-time (the profile of ISO 8601 that Segment emits), plus a few
# common ISO 8601 spellings: a space for the "T", "," before the fraction,
# offsets as +HH, +HHMM or +HH:MM, and no offset at all (read as UTC).
_ISO: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2})(?::?([0-9]{2}))?)?",
    re.ASCII,
)


def millis(value: object) -> int | str:
    """Milliseconds from a number of milliseconds: an int, a float (truncated)
    or a decimal string such as ``"1717000000123"``. Booleans are not times."""
    if isinstance(value, bool):
        return _BOOLEAN
    if isinstance(value, int):
        return int(value) if 0 <= value <= MAX_MS else _RANGE
    if isinstance(value, float):
        # NaN fails both comparisons; infinities and huge floats the second.
        return int(value) if 0.0 <= value <= MAX_MS else _RANGE
    if isinstance(value, str):
        match = _DECIMAL.fullmatch(value)
        if match is None:
            return "is not a number of milliseconds"
        ms = int(match.group(1))
        return ms if ms <= MAX_MS else _RANGE
    return "is not a number of milliseconds"


def seconds(value: object) -> int | str:
    """Milliseconds from a number of seconds: an int, a float (rounded to the
    nearest millisecond) or a decimal string such as ``"1717000000.123"``
    (digits past the third decimal truncated)."""
    if isinstance(value, bool):
        return _BOOLEAN
    if isinstance(value, int):
        return int(value) * 1000 if 0 <= value <= _MAX_S else _RANGE
    if isinstance(value, float):
        if 0.0 <= value < _MAX_S + 1:
            ms = round(value * 1000)
            if ms <= MAX_MS:
                return ms
        return _RANGE
    if isinstance(value, str):
        match = _DECIMAL.fullmatch(value)
        if match is None:
            return "is not a number of seconds"
        whole, fraction = match.group(1, 2)
        ms = int(whole) * 1000 + (int(fraction[:3].ljust(3, "0")) if fraction else 0)
        return ms if ms <= MAX_MS else _RANGE
    return "is not a number of seconds"


def iso8601(value: object) -> int | str:
    """Milliseconds from an ISO 8601 / RFC 3339 date-time string, e.g.
    ``2024-02-29T13:45:00.123Z``, ``2024-02-29T14:45:00+01:00`` or
    ``2024-02-29T13:45:00`` (no offset: UTC). Seconds are required; leap
    seconds (``:60``) and impossible dates (Feb 29 of a common year) are not
    times."""
    if not isinstance(value, str):
        return "is not an ISO 8601 date-time string"
    match = _ISO.fullmatch(value)
    if match is None:
        return "is not an ISO 8601 date-time like 2024-05-01T12:00:00Z"
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    fraction, sign, offset_hour, offset_minute = match.group(7, 8, 9, 10)
    if hour > 23 or minute > 59 or second > 59:
        return "has no such time of day"
    try:
        days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
    except ValueError:  # month 13, Feb 29 of a common year, year 0000
        return "has no such date"
    ms = (days * 86_400 + hour * 3600 + minute * 60 + second) * 1000
    if fraction:
        ms += int(fraction[:3].ljust(3, "0"))
    if sign:
        hours, minutes = int(offset_hour), int(offset_minute or 0)
        if hours > 23 or minutes > 59:
            return "has no such UTC offset"
        # Local time is UTC + offset, so UTC is local time - offset.
        offset_ms = (hours * 60 + minutes) * 60_000
        ms = ms - offset_ms if sign == "+" else ms + offset_ms
    return ms if 0 <= ms <= MAX_MS else _RANGE


def format_ms(ms: int) -> str:
    """``ms`` as an RFC 3339 UTC date-time with milliseconds (for details and
    docs); a value outside ``[0, MAX_MS]`` as ``"<ms> ms"``."""
    if type(ms) is not int or not 0 <= ms <= MAX_MS:
        return f"{ms!r} ms"
    days, rest = divmod(ms, _MS_PER_DAY)
    day = date.fromordinal(_EPOCH_ORDINAL + days)
    second, milli = divmod(rest, 1000)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"
