"""Translating pydantic validation errors into located schema problems.

Pydantic reports a ``loc`` through the *model* (with union tags and labels);
this module walks that path through the ruamel document at the same time so
every problem lands on the line of the offending key, with a readable
message (allowed keys for an unknown key, the kinds for an unknown measure).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from streamer.spec.issues import DocPath
from streamer.spec.model import FIELD_PATTERN, MEASURE_KINDS, NAME_PATTERN, Tree


def format_path(path: Sequence[str | int]) -> str:
    """``("inputs", 1, "measure")`` -> ``inputs[1].measure``."""
    text = ""
    for element in path:
        text += f"[{element}]" if isinstance(element, int) else (f".{element}" if text else element)
    return text


def child(node: Any, element: str | int) -> tuple[int | None, Any] | None:
    """``(line of element, value)`` for a mapping key / sequence index of a
    round-trip node; None when absent."""
    lc = getattr(node, "lc", None)
    if isinstance(node, dict) and element in node:
        position = lc.data.get(element) if lc is not None else None
        return (position[0] + 1 if position else None), node[element]
    if isinstance(node, list) and isinstance(element, int) and 0 <= element < len(node):
        position = lc.data.get(element) if lc is not None else None
        return (position[0] + 1 if position else None), node[element]
    return None


# --------------------------------------------------------------------------- pydantic errors
# pydantic reports a ``loc`` that mixes document keys with union bookkeeping:
# the tag of a discriminated union (``measure.ratio.numerator``) and the member
# of a plain union (``numerator.str``, ``numerator.tagged-union[...]``). We walk
# the loc through the model types and the document side by side, so we know
# which elements are keys (and their lines), which model a key was checked
# against (to list the allowed keys), and where a union had several failing
# members (to report the one that matches the value instead of all of them).

_SCALARS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_ABSENT = object()


@dataclass(frozen=True)
class _Member:
    """A union member label met at ``depth`` (path length) on the way."""

    depth: int
    label: str
    value: Any
    line: int | None


@dataclass(frozen=True)
class SchemaError:
    """One pydantic error, located: ``path`` holds only document keys, ``line``
    is that of the deepest key present, ``models`` the model(s) the last key
    was checked against. ``kind`` is the pydantic error type, or ``union`` for a
    value no member of a plain union accepted (``labels`` name the members)."""

    kind: str
    path: DocPath
    line: int | None
    msg: str
    ctx: dict[str, Any]
    value: Any
    models: tuple[type[BaseModel], ...]
    labels: tuple[str, ...] = ()
    members: tuple[_Member, ...] = ()

    def describe(self, where: str) -> tuple[str, str | None]:
        """``(message, hint)``; ``where`` is the path as the reader should see it."""
        at = f"`{where}`: " if where else ""
        allowed = sorted({f.alias or n for m in self.models for n, f in m.model_fields.items()})
        if self.kind == "extra_forbidden":
            close = difflib.get_close_matches(str(self.path[-1]), allowed, n=1)
            guess = f"did you mean `{close[0]}`? " if close else ""
            return f"unknown key `{where}`", f"{guess}allowed keys here: {', '.join(allowed)}"
        if self.kind == "missing":
            required = [
                f.alias or n
                for m in self.models
                for n, f in m.model_fields.items()
                if f.is_required()
            ]
            return f"missing required key `{where}`", f"required here: {', '.join(required)}"
        if self.kind in ("union_tag_invalid", "union_tag_not_found"):
            kinds = ", ".join(MEASURE_KINDS)
            if self.kind == "union_tag_not_found":
                return f"{at}a measure needs a `kind:`", f"kind is one of: {kinds}"
            return f"{at}unknown measure kind `{self.ctx.get('tag')}`", f"kind is one of: {kinds}"
        if self.kind in ("value_error", "assertion_error") and "error" in self.ctx:
            return f"{at}{self.ctx['error']}", None
        if self.kind == "string_pattern_mismatch":
            pattern = self.ctx.get("pattern")
            if pattern == NAME_PATTERN:
                return f"{at}{_show(self.value)} is not a valid name", (
                    "names are lowercase snake_case: a letter, then letters, digits or '_' (63 at most)"
                )
            if pattern == FIELD_PATTERN:
                return f"{at}{_show(self.value)} is not a field reference", (
                    "write `user`, `prop.NAME`, `group.NAME` or `user_prop.NAME`"
                )
        if self.kind == "literal_error":
            return f"{at}expected {self.ctx.get('expected')}, got {_show(self.value)}", None
        if self.kind == "union":
            measure = any(label.startswith("tagged-union") for label in self.labels)
            words = [
                "a metric name" if label == "str" and measure else _MEMBER_WORDS[label]
                for label in _SCALARS
                if label in self.labels
            ]
            words += ["an inline measure (a mapping with `kind:`)"] if measure else []
            words += ["a mapping"] if not measure and set(self.labels) - set(_SCALARS) else []
            listed = ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
            return f"{at}expected {listed}, got {_show(self.value)}", None
        text = self.msg[:1].lower() + self.msg[1:]
        return f"{at}{text}, got {_show(self.value)}", None


_MEMBER_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true/false"}


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def locate_errors(exc: ValidationError, document: Any) -> list[SchemaError]:
    """Every error of ``exc`` (raised validating ``Tree``) located in ``document``,
    with failing plain-union members collapsed to what the value meant."""
    return _collapse([_walk(error, document) for error in exc.errors()])


def _walk(error: Any, document: Any) -> SchemaError:
    loc = tuple(error["loc"])
    candidates: list[Any] = [Tree]
    models: tuple[type[BaseModel], ...] = (Tree,)
    node, line, path, members = document, None, [], []
    for position, element in enumerate(loc):
        is_key, following = _step(candidates, element)
        if not is_key and error["type"] == "extra_forbidden" and position == len(loc) - 1:
            is_key = True  # the unknown key itself: no model knows it, by definition
        if is_key:
            models = tuple(c for c in candidates if _is_model(c))
            path.append(element)
            found = child(node, element) if node is not _ABSENT else None
            if found is None:
                node = _ABSENT
            else:
                line = found[0] if found[0] is not None else line
                node = found[1]
        elif not _is_tag(candidates, element):
            members.append(_Member(len(path), str(element), node, line))
        candidates = following
    if error["type"] == "union_tag_invalid":
        found = child(node, "kind") if node is not _ABSENT else None
        line = found[0] if found and found[0] is not None else line
    return SchemaError(
        error["type"],
        tuple(path),
        line,
        error["msg"],
        dict(error.get("ctx") or {}),
        error.get("input"),
        models,
        members=tuple(members),
    )


def _collapse(errors: list[SchemaError]) -> list[SchemaError]:
    """Where a plain union rejected a value, every member reports its own error;
    keep those of the members that fit the value's shape (a mapping: the model
    members), or merge the group into one ``union`` error."""
    level = 0
    while any(len(e.members) > level for e in errors):
        kept: list[SchemaError] = []
        groups: dict[tuple[Any, ...], list[SchemaError]] = {}
        for error in errors:
            if len(error.members) <= level:
                kept.append(error)
                continue
            depth = error.members[level].depth
            labels_before = tuple((m.depth, m.label) for m in error.members[:level])
            groups.setdefault((error.path[:depth], labels_before), []).append(error)
        for (prefix, _), group in groups.items():
            labels = {e.members[level].label for e in group}
            member = group[0].members[level]
            models = [e for e in group if e.members[level].label not in _SCALARS]
            if len(labels) == 1 or (isinstance(member.value, dict) and models):
                kept.extend(group if len(labels) == 1 else models)
                continue
            kept.append(
                SchemaError(
                    "union",
                    prefix,
                    member.line,
                    "",
                    {},
                    member.value,
                    group[0].models,
                    tuple(sorted(labels)),
                    group[0].members[:level],
                )
            )
        errors, level = kept, level + 1
    return errors


def _expand(annotation: Any) -> list[Any]:
    """Members of an annotation: Annotated stripped, unions flattened, None dropped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _expand(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _expand(arg)]
    return [] if annotation is type(None) else [annotation]


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _tags(model: type[BaseModel]) -> tuple[Any, ...]:
    kind = model.model_fields.get("kind")
    if kind is None or get_origin(kind.annotation) is not Literal:
        return ()
    return get_args(kind.annotation)


def _is_tag(candidates: list[Any], element: Any) -> bool:
    tagged = [c for c in candidates if _is_model(c) and _tags(c)]
    return len(tagged) > 1 and any(element in _tags(c) for c in tagged)


def _step(candidates: list[Any], element: Any) -> tuple[bool, list[Any]]:
    """``(element is a document key/index, candidate types after it)``."""
    if _is_tag(candidates, element):
        return False, [c for c in candidates if _is_model(c) and element in _tags(c)]
    if isinstance(element, int):
        items = [get_args(c)[0] for c in candidates if get_origin(c) in (tuple, list)]
        if items:
            return True, [member for item in items for member in _expand(item)]
    else:
        for model in filter(_is_model, candidates):
            for name, info in model.model_fields.items():
                if element in (name, info.alias):
                    return True, _expand(info.annotation)
        values = [get_args(c)[1] for c in candidates if get_origin(c) is dict]
        if values:
            return True, _expand(values[0])
    if element in _SCALARS:
        return False, [_SCALARS[element]]
    return False, [c for c in candidates if c not in _SCALARS.values()]
