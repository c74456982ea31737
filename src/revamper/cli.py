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

# (module, what it adds); a module missing from an install is skipped, not fatal.
_SUBCOMMANDS = (
    "revamper.bench.command",
    "revamper.tune.command",
    "revamper.experiments.command",
)


class CliError(Exception):
    """An expected failure: printed as one line, no traceback."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, unless it is ``None`` or ``False`` (the help says what then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """Argparse type: an int >= 1."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """Argparse type: an int >= 0."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """Argparse type: a float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def int_list(text: str) -> list[int]:
    """Argparse type: a comma-separated list of ints >= 1, e.g. ``2,3,4``."""
    return [positive_int(part.strip()) for part in text.split(",") if part.strip()]


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def parse_size(text: str) -> int:
    """Argparse type: a byte count such as ``500000``, ``200MB``, ``8GB`` or ``1.5GiB``."""
    number = text.strip().upper().replace(" ", "")
    unit = number.lstrip("0123456789.")
    digits = number[: len(number) - len(unit)]
    if unit not in _UNITS or not digits:
        raise argparse.ArgumentTypeError(f"expected a size like 500MB, 8GB or 1.5GiB, got {text!r}")
    try:
        value = float(digits) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 500MB, got {text!r}") from None
    return int(value)


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
