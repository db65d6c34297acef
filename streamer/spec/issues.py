"""What validation reports: located issues, the one exception of
``streamer.spec``, and the translation of pydantic's errors into issue text.

Every layer (YAML parsing, the pydantic schema, cross-object rules, the North
Star checklist lint) reports problems as :class:`Issue` values instead of
raising, so that one run of ``northstar validate`` shows every problem at once.
Only :func:`streamer.spec.loader.load_tree` turns errors into an exception,
:class:`DefinitionError`, which carries the issues.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DocPath = tuple[str | int, ...]
"""Keys and indexes from the document root, e.g. ``("inputs", 1, "measure")``."""
Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
"""Most severe first. ``error`` fails validation, ``warning`` fails it only with
``--strict``, ``info`` never does."""


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in one definitions file.

    ``line`` is 1-based and points at the offending key (None when the problem
    belongs to no line, e.g. an unreadable file). ``path`` is the location in the
    document (``inputs[1].measure.numerator``; empty for the whole file).
    ``metric`` names the metric the issue is about, when there is one. ``rule``
    is a stable identifier (``schema``, ``ratio-reference``, ``vanity-north-star``,
    ...) for tooling; humans read ``message`` and ``hint``.
    """

    severity: Severity
    file: Path
    line: int | None
    path: str
    message: str
    hint: str | None = None
    metric: str | None = None
    rule: str = "schema"

    def format(self) -> str:
        """``education.yaml:12: error: metric `x`: <message> (hint: <fix>)``."""
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        subject = f"metric `{self.metric}`: " if self.metric else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}: {self.severity}: {subject}{self.message}{hint}"

    def __str__(self) -> str:
        return self.format()

    def sort_key(self) -> tuple[str, int, int, str]:
        """File, then line (file-level issues first), then severity, then text."""
        return (
            str(self.file),
            self.line if self.line is not None else 0,
            SEVERITIES.index(self.severity),
            self.message,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (``file`` as a string)."""
        return {
            "severity": self.severity,
            "file": str(self.file),
            "line": self.line,
            "path": self.path,
            "metric": self.metric,
            "rule": self.rule,
            "message": self.message,
            "hint": self.hint,
        }


def sort_issues(issues: Iterable[Issue]) -> list[Issue]:
    """Issues ordered by file and line, as ``northstar validate`` prints them."""
    return sorted(issues, key=Issue.sort_key)


def count_by_severity(issues: Iterable[Issue]) -> dict[Severity, int]:
    """``{"error": n, "warning": n, "info": n}`` (every severity present)."""
    counts: dict[Severity, int] = dict.fromkeys(SEVERITIES, 0)
    for issue in issues:
        counts[issue.severity] += 1
    return counts


class DefinitionError(Exception):
    """The base (and only) exception of ``streamer.spec``: definitions that do not
    validate. ``issues`` holds every error found, sorted by file and line; the
    message lists them one per line."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues: tuple[Issue, ...] = tuple(sort_issues(issues))
        lines = [issue.format() for issue in self.issues] or ["invalid definitions"]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- document paths
