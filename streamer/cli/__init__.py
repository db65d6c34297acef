"""The ``northstar`` command line: ``main()`` and the registry of subcommands.

Each subcommand lives in its own module of this package and exposes::

    def register(subparsers: Subparsers) -> None:
        parser = subparsers.add_parser("NAME", help="one line for `northstar --help`")
        parser.add_argument(...)
        parser.set_defaults(func=run)

    def run(args: argparse.Namespace) -> int:  # the exit code
        ...

To add one (``replay``, ``worker``, ...): write the module and append it to
``COMMANDS`` below; nothing else changes. Import heavy dependencies (faust,
redis, aiokafka) inside ``run``, not at module level, so that every command,
``northstar validate`` included, starts fast.

Exit codes: 0 success, 1 the command ran and found a problem (invalid
definitions, ...), 2 bad usage (unknown option, missing path). A command may
also ``raise SystemExit(code)`` deep inside; ``main`` turns it into its return
value.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Protocol, TypeAlias

from streamer import __version__
from streamer.cli import (
    api,
    backfill,
    bench,
    demo,
    grafana,
    produce,
    replay,
    rules,
    simulate,
    soak,
    state,
    tree,
    validate,
    worker,
)

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The object ``register`` adds its parser to (``parser.add_subparsers()``)."""


class Command(Protocol):
    """A subcommand module (see the module docstring)."""

    def register(self, subparsers: Subparsers, /) -> None: ...


COMMANDS: tuple[Command, ...] = (
    validate,
    tree,
    replay,
    backfill,
    state,
    simulate,
    produce,
    worker,
    rules,
    api,
    demo,
    grafana,
    bench,
    soak,
    # add new subcommand modules here.
)


def build_parser() -> argparse.ArgumentParser:
    """The ``northstar`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="northstar",
        description="A live monitor for a product's North Star metric system.",
    )
    parser.add_argument("--version", action="version", version=f"northstar {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``northstar`` with ``argv`` (default: ``sys.argv[1:]``); return the exit
    code instead of exiting, also for usage errors and ``--help``."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on bad usage (2)
        return _exit_code(exc)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_usage(sys.stderr)
        print("northstar: error: choose a command (see `northstar --help`)", file=sys.stderr)
        return 2
    try:
        code: int = func(args)
    except SystemExit as exc:  # a command may exit early with its code
        return _exit_code(exc)
    return code


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


if __name__ == "__main__":
    sys.exit(main())
