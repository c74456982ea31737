"""Who may have written a cache: the owner and mode rule, and opening files without following links.

A cache directory is input, and input can be hostile. A file that another local user could have
written (it is theirs, or it is writable by group or others), or a symbolic link planted where a
cache file should be, must never be read as a cache nor written through. The rule is the one
``ssh`` applies to ``~/.ssh``: what the cache reads must belong to the current user and be
writable by nobody else. Everything a store creates is private (directories 0700, files 0600).

Every check names the path, its owner and its mode, and says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Final

from revamper.errors import UnsafeCacheError

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "UnsafeCacheError",
    "check_fd",
    "check_path",
    "check_tree",
    "make_private_dir",
    "open_private",
    "resolve_directory",
]

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
_OPEN_FLAGS: Final = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
"""``O_NONBLOCK``: a FIFO planted where a file should be opens at once (and is then refused)
instead of blocking until a writer comes; it changes nothing for a regular file."""


def _check_stat(path: str | os.PathLike[str], st: os.stat_result, *, directory: bool) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeCacheError(path, "it is a symbolic link", st)
    if directory and not stat.S_ISDIR(st.st_mode):
        raise UnsafeCacheError(path, "it is not a directory", st)
    if not directory and not stat.S_ISREG(st.st_mode):
        raise UnsafeCacheError(path, "it is not a regular file", st)
    if not directory and st.st_nlink > 1:  # writing it would write the other names' file too
        raise UnsafeCacheError(path, "it has other hard links", st)
    if st.st_uid != os.geteuid():
        raise UnsafeCacheError(path, "it belongs to another user", st)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCacheError(path, "it is writable by group or others", st)


def check_path(path: str | os.PathLike[str], *, directory: bool = False) -> os.stat_result:
    """Check an existing cache path (not following a link) against the owner and mode rule.

    Args:
        path: The path to check.
        directory: Whether it must be a directory (else a regular file).

    Returns:
        Its ``lstat``.

    Raises:
        FileNotFoundError: If it does not exist.
        UnsafeCacheError: If it is a symbolic link, of the wrong type, owned by another user,
            or writable by group or others.
    """
    st = os.lstat(path)
    _check_stat(path, st, directory=directory)
    return st


def resolve_directory(path: str | os.PathLike[str]) -> Path:
    """The directory a user-given cache path names, after the owner and mode rule.

    The path may be a symbolic link that belongs to the current user (a link to a cache on
    another disk); a link someone else made (say in a shared ``/tmp``) is refused, since it
    could point the cache at any directory. The directory itself must pass :func:`check_path`.

    Returns:
        The real path if ``path`` is a link, else ``path`` unchanged.

    Raises:
        FileNotFoundError: If it does not exist.
        UnsafeCacheError: As :func:`check_path`, or for a link of another user.
    """
    given = Path(path)
    st = os.lstat(given)
    if stat.S_ISLNK(st.st_mode):
        if st.st_uid != os.geteuid():
            raise UnsafeCacheError(given, "it is a symbolic link made by another user", st)
        given = Path(os.path.realpath(given))
    check_path(given, directory=True)
    return given


def check_tree(path: str | os.PathLike[str]) -> os.stat_result:
    """Check a cache directory and every entry in it, recursively (see :func:`check_path`).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        UnsafeCacheError: For the first offending path.
    """
    st = check_path(path, directory=True)
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    check_tree(entry.path)
                else:
                    check_path(entry.path)
            except FileNotFoundError:
                continue  # deleted meanwhile (a segment collected by another process)
    return st


def check_fd(fd: int, path: str | os.PathLike[str], *, directory: bool = False) -> os.stat_result:
    """Check what an open descriptor refers to (see :func:`check_path`); returns its ``fstat``."""
    st = os.fstat(fd)
    _check_stat(path, st, directory=directory)
    return st


def open_private(path: str | os.PathLike[str], flags: int, *, create: bool = False) -> int:
    """Open a cache file without following a link, and check it is a private file of ours.

    Args:
        path: The file.
        flags: ``os.O_RDONLY``, ``os.O_RDWR``, ... (``O_NOFOLLOW | O_CLOEXEC`` are added).
        create: Create it (mode 0600) if it does not exist; an existing file is checked all
            the same. Use ``flags | os.O_EXCL`` to insist on a new file.

    Returns:
        The descriptor (the caller closes it).

    Raises:
        FileNotFoundError: If it does not exist and ``create`` is false.
        UnsafeCacheError: If it is a link, not a regular file, not ours or writable by others
            (the descriptor is then closed).
        OSError: For any other failure (``ENOSPC``, ...).
    """
    if create:
        flags |= os.O_CREAT
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            st = None
            with contextlib.suppress(OSError):
                st = os.lstat(path)
            raise UnsafeCacheError(path, "it is a symbolic link", st) from exc
        raise
    try:
        check_fd(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_private_dir(path: str | os.PathLike[str]) -> os.stat_result:
    """Create a private directory (mode 0700) or check an existing one (see :func:`check_path`)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, DIR_MODE)
    return check_path(Path(path), directory=True)
