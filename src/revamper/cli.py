"""The ``revamper`` command: one entry point, one sub-command per job.

Each sub-command lives in its own module, which exposes ``register(subparsers)``; the module's
heavy imports happen only when that sub-command runs, so ``revamper --help`` is instant.
Expected failures (bad arguments, unreadable data) end with a one-line message and exit status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys
from collections.abc import Callable, Sequence

from revamper import __version__
from revamper.cli_args import CliError

# (module, what it adds); a module missing from an install is skipped, not fatal.
_SUBCOMMANDS = (
    "revamper.bench.command",
    "revamper.tune.command",
    "revamper.experiments.command",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="revamper",
        description=(
            "Data refurbishing for PyTorch: cache the expensive part of the augmentation "
            "pipeline and reuse it with fresh final augmentations. Sub-commands measure it."
        ),
    )
    parser.add_argument("--version", action="version", version=f"revamper {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log what revamper does (INFO level)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # that sub-command is not part of this build
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``revamper`` command; returns the exit status."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(words)
    args.command_line = shlex.join(["revamper", *words])  # what reproduces this run
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except CliError as exc:
        if args.debug:
            raise
        print(f"revamper {args.command}: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # noqa: T201
        return 130


if __name__ == "__main__":
    sys.exit(main())
