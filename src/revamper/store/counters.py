"""Counters every process of a store shares: int64s in a small mapped file, changed under a lock.

A store's statistics and its byte budget must be exact whichever worker writes, so they live in
a file that every process maps, next to a lock file taken with ``flock``. Each process opens its
own descriptors (a forked child must not share its parent's lock: ``flock`` locks belong to the
open file, which ``fork`` shares).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from revamper.store.base import StoreStats

STATS: Final = ("bytes", "entries", "puts", "rejected", "failed", "invalid")
"""The counters behind :class:`~revamper.store.base.StoreStats`, present in every store."""

_LOCK, _COUNTERS = "lock", "counters"
_SLOT = struct.Struct("<q")


class Counters:
    """One process's view of a store's shared counters.

    Args:
        directory: The store's directory, holding the ``lock`` and ``counters`` files.
        extra: The store's counters beyond :data:`STATS`, in the order they were created.

    Raises:
        FileNotFoundError: If the files are gone (the store was removed).
    """

    def __init__(self, directory: Path, extra: Sequence[str] = ()) -> None:
        self._index = {name: k for k, name in enumerate((*STATS, *extra))}
        self.pid = os.getpid()
        self._lock_fd = os.open(directory / _LOCK, os.O_RDWR)
        try:
            fd = os.open(directory / _COUNTERS, os.O_RDWR)
            try:
                self._map = mmap.mmap(fd, _SLOT.size * len(self._index))
            finally:
                os.close(fd)
        except BaseException:
            os.close(self._lock_fd)
            raise

    @staticmethod
    def create(directory: Path, extra: Sequence[str] = ()) -> None:
        """Create zeroed counter and lock files in ``directory`` (kept if they exist)."""
        with contextlib.suppress(FileExistsError):
            fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        size = _SLOT.size * (len(STATS) + len(extra))
        counters = directory / _COUNTERS
        if not counters.exists() or counters.stat().st_size != size:
            counters.write_bytes(bytes(size))

    @contextlib.contextmanager
    def locked(self) -> Iterator[Counters]:
        """Hold the store's lock (for :meth:`add` and for changes that must go with it)."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield self
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def add(self, name: str, delta: int = 1) -> int:
        """Add ``delta`` to a counter (hold :meth:`locked`); returns the value before."""
        offset = self._index[name] * _SLOT.size
        (value,) = _SLOT.unpack_from(self._map, offset)
        _SLOT.pack_into(self._map, offset, value + delta)
        return int(value)

    def value(self, name: str) -> int:
        """A counter's value, read without the lock (an estimate while others write)."""
        (value,) = _SLOT.unpack_from(self._map, self._index[name] * _SLOT.size)
        return int(value)

    def set(self, name: str, value: int) -> None:
        """Overwrite a counter (hold :meth:`locked`)."""
        _SLOT.pack_into(self._map, self._index[name] * _SLOT.size, value)

    def stats(self, capacity_bytes: int | None) -> StoreStats:
        """A consistent snapshot of the statistics."""
        with self.locked():
            values = {name: self.value(name) for name in STATS}
        return StoreStats(
            entries=values["entries"],
            bytes_used=values["bytes"],
            capacity_bytes=capacity_bytes,
            puts=values["puts"],
            rejected_puts=values["rejected"],
            failed_puts=values["failed"],
            invalid_reads=values["invalid"],
        )

    def close(self) -> None:
        """Release this process's descriptors."""
        with contextlib.suppress(OSError, ValueError, BufferError):
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
