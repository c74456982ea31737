"""Counters every process of a store shares: int64s in a small file, changed under a lock.

A store's statistics and its byte budget must be exact whichever worker writes, so they live in
a file that every process reads and writes (``pread``/``pwrite``, never through a memory map: a
file cut short under a map would kill the process with ``SIGBUS``), next to a lock file taken
with ``flock``. Each process opens its own descriptors (a forked child must not share its
parent's lock: ``flock`` locks belong to the open file, which ``fork`` shares). Both files are
opened without following links and must pass the owner and mode rule
(:mod:`revamper.store.permissions`). A counter is a statistic: a file that reads short (damaged)
reads as zeros, and the disk store rebuilds its counters from its slot table between epochs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from revamper.store import permissions
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
        self._lock_fd = permissions.open_private(directory / _LOCK, os.O_RDWR)
        try:
            self._fd = permissions.open_private(directory / _COUNTERS, os.O_RDWR)
        except BaseException:
            os.close(self._lock_fd)
            raise

    @staticmethod
    def create(directory: Path, extra: Sequence[str] = ()) -> None:
        """Create zeroed counter and lock files in ``directory`` (kept if they exist).

        Raises:
            UnsafeCacheError: If one exists but is a link, not a file, or not private.
            OSError: If they cannot be written (``ENOSPC``).
        """
        os.close(permissions.open_private(directory / _LOCK, os.O_RDWR, create=True))
        size = _SLOT.size * (len(STATS) + len(extra))
        fd = permissions.open_private(directory / _COUNTERS, os.O_RDWR, create=True)
        try:
            if os.fstat(fd).st_size != size:
                # the file is ours (checked): rewrite it whole, so every byte is allocated
                os.ftruncate(fd, 0)
                if os.pwrite(fd, bytes(size), 0) != size:
                    raise OSError(f"short write to {directory / _COUNTERS}")
        finally:
            os.close(fd)

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
        value = self.value(name)
        self.set(name, value + delta)
        return value

    def value(self, name: str) -> int:
        """A counter's value, read without the lock (an estimate while others write)."""
        raw = os.pread(self._fd, _SLOT.size, self._index[name] * _SLOT.size)
        if len(raw) != _SLOT.size:
            return 0  # the file was cut short: a damaged statistic, rebuilt by its store
        (value,) = _SLOT.unpack(raw)
        return int(value)

    def set(self, name: str, value: int) -> None:
        """Overwrite a counter (hold :meth:`locked`); wraps around like an int64.

        Raises:
            OSError: If it cannot be written.
        """
        wrapped = (value + 2**63) % 2**64 - 2**63
        os.pwrite(self._fd, _SLOT.pack(wrapped), self._index[name] * _SLOT.size)

    def stats(self, budget_bytes: int | None) -> StoreStats:
        """A consistent snapshot of the statistics (a damaged negative count reads as 0)."""
        with self.locked():
            values = {name: max(0, self.value(name)) for name in STATS}
        return StoreStats(
            entries=values["entries"],
            bytes_used=values["bytes"],
            budget_bytes=budget_bytes,
            puts=values["puts"],
            rejected_puts=values["rejected"],
            failed_puts=values["failed"],
            invalid_reads=values["invalid"],
        )

    def close(self) -> None:
        """Release this process's descriptors."""
        for fd in (self._fd, self._lock_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fd = self._lock_fd = -1
