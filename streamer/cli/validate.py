"""``northstar validate [PATH...]``: check definitions files and report every issue.

Prints each issue as ``file:line: severity: metric `x`: message (hint: ...)``,
sorted by file and line, then a summary line. Exit code 0 when there is no
error (with ``--strict``: no error and no warning), 1 otherwise, 2 on bad usage
(including a path that does not exist).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streamer.spec.issues import count_by_severity
from streamer.spec.loader import LoadResult, load_definitions

if TYPE_CHECKING:
    from streamer.cli import Subparsers

DEFAULT_PATH = Path("definitions")


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check definitions: schema, cross-object rules, North Star checklist",
        description="Check definitions files (schema, cross-object rules, North Star "
        "checklist) and print every issue with its file and line.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        default=[DEFAULT_PATH],
        metavar="PATH",
        help="definitions files or directories of *.yaml files (default: definitions/)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail on warnings too (info never fails)"
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths: list[Path] = args.paths
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        print(
            f"northstar validate: error: no such file or directory: {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    result = load_definitions(paths)
    failed = failures(result, strict=args.strict)
    if args.format == "json":
        print(json.dumps(as_json(result, failed=failed, strict=args.strict), indent=2))
    else:
        for issue in result.issues:
            print(issue.format())
        print(summary(result, failed=failed))
    return 1 if failed else 0


def failures(result: LoadResult, *, strict: bool) -> bool:
    """Whether validation fails: any error, or with ``strict`` any warning."""
    counts = count_by_severity(result.issues)
    return counts["error"] > 0 or (strict and counts["warning"] > 0)


def summary(result: LoadResult, *, failed: bool) -> str:
    """``2 files checked: 1 error, 0 warnings, 1 info: FAILED``."""
    counts = count_by_severity(result.issues)
    parts = [
        _plural(counts["error"], "error"),
        _plural(counts["warning"], "warning"),
        f"{counts['info']} info",
    ]
    return f"{_plural(len(result.files), 'file')} checked: {', '.join(parts)}: {'FAILED' if failed else 'ok'}"


def as_json(result: LoadResult, *, failed: bool, strict: bool) -> dict[str, object]:
    """The report as JSON-ready data: ``ok``, counts, files, trees and issues."""
    return {
        "ok": not failed,
        "strict": strict,
        "counts": count_by_severity(result.issues),
        "files": [str(file) for file in result.files],
        "trees": [
            {"tree": loaded.tree.tree, "product": loaded.tree.product, "file": str(loaded.file)}
            for loaded in result.trees
        ],
        "issues": [issue.to_dict() for issue in result.issues],
    }


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
