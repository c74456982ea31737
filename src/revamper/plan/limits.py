"""Argument checks and the planner's numeric limits, shared by every module of the planner.

They live apart from :mod:`revamper.plan.config` so that the modules the config builds on (the
reuse schedule) can use them without an import circle; the config re-exports them.
"""

from __future__ import annotations

import numbers
from typing import Final

import numpy as np

MAX_REUSE_FACTOR: Final = 65535
"""Largest supported reuse factor: chunk ids are stored as ``uint16``."""

MAX_EPOCH: Final = 2**63 - 1
"""Largest supported epoch: generations are stored as ``int64``."""


def check_int(
    name: str, value: object, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Validate an integer argument and return it as a Python ``int``.

    ``bool`` is rejected even though it subclasses ``int`` (``True`` as a batch size is a bug, not
    a request for 1); numpy integers are accepted and converted.

    Args:
        name: The argument's name, used in error messages.
        value: The value to check.
        minimum: Smallest allowed value, or ``None`` for no lower bound.
        maximum: Largest allowed value, or ``None`` for no upper bound.

    Returns:
        ``value`` as a Python ``int``.

    Raises:
        TypeError: If ``value`` is not an integer (``bool`` and floats included).
        ValueError: If ``value`` lies outside ``[minimum, maximum]``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    result = int(value)
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {result}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {result}")
    return result


def check_bool(name: str, value: object) -> bool:
    """Validate a flag and return it as a Python ``bool``.

    Raises:
        TypeError: If ``value`` is not a ``bool`` (``0``/``1`` are rejected: they hide typos such
            as passing the batch size positionally into a flag).
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)
