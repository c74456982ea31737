"""Exclusive use of a cache directory: one owning store at a time, for its whole lifetime.

Two loaders on one ``cache_dir`` (another data set of the same length, another ``cache_key``)
would reset each other's cache, and one would serve the other's samples. So the store that
*creates* (owns) a disk cache holds an exclusive ``flock`` on a lock file in it for as long as it
lives, with its pid written in the file; a second owner gets :class:`CacheInUseError` naming the
directory and that pid. Processes that *attach* to the cache (DataLoader workers, the other
ranks of one distributed run) take no such lock: they share the owner's cache by design.

``flock`` locks belong to the open file, which ``fork`` shares: a forked worker drops its copy
of the descriptor (:meth:`OwnerLock.drop_inherited`) so that the lock goes when the owner lets
go of it, not when the last worker exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import weakref
from pathlib import Path
from typing import Final

from revamper.errors import CacheInUseError, UnsafeCacheError
from revamper.store import permissions

__all__ = ["OWNER_LOCK_NAME", "CacheInUseError", "OwnerLock"]

OWNER_LOCK_NAME: Final = "owner.lock"


def _close(holder: list[int]) -> None:
    fd, pid = holder
    if fd >= 0 and pid == os.getpid():
        holder[0] = -1
        with contextlib.suppress(OSError):
            os.close(fd)


class OwnerLock:
    """The exclusive lock of one owning store on its directory (released by :meth:`release`).

    Args:
        directory: The cache directory (already checked).

    Raises:
        CacheInUseError: If another live store owns it.
        UnsafeCacheError: If the lock file is a link or not a private file of ours.
        OSError: If the lock file cannot be created (``ENOSPC`` included).
    """

    def __init__(self, directory: Path) -> None:
        path = directory / OWNER_LOCK_NAME
        fd = permissions.open_private(path, os.O_RDWR, create=True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise CacheInUseError(directory, pid) from None
        except BaseException:
            os.close(fd)
            raise
        if not _holds_a_pid_or_nothing(fd):
            os.close(fd)
            raise UnsafeCacheError(
                path,
                "it is not a revamper owner lock (it should hold a process id or nothing), so "
                "writing the lock would overwrite a file that may be yours",
                advice="Choose an empty cache_dir, or remove that file if it is not yours to keep",
            )
        with contextlib.suppress(OSError):  # a full disk: the lock holds all the same
            os.ftruncate(fd, 0)  # ours: checked by open_private, and empty or a pid
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._holder = [fd, os.getpid()]
        self._finalizer = weakref.finalize(self, _close, self._holder)

    @property
    def held_here(self) -> bool:
        """Whether this process is the one that holds the lock (not a forked child)."""
        fd, pid = self._holder
        return fd >= 0 and pid == os.getpid()

    def drop_inherited(self) -> None:
        """In a forked child: close this process's copy of the descriptor (the lock stays)."""
        fd, pid = self._holder
        if fd >= 0 and pid != os.getpid():
            self._holder[:] = [-1, os.getpid()]
            with contextlib.suppress(OSError):
                os.close(fd)

    def release(self) -> None:
        """Let go of the directory (in the owning process)."""
        _close(self._holder)


def _holds_a_pid_or_nothing(fd: int) -> bool:
    """Whether the lock file is empty or holds what :class:`OwnerLock` writes (a pid)."""
    try:
        if os.fstat(fd).st_size == 0:
            return True
    except OSError:
        return False
    return _read_pid(fd) is not None and os.fstat(fd).st_size <= 32


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        pid = int(text)
        if 0 < pid < 2**31:
            return pid
    return None
