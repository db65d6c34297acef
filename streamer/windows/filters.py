"""Event filters compiled to predicates (docs/semantics.md §2, "Filters")."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeGuard

from streamer.events.fields import field_reader
from streamer.events.types import Event
from streamer.spec.model import Condition, EventFilter

Predicate = Callable[[Event], bool]
_MISSING = object()


def is_number(value: Any) -> TypeGuard[int | float]:
    """An int or a finite float; booleans are not numbers."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def same(a: Any, b: Any) -> bool:
    """Equality with types kept apart: True is not 1, but 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _check(cond: Condition, value: Any) -> bool:
    present = value is not _MISSING and value is not None
    if cond.exists is not None and cond.exists != present:
        return False
    if cond.eq is not None and not (present and same(value, cond.eq)):
        return False
    if cond.ne is not None and present and same(value, cond.ne):
        return False
    if cond.in_ is not None and not (present and any(same(value, c) for c in cond.in_)):
        return False
    if cond.not_in is not None and present and any(same(value, c) for c in cond.not_in):
        return False
    bounds = (cond.gt, cond.gte, cond.lt, cond.lte)
    if any(b is not None for b in bounds):
        if not is_number(value):
            return False
        if cond.gt is not None and not value > cond.gt:
            return False
        if cond.gte is not None and not value >= cond.gte:
            return False
        if cond.lt is not None and not value < cond.lt:
            return False
        if cond.lte is not None and not value <= cond.lte:
            return False
    return True


def names_only(flt: EventFilter) -> frozenset[str] | None:
    """The filter's event names when it has no ``where`` (an event matches iff
    its name is one of them: hot loops test that inline), else None."""
    return None if flt.where else frozenset(flt.event)


def compile_filter(flt: EventFilter) -> Predicate:
    """A predicate true for events named in ``flt.event`` whose properties meet ``flt.where``."""
    names = frozenset(flt.event)
    conditions = [(field_reader("prop." + key), "prop." + key, cond) for key, cond in flt.where.items()]
    if not conditions:
        return lambda event: event.name in names

    def matches(event: Event) -> bool:
        if event.name not in names:
            return False
        for read, ref, cond in conditions:
            value = read(event)
            if not _check(cond, _MISSING if value is None and not _has(event, ref) else value):
                return False
        return True

    return matches


def _has(event: Event, ref: str) -> bool:
    name = ref.partition(".")[2]
    return name in event.props
