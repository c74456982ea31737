"""Reading and removing the entry files of a shared-memory store without trusting them.

An entry file may have been truncated, overwritten, or replaced by a link, a FIFO or a directory
(by a careless script of the same user, or a damaged tmpfs). None of that may crash a worker,
block it, or make it read anything but a regular file of the current user. Entries are never
mapped: they are read with ``preadv`` into a private buffer (the reader needs a private copy
anyway), so a file truncated while it is read gives a short read, not a ``SIGBUS``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from revamper.errors import RecordError
from revamper.store import record
from revamper.store.permissions import check_fd

_OPEN: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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


def max_entry_size(directory: Path, capacity: int | None) -> int:
    """The largest entry a store in ``directory`` can hold: its budget, else its file system."""
    if capacity is not None:
        return capacity
    with contextlib.suppress(OSError):
        info = os.statvfs(directory)
        if info.f_blocks:
            return int(info.f_blocks * info.f_frsize)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


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
        # The header first: memory is allocated only for the size a valid header states (a
        # sparse file of any size would otherwise be read whole, gigabytes of zeros).
        try:
            stated = record.parse_header(os.pread(fd, record.HEADER_SIZE, 0)).record_size
        except RecordError as exc:
            raise DamagedEntry(str(exc)) from None
        if stated != size:
            raise DamagedEntry(f"{size} bytes, its header says {stated}")
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


def write_new(path: str, segments: list[bytes | memoryview]) -> None:
    """Write a record to a new private file (0600) at ``path``, never through a link.

    A leftover at ``path`` (a process of the same pid died mid-write) is removed first.

    Raises:
        OSError: If the file cannot be created or written (``ENOSPC``, ...).
    """
    try:
        fd = os.open(path, _CREATE, 0o600)
    except FileExistsError:
        remove_entry(path)
        fd = os.open(path, _CREATE, 0o600)
    try:
        record.write_segments(fd, segments)
    finally:
        os.close(fd)


def replace_entry(tmp: str, path: str) -> None:
    """Rename the written ``tmp`` over the entry ``path``, even if a directory sits there.

    Raises:
        OSError: If the rename fails.
    """
    try:
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
            raise
        shutil.rmtree(path, ignore_errors=True)  # a damaged entry; links are not followed
        os.replace(tmp, path)


_TEMPORARY: Final = re.compile(r"[0-9]{1,19}\.(?P<pid>[0-9]{1,10})")
ORPHAN_AGE_S: Final = 60.0
"""A temporary record younger than this is never taken for a dead writer's."""


def remove_orphans(directory: str) -> int:
    """Delete the temporary records (``<index>.<pid>``) of processes that no longer exist.

    A worker killed between writing its temporary record and renaming it into place (SIGKILL,
    the OOM killer) leaves the file behind, holding tmpfs pages that no budget counts. A live
    process's file is never touched (a reused pid only delays the clean-up), nor one written in
    the last :data:`ORPHAN_AGE_S` seconds (a writer in another pid namespace sharing the
    directory is invisible to ``kill``, but renames its record within milliseconds).

    Only regular files of ours with exactly that name are deleted, through a descriptor of the
    directory opened without following a link: a ``tmp`` replaced by a link to elsewhere, or a
    directory planted in it, is left alone.

    Returns:
        How many were deleted.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0  # gone, or a link: nothing of ours to clean
    removed = 0
    recent = time.time() - ORPHAN_AGE_S
    try:
        check_fd(fd, directory, directory=True)
        for name in os.listdir(fd):
            match = _TEMPORARY.fullmatch(name)
            if match is None or _alive(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                    continue
                if st.st_mtime > recent:
                    continue
                os.unlink(name, dir_fd=fd)
                removed += 1
    except (OSError, ValueError):
        pass  # not a private directory of ours: never clean it
    finally:
        os.close(fd)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # none, or no pid at all (a damaged name)
        return False
    except OSError:
        return True  # it exists (another user's: EPERM)
    return True
