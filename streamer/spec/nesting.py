"""Bounds on the shape of a definitions document: how deeply it nests, and
how many values it expands to once YAML aliases are followed.

Real trees nest about 10 levels (a ratio of ratios of measures with
``where`` conditions) and hold a few hundred values. Every later layer
(plain-data conversion, pydantic, error location, partial-tree repair) walks
the document recursively and copies aliased nodes, so without bounds a
document nested a few hundred levels deep ends in ``RecursionError``, and a
"billion laughs" file (each alias list naming the previous one nine times)
expands to 9^9 values and runs for hours. The loader checks both right after
parsing and reports either as an issue.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64
"""Mappings and sequences inside each other, the document itself being 1."""
MAX_VALUES = 100_000
"""Values (mappings, sequences and scalars) after expanding aliases."""


def _children(node: Any) -> list[Any]:
    return list(node.values()) if isinstance(node, dict) else list(node)


def _line(node: Any, fallback: int | None) -> int | None:
    lc = getattr(node, "lc", None)
    line = getattr(lc, "line", None)
    return line + 1 if isinstance(line, int) else fallback


def too_deep(document: Any, limit: int = MAX_DEPTH) -> tuple[int, int | None] | None:
    """``(depth, 1-based line)`` of the first node nested deeper than
    ``limit``, or None. Iterative, each node once: safe at any depth."""
    stack: list[tuple[Any, int, int | None]] = [(document, 1, None)]
    seen: set[int] = set()
    while stack:
        node, depth, line = stack.pop()
        if not isinstance(node, dict | list) or id(node) in seen:
            continue
        seen.add(id(node))
        here = _line(node, line)
        if depth > limit:
            return depth, here
        stack.extend((child, depth + 1, here) for child in _children(node))
    return None


def expanded_size(document: Any, limit: int = MAX_VALUES) -> int | None:
    """How many values ``document`` holds with every alias expanded; None
    when that exceeds ``limit`` or a node contains itself (``&a [*a]``).
    Iterative post-order with one size per distinct node: linear in the
    document as written, whatever it expands to."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(document, False)]
    while stack:
        node, finished = stack.pop()
        if not isinstance(node, dict | list):
            continue
        key = id(node)
        if finished:
            total = 1 + sum(sizes.get(id(c), 1) for c in _children(node))
            if total > limit:
                return None
            sizes[key] = total
            open_.discard(key)
            continue
        if key in sizes:
            continue
        if key in open_:  # reached again inside its own subtree
            return None
        open_.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    return sizes.get(id(document), 1)
