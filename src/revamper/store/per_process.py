"""Handles one process holds open on a store, re-opened after ``fork`` (:class:`PerProcess`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["PerProcess"]

_H = TypeVar("_H", bound="_Closable")


class _Closable(Protocol):
    pid: int

    def close(self) -> None: ...


class PerProcess(Generic[_H]):
    """What one process holds open on a store (descriptors, locks), re-opened after ``fork``.

    A forked worker inherits its parent's descriptors; sharing them would share ``flock`` locks
    and file offsets, so a process never uses handles another process opened: :meth:`get`
    re-opens them when the pid differs, and :meth:`close` closes only handles opened here.
    Handles carry the pid of the process that opened them (``pid`` attribute).
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: _H | None = None

    def get(self, opener: Callable[[], _H]) -> _H:
        """This process's handles, opened with ``opener`` if it has none yet."""
        value = self._value
        if value is None or value.pid != os.getpid():
            value = self._value = opener()
        return value

    def here(self) -> _H | None:
        """This process's handles if it opened them, else ``None``."""
        value = self._value
        return value if value is not None and value.pid == os.getpid() else None

    def close(self) -> None:
        """Close the handles if this process opened them, and forget them either way."""
        value = self.here()
        self._value = None
        if value is not None:
            value.close()
