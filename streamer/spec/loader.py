"""Loading definitions files: YAML with line numbers, the schema, rules, lint.

Validation runs in layers, each reporting :class:`~streamer.spec.issues.Issue`
values located at a file and line (after dbt-labs/metricflow):

1. YAML (ruamel round-trip, so every mapping key and sequence item keeps its
   line); duplicate keys are errors, all of them, not just the first.
2. The pydantic schema (``Tree.model_validate``); every pydantic error becomes an
   issue at the line of the offending key (:func:`streamer.spec.schema_errors.locate_errors`).
3. Cross-object rules (``rules.py``) on every file that produced a tree. When the
   schema failed only in ways that can be cut out (unknown keys, a broken input,
   guardrail, supporting metric or KPI), the rules still run on the rest, so one
   run reports every mistake; such partial trees are never returned.
4. The North Star checklist (``lint.py``, warnings) on complete trees.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from streamer.spec import lint, rules
from streamer.spec.issues import (
    DefinitionError,
    DocPath,
    Issue,
    Severity,
    sort_issues,
)
from streamer.spec.model import Metric, Tree
from streamer.spec.nesting import MAX_DEPTH, MAX_VALUES, expanded_size, too_deep
from streamer.spec.schema_errors import (
    SchemaError,
    child,
    format_path,
    locate_errors,
)

logger = logging.getLogger(__name__)

LIST_ROLES = ("inputs", "guardrails", "supporting")
"""Document keys holding a list of metrics (``north_star`` and ``kpi`` hold one)."""
SUFFIXES = (".yaml", ".yml")

# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LoadedTree:
    """A tree that passed the schema, with where each part of it was written.

    ``document`` is the ruamel round-trip document (mappings and sequences that
    know their lines). ``locations`` gives, for each metric of
    ``tree.metrics()`` in the same order, its path in the document.
    ``complete`` is False only for the partial trees the loader builds to run
    rules past schema errors (never returned by :func:`load_definitions`);
    ``dropped`` then names the metrics cut out of it.
    """

    tree: Tree
    file: Path
    document: Any
    locations: tuple[DocPath, ...]
    complete: bool = True
    dropped: frozenset[str] = frozenset()

    def line_at(self, path: Sequence[str | int]) -> int | None:
        """1-based line of the deepest key of ``path`` present in the document."""
        line: int | None = None
        node = self.document
        for element in path:
            found = child(node, element)
            if found is None:
                break
            line, node = found
        return line

    def located_metrics(self) -> Iterator[tuple[str, Metric, DocPath]]:
        """``(role, metric, document path)`` for every metric, in tree order."""
        for (role, metric), location in zip(self.tree.metrics(), self.locations, strict=True):
            yield role, metric, location

    def metric_path(self, name: str) -> DocPath | None:
        """Document path of the first metric called ``name``."""
        for _, metric, location in self.located_metrics():
            if metric.name == name:
                return location
        return None

    def metric_line(self, name: str) -> int | None:
        """Line of the ``name:`` key of the first metric called ``name``."""
        location = self.metric_path(name)
        return None if location is None else self.line_at((*location, "name"))

    def issue(
        self,
        severity: Severity,
        path: Sequence[str | int],
        message: str,
        *,
        rule: str,
        hint: str | None = None,
        metric: str | None = None,
    ) -> Issue:
        """An issue in this file located at ``path`` (a document path)."""
        return Issue(
            severity, self.file, self.line_at(path), format_path(path), message, hint, metric, rule
        )


@dataclass
class LoadResult:
    """Everything one load found: the trees that passed the schema (in file
    order, possibly with rule errors or lint warnings) and every issue, sorted."""

    trees: list[LoadedTree] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings and infos allowed)."""
        return not self.errors

    def valid_trees(self) -> list[LoadedTree]:
        """Trees whose file has no error at all."""
        bad = {issue.file for issue in self.errors}
        return [loaded for loaded in self.trees if loaded.file not in bad]

    def raise_for_errors(self) -> None:
        """Raise :class:`DefinitionError` with every error, if there is one."""
        if self.errors:
            raise DefinitionError(self.errors)


# --------------------------------------------------------------------------- public API


def load_definitions(paths: Sequence[Path], *, lint_checks: bool = True) -> LoadResult:
    """Load and check every definitions file under ``paths``.

    A directory contributes its ``*.yaml``/``*.yml`` files (not recursive,
    sorted by name); a file reached twice is loaded once; a missing path or an
    empty directory is an error issue.
    Never raises for bad definitions: everything wrong is in ``issues``. Rules
    that compare trees (one North Star per product, unique tree names) compare
    the files of this one call. ``lint_checks=False`` skips the checklist lint.
    """
    result = LoadResult()
    issues: list[Issue] = []
    seen: set[Path] = set()
    for path in paths:
        files, found = _collect(Path(path))
        issues.extend(found)
        for file in files:  # a file named twice is one tree, not two North Stars
            if file.resolve() not in seen:
                seen.add(file.resolve())
                result.files.append(file)
    parsed: list[LoadedTree] = []
    for file in result.files:
        loaded, found = _load_file(file)
        issues.extend(found)
        if loaded is not None:
            parsed.append(loaded)
    for loaded in parsed:
        issues.extend(rules.check_tree(loaded))
    issues.extend(rules.check_trees(parsed))
    if lint_checks:
        for loaded in parsed:
            if loaded.complete:
                issues.extend(lint.lint_tree(loaded))
    result.trees = [loaded for loaded in parsed if loaded.complete]
    result.issues = sort_issues(issues)
    return result


def load_tree(path: Path) -> Tree:
    """The tree in one definitions file; raises :class:`DefinitionError` carrying
    every error (schema and rules; lint warnings never raise)."""
    path = Path(path)
    if not path.is_file():
        raise DefinitionError([Issue("error", path, None, "", "not a definitions file", rule="io")])
    result = load_definitions([path], lint_checks=False)
    result.raise_for_errors()
    return result.trees[0].tree


# --------------------------------------------------------------------------- files and YAML


def _collect(path: Path) -> tuple[list[Path], list[Issue]]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            return [], [
                Issue("error", path, None, "", "no *.yaml or *.yml files in directory", rule="io")
            ]
        return files, []
    if path.is_file():
        return [path], []
    return [], [Issue("error", path, None, "", "no such file or directory", rule="io")]


class _CollectingConstructor(RoundTripConstructor):
    """Records every duplicate key (keeping the first value) instead of stopping
    at the first, so that all of them are reported in one run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.duplicates: list[tuple[str, int, int | None]] = []

    def check_mapping_key(
        self, node: Any, key_node: Any, mapping: Any, key: Any, value: Any
    ) -> bool:
        try:
            hash(key)
        except TypeError:  # a complex key holding a mapping or list (found by fuzzing)
            raise ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found a key that is a nested mapping or list; keys are names", key_node.start_mark,
            ) from None
        if key in mapping:
            first = mapping.lc.data.get(key)
            self.duplicates.append(
                (str(key), key_node.start_mark.line + 1, first[0] + 1 if first else None)
            )
            return False
        return True


def _read_yaml(file: Path) -> tuple[Any, list[Issue]]:
    def error(line: int | None, message: str, hint: str | None = None) -> Issue:
        return Issue("error", file, line, "", message, hint, rule="yaml")

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [error(None, f"cannot read file: {exc}")]
    yaml = YAML(typ="rt", pure=True)
    yaml.Constructor = _CollectingConstructor
    try:
        document = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        return None, [error(line, f"invalid YAML: {exc.problem or exc.context}")]
    except YAMLError as exc:
        return None, [error(None, f"invalid YAML: {exc}")]
    except RecursionError:  # the parser recurses per level of nesting
        return None, [error(None, f"invalid YAML: nested too deeply (the limit is {MAX_DEPTH} levels)")]
    deep = too_deep(document)
    if deep is not None:
        return None, [error(deep[1], f"nested {deep[0]} levels deep; the limit is {MAX_DEPTH}",
                            "a definitions file needs about 10")]
    if expanded_size(document) is None:
        return None, [error(None, f"expands to more than {MAX_VALUES} values, or an alias contains "
                            "itself", "use fewer YAML aliases (&name / *name)")]
    issues = [
        error(
            line,
            f"duplicate key `{key}`",
            f"first given on line {first}; keep one" if first else None,
        )
        for key, line, first in yaml.constructor.duplicates
    ]
    if not isinstance(document, dict):
        found = "an empty file" if document is None else f"a {type(document).__name__}"
        issues.append(error(None, f"a definitions file holds one tree (a mapping), found {found}"))
        return None, issues
    return document, issues


def _plain(node: Any) -> Any:
    """Round-trip YAML values as plain Python data (pydantic should not see
    ruamel's str/float/bool subclasses)."""
    if isinstance(node, dict):
        return {
            (str(k) if isinstance(k, list | dict) else _plain(k)): _plain(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, bool | ScalarBoolean):
        return bool(node)
    for kind in (int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


# --------------------------------------------------------------------------- schema


def _load_file(file: Path) -> tuple[LoadedTree | None, list[Issue]]:
    document, issues = _read_yaml(file)
    if document is None:
        return None, issues
    data = _plain(document)
    try:
        tree = Tree.model_validate(data)
    except ValidationError as exc:
        try:
            errors = locate_errors(exc, document)
        except Exception:  # a bug in the translation must not hide the errors
            logger.debug("cannot locate schema errors in %s", file, exc_info=True)
            issues.extend(
                Issue("error", file, None, ".".join(map(str, e["loc"])), e["msg"])
                for e in exc.errors()
            )
            return None, issues
        issues.extend(_issue(file, document, error) for error in errors)
        return _recover(file, document, data, errors), issues
    return LoadedTree(tree, file, document, _locations(tree, {})), issues


def _issue(file: Path, document: Any, error: SchemaError) -> Issue:
    metric_at = _metric_prefix(error.path)
    metric: str | None = None
    if metric_at:
        entry: Any = document
        for element in error.path[:metric_at]:
            # a missing required key (``north_star``) has a path but no node
            try:
                entry = entry[element]
            except (KeyError, IndexError, TypeError):
                entry = None
                break
        name = entry.get("name") if isinstance(entry, dict) else None
        metric = name if isinstance(name, str) and name else None
    relative = error.path[metric_at:] if metric else error.path
    message, hint = error.describe(format_path(relative))
    return Issue("error", file, error.line, format_path(error.path), message, hint, metric)


def _metric_prefix(path: DocPath) -> int:
    """How many leading path elements address a metric (0: not inside one)."""
    if path and path[0] in ("north_star", "kpi"):
        return 1
    if len(path) >= 2 and path[0] in LIST_ROLES and isinstance(path[1], int):
        return 2
    return 0


def _recover(
    file: Path, document: Any, data: dict[str, Any], errors: list[SchemaError]
) -> LoadedTree | None:
    """A partial tree for the rules: unknown keys deleted, broken list metrics
    and a broken KPI cut out. None when an error sits anywhere else (the tree's
    own fields, the North Star), where a guess would only produce noise."""
    data = copy.deepcopy(data)
    kept = {
        role: list(range(len(data[role])))
        for role in LIST_ROLES
        if isinstance(data.get(role), list)
    }
    dropped: set[str] = set()
    for _ in range(5):  # a repair can reveal errors the first pass could not see
        unknown = [e.path for e in errors if e.kind == "extra_forbidden" and e.path]
        cut: dict[str, set[int]] = {}
        for error in errors:
            if error.kind == "extra_forbidden" and error.path:
                continue
            if _metric_prefix(error.path) == 2:
                cut.setdefault(str(error.path[0]), set()).add(int(error.path[1]))
            elif error.path[:1] == ("kpi",):
                unknown.append(("kpi",))
            else:
                return None
        for path in sorted(unknown, key=len, reverse=True):
            _delete(data, path)
        for role, indexes in cut.items():
            for index in sorted(indexes, reverse=True):
                item = data[role].pop(index)
                del kept[role][index]
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    dropped.add(item["name"])
        if ("kpi",) in unknown and isinstance(document.get("kpi"), dict):
            dropped.add(str(document["kpi"].get("name")))
        try:
            tree = Tree.model_validate(data)
        except ValidationError as exc:
            errors = locate_errors(exc, data)
            continue
        return LoadedTree(tree, file, document, _locations(tree, kept), False, frozenset(dropped))
    return None


def _delete(data: Any, path: DocPath) -> None:
    for element in path[:-1]:
        found = child(data, element)
        if found is None:
            return
        data = found[1]
    if isinstance(data, dict):
        data.pop(path[-1], None)


def _locations(tree: Tree, kept: dict[str, list[int]]) -> tuple[DocPath, ...]:
    def indexes(role: str, count: int) -> list[int]:
        return kept.get(role, list(range(count)))

    locations: list[DocPath] = [("north_star",)]
    locations += [("inputs", i) for i in indexes("inputs", len(tree.inputs))]
    locations += [("guardrails", i) for i in indexes("guardrails", len(tree.guardrails))]
    if tree.kpi is not None:
        locations.append(("kpi",))
    locations += [("supporting", i) for i in indexes("supporting", len(tree.supporting))]
    return tuple(locations)
