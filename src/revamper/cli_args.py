"""What every ``revamper`` sub-command shares: the expected-failure error, help, argument types.

The sub-command modules (``revamper.bench.command``, ``revamper.tune.command``,
``revamper.experiments.command``) import these from here, and :mod:`revamper.cli` imports the
sub-command modules, so the helpers live apart from the entry point and nothing imports in a
circle.
"""

from __future__ import annotations

import argparse


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
