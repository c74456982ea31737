"""Reading and removing the entry files of a shared-memory store without trusting them.

An entry file may have been truncated, overwritten, or replaced by a link, a FIFO or a directory
(by a careless script of the same user, or a damaged tmpfs). None of that may crash a worker,
block it, or make it read anything but a regular file of the current user. Entries are never
mapped: they are read with ``preadv`` into a private buffer (the reader needs a private copy
anyway), so a file truncated while it is read gives a short read, not a ``SIGBUS``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from typing import Any, Final

import numpy as np

from revamper.store import record

_OPEN: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class DamagedEntry(Exception):
    """An entry file that is not what the store writes (its reason is the message)."""


def _open(path: str) -> tuple[int, os.stat_result] | None:
    """Open an entry without following a link or blocking; ``None`` if there is none."""
    try:
        fd = os.open(path, _OPEN)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP (a link), ENXIO (a socket), EACCES, ...
        raise DamagedEntry(f"cannot open it: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DamagedEntry("not a regular file")
        if st.st_uid != os.geteuid():
            raise DamagedEntry(f"owned by uid {st.st_uid}")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_entry(path: str, max_size: int) -> np.ndarray[Any, np.dtype[np.uint8]] | None:
    """Read a whole entry file into a new private array.

    Args:
        path: The entry's file.
        max_size: The largest record the store can hold; a larger file is damaged (a sparse
            file could otherwise claim any size and exhaust memory).

    Returns:
        The bytes read (fewer than the file's size if it shrank meanwhile: the record's header
        then disagrees), or ``None`` if there is no entry.

    Raises:
        DamagedEntry: If the path is a link, not a regular file, another user's, too small or
            too large to be a record, or cannot be read.
    """
    opened = _open(path)
    if opened is None:
        return None
    fd, st = opened
    try:
        size = st.st_size
        if not record.HEADER_SIZE <= size <= max_size:
            raise DamagedEntry(f"{size} bytes, not a record size")
        data = np.empty(size, dtype=np.uint8)
        got = 0
        while got < size:
            more = os.preadv(fd, [data.data[got:]], got)
            if more == 0:
                break  # truncated meanwhile
            got += more
    except OSError as exc:
        raise DamagedEntry(f"cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)
    return data[:got] if got < size else data


def read_head(path: str) -> bytes | None:
    """The first :data:`~revamper.store.record.HEADER_SIZE` bytes of an entry, or ``None``.

    Raises:
        DamagedEntry: As :func:`read_entry`.
    """
    opened = _open(path)
    if opened is None:
        return None
    fd, _ = opened
    try:
        return os.pread(fd, record.HEADER_SIZE, 0)
    except OSError as exc:
        raise DamagedEntry(f"cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)


def entry_size(path: str) -> int:
    """The bytes an entry occupies in the budget: its size if a regular file, else 0."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def remove_entry(path: str) -> bool:
    """Remove whatever is at ``path`` (a directory with all it holds, links not followed).

    Returns:
        Whether there was something to remove.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except (IsADirectoryError, PermissionError):
        if not os.path.isdir(path) or os.path.islink(path):
            raise
        shutil.rmtree(path, ignore_errors=True)
    return True


def clear_for_replace(path: str) -> None:
    """Make room for ``os.replace`` onto ``path`` if a directory sits there (a damaged entry)."""
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
