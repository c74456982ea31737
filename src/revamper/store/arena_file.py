"""An arena store's directory and file: creating them private, trusting them on attach, mapping.

The arena lives in a private directory (0700) on a tmpfs, next to an ``owner.lock`` that the
owner holds for its lifetime, exactly like a shared-memory store's directory (so
:func:`~revamper.store.memory_dir.sweep_abandoned` removes an arena whose owner was killed).
The file itself (0600) is created sparse at its full size, its header page and slot table
allocated at once (``posix_fallocate``). A record in a new region is written with ``pwritev``,
which allocates the pages as it copies (a full tmpfs is an ``ENOSPC``, not the ``SIGBUS`` that
a store through the map into a page the tmpfs has no room for would be); so is a rewrite in
place. Records are only ever read through the map; only the (allocated) header page and slot
table are written through it.

Every process maps the file itself (:class:`ArenaHandles`, re-opened after ``fork``: the
file's ``flock`` must belong to one process). A reader never reads past what
:meth:`ArenaHandles.readable` allowed at the last check, which is bounded by the file's size
and by the bytes the tmpfs has allocated for it (``fstat``, once per batch or single read), so
a file cut short before it (or a slot pointing into a hole) cannot fault; only a file cut in
the instant between that check and the copy still can.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Final

import numpy as np

from revamper.errors import UnsafeCacheError
from revamper.store.arena_layout import (
    COUNTER_BLOCK,
    COUNTERS,
    COUNTERS_OFFSET,
    PAGE,
    ArenaGeometry,
    parse_settings,
    round_up,
)
from revamper.store.memory_dir import OWNER_LOCK, build_owned_directory, check_root
from revamper.store.permissions import check_path, open_private
from revamper.store.vectored import advance

__all__ = [
    "ARENA",
    "ArenaGone",
    "ArenaHandles",
    "check_arena_dir",
    "create_arena_dir",
    "data_bytes",
]

ARENA: Final = "arena"
PREFIX: Final = "revamper-arena-"
CHUNK: Final = 4 * 2**20
"""The data region is allocated on the tmpfs this much at a time."""
_OPEN: Final = os.O_NOFOLLOW | os.O_CLOEXEC
_IOV_MAX: Final = 512


class ArenaGone(Exception):
    """The arena file is not what the owner made (cut short, replaced): stop using it."""


def create_arena_dir(root: Path, geometry: ArenaGeometry) -> tuple[Path, int]:
    """Create a private store directory in ``root`` holding a new arena file.

    The directory is built under a hidden name and renamed into place once complete and
    locked (as :func:`revamper.store.memory_dir.create_directory` does).

    Returns:
        The directory and the descriptor of its owner lock (held for the owner's lifetime).

    Raises:
        OSError: If the tmpfs cannot hold the header and table (``ENOSPC``), or creating fails.
    """

    def fill(building: Path) -> None:
        fd = os.open(building / ARENA, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN, 0o600)
        try:
            os.ftruncate(fd, geometry.file_size)
            os.posix_fallocate(fd, 0, geometry.data_offset)
            counters = COUNTER_BLOCK.pack(geometry.data_offset, *[0] * (len(COUNTERS) - 1))
            os.pwrite(fd, geometry.pack(), 0)
            os.pwrite(fd, counters, COUNTERS_OFFSET)
        finally:
            os.close(fd)

    return build_owned_directory(root, PREFIX, fill)


def check_arena_dir(given: Path) -> tuple[Path, ArenaGeometry]:
    """Check an existing arena directory against the owner rule and read its settings.

    Returns:
        Its real path (to use from then on) and its geometry.

    Raises:
        ValueError: If ``path`` is not a live arena store (missing files, bad settings).
        UnsafeCacheError: If another user could have written it or its files.
    """
    path = check_root(given.parent) / given.name
    for name in (ARENA, OWNER_LOCK):
        if not os.path.lexists(path / name):
            raise ValueError(
                f"path {str(path)!r} is not a live revamper arena store (missing {name}); was "
                "it created on this machine, and is its owner open?"
            )
    check_path(path, directory=True)
    check_path(path / OWNER_LOCK)
    fd = open_private(path / ARENA, os.O_RDONLY | os.O_NONBLOCK)
    try:
        header = os.pread(fd, PAGE, 0)
        geometry = parse_settings(header)
        if os.fstat(fd).st_size != geometry.file_size:
            raise ValueError(f"the arena file in {str(path)!r} does not have its recorded size")
    finally:
        os.close(fd)
    return path, geometry


class ArenaHandles:
    """One process's descriptor, lock and map of an arena file.

    Attributes:
        pid: The process that opened them.
        fd: The arena file (its ``flock`` is the store's lock).
        mm: The whole file, mapped shared.
        buf: ``mm`` as bytes (numpy), for copying records out.
        words: The slot table as 64-bit words (numpy), for single aligned stores.
        allocated: The prefix of the file this process has checked against the reserve.
        limit: Reads stay below this (set by :meth:`readable`).
    """

    def __init__(self, path: Path, geometry: ArenaGeometry) -> None:
        self.pid = os.getpid()
        self.geometry = geometry
        self.threads = threading.Lock()
        try:
            self.fd = open_private(path / ARENA, os.O_RDWR)
            # Closed with the handles, or when they are collected: an open descriptor keeps a
            # removed arena's tmpfs pages allocated until the process exits.
            self._release_fd = weakref.finalize(self, _close_quietly, self.fd)
        except FileNotFoundError:
            raise ArenaGone(f"the arena {path} is gone (its owner closed it)") from None
        except UnsafeCacheError as exc:
            raise ArenaGone(str(exc)) from None
        try:
            if os.fstat(self.fd).st_size != geometry.file_size:
                raise ArenaGone(f"the arena file in {path} was cut short or replaced")
            self.mm = mmap.mmap(self.fd, geometry.file_size, mmap.MAP_SHARED)
        except BaseException:
            self._release_fd()
            raise
        self.buf: np.ndarray[Any, np.dtype[np.uint8]] | None = np.frombuffer(self.mm, np.uint8)
        self.words: np.ndarray[Any, np.dtype[np.uint64]] | None = np.frombuffer(
            self.mm, np.uint64, count=4 * geometry.num_samples, offset=PAGE
        )
        self.allocated = geometry.data_offset
        self.limit = 0
        self.readable()

    def readable(self) -> int:
        """Re-check the file (one ``fstat``) and return the offset reads must stay below.

        Raises:
            ArenaGone: If the file no longer has its size (someone truncated it).
        """
        st = os.fstat(self.fd)
        if st.st_size != self.geometry.file_size:
            self.limit = 0
            raise ArenaGone("the arena file was cut short while in use")
        self.limit = min(st.st_size, st.st_blocks * 512)
        # What other processes allocated is allocated: a fresh worker must not count it as its
        # own growth against the reserve.
        self.allocated = max(self.allocated, self.limit)
        return self.limit

    def check_reserve(self, end: int, reserve: int) -> None:
        """Refuse to grow the arena's allocated prefix to ``end`` into the tmpfs's reserve.

        Checked a :data:`CHUNK` at a time (one ``statvfs`` per chunk the arena grows by).

        Raises:
            OSError: ``ENOSPC`` if growing would leave less than ``reserve`` bytes free.
        """
        if end <= self.allocated:
            return
        target = min(round_up(end, CHUNK), self.geometry.file_size)
        if reserve:
            info = os.statvfs(self.fd)
            free = info.f_bavail * info.f_frsize
            if info.f_blocks and free - (target - self.allocated) < reserve:
                target = round_up(end, PAGE)
                if free - (target - self.allocated) < reserve:
                    raise OSError(errno.ENOSPC, "the free space reserve of the tmpfs is reached")
        self.allocated = target

    def preallocate(self, reserve: int) -> None:
        """Allocate the whole data region on the tmpfs now (``posix_fallocate``).

        Raises:
            OSError: ``ENOSPC`` if it does not fit (with the reserve left free).
        """
        self.check_reserve(self.geometry.file_size, reserve)
        start = self.geometry.data_offset
        os.posix_fallocate(self.fd, start, self.geometry.file_size - start)

    def write_record(self, offset: int, segments: list[bytes | memoryview], cap: int) -> None:
        """Write a record at ``offset`` with ``pwritev``, zero padded up to ``cap`` bytes.

        The kernel allocates the pages as it copies (no page faults, and a full tmpfs is an
        ``ENOSPC`` here rather than a ``SIGBUS`` in a store through the map).

        Raises:
            OSError: ``ENOSPC`` if the tmpfs is full (the region is not published).
        """
        views = [memoryview(segment) for segment in segments]
        written = sum(view.nbytes for view in views)
        if cap > written:
            views.append(memoryview(bytes(cap - written)))
        position = offset
        while views:
            done = os.pwritev(self.fd, views[:_IOV_MAX], position)
            position += done
            views = advance(views, done)

    def locked_size_ok(self) -> bool:
        """Whether the file still has its size (a writer checks before writing)."""
        return os.fstat(self.fd).st_size == self.geometry.file_size

    def lock(self) -> None:
        """Take the store's lock: this process's threads' first, then the file's ``flock``.

        A ``flock`` belongs to the open file, which all threads of a process share, so it
        alone would let two threads of one process write at once.
        """
        self.threads.acquire()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.threads.release()
            raise

    def unlock(self) -> None:
        """Release the store's lock (a descriptor closed meanwhile released it already)."""
        try:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.threads.release()

    def close(self) -> None:
        """Unmap and close (a buffer still exported keeps the map until it is freed)."""
        self.buf = None
        self.words = None
        with contextlib.suppress(BufferError, ValueError):
            self.mm.close()
        self._release_fd()  # once: a second close must not hit a reused descriptor number


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def data_bytes(root: Path, budget_bytes: int | None) -> int:
    """The data region's size: the budget, else the tmpfs's size (else physical memory)."""
    if budget_bytes is not None:
        return budget_bytes
    with contextlib.suppress(OSError):
        info = os.statvfs(root)
        if info.f_blocks:
            return int(info.f_blocks * info.f_frsize)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
