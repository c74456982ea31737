"""What is left of a vectored read or write after the kernel moved only part of it."""

from __future__ import annotations

__all__ = ["advance"]


def advance(views: list[memoryview], moved: int) -> list[memoryview]:
    """The buffers of ``views`` still to move after the kernel moved ``moved`` bytes of them.

    A ``readv``/``writev`` may move less than asked: one call moves at most about 2 GiB, and a
    signal or a full disk may cut it short.

    Returns:
        A new list: the untouched buffers, the first one cut where the move stopped.
    """
    skip = 0
    while skip < len(views) and moved >= views[skip].nbytes:
        moved -= views[skip].nbytes
        skip += 1
    rest = views[skip:]
    if rest and moved:
        rest[0] = rest[0][moved:]
    return rest
