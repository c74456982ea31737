"""Where a shared-memory store lives: creating, trusting, releasing and sweeping its directory.

A store is one directory on a tmpfs (``/dev/shm`` by default) that every process of a loader
opens by its path. Because what the store reads back from that directory may be unpickled (see
:class:`~revamper.store.memory.SharedMemoryStore`'s ``allow_pickle``), the directory must be one
that nobody else could have written: the owner creates it private (0700, files 0600), and a
process that opens a directory it did not just create (:meth:`SharedMemoryStore.attach`)
applies the rule ``ssh`` applies to ``~/.ssh`` (:mod:`revamper.store.permissions`). The parent
directory must keep other users from replacing the store's directory: ``/dev/shm`` and ``/tmp``
do so with their sticky bit.

An owner killed by a signal cannot remove its directory; it holds a lock on it for its lifetime,
and the next store created on the machine removes the directories whose lock nobody holds
(:func:`sweep_abandoned`), never touching what another user planted there.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from revamper.errors import UnsafeCacheError
from revamper.store.counters import Counters
from revamper.store.manifest import MANIFEST_NAME
from revamper.store.memory_settings import MemorySettings
from revamper.store.path_chain import checked_real_path, replaceable_by_others
from revamper.store.permissions import DIR_MODE, FILE_MODE, check_fd, check_path

logger = logging.getLogger(__name__)

DEFAULT_SHM_DIR: Final = "/dev/shm"
DIR_PREFIX: Final = "revamper-"
_STORE_NAME: Final = re.compile(r"revamper-(?:arena-)?[0-9]+-[^/]+\Z")
"""What a memory or arena store's directory is called: its prefix, the creating pid, a random
suffix. The sweep removes nothing else (a disk cache the user named ``revamper-cache``)."""
SETTINGS: Final = "settings.json"
OWNER_LOCK: Final = "owner.lock"  # flock-ed by the owner for its lifetime
SUBDIRS: Final = ("data", "tmp")
FILES: Final = ("lock", "counters", SETTINGS, OWNER_LOCK)
_MIN_RESERVE: Final = 256 * 2**20
_OPEN: Final = os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SETTINGS: Final = 64 * 1024
_RENAME_TRIES: Final = 16


def default_reserve(directory: str | os.PathLike[str]) -> int:
    """Free space a store leaves on its file system.

    On the file system ``/dev/shm`` is on: 10% of it, at least 256 MiB, at most half. That
    tmpfs is shared: torch's worker processes hand every batch to the main process through it,
    and a worker that finds it full dies of ``SIGBUS``. A cache that stops short of the last
    bytes leaves those batches room.

    Anywhere else (a tmpfs of its own, a disk) no batch needs room, so the reserve is only a
    margin that keeps the file system from filling to its last byte: 256 MiB, at most half.
    10% there would refuse every entry on a large disk that is 90% full, with gigabytes free.
    A file system that reports no size (an unlimited tmpfs, ramfs) gets no reserve.
    """
    info = os.statvfs(directory)
    size = info.f_blocks * info.f_frsize
    share = size // 10 if holds_torch_batches(directory) else 0
    return min(max(_MIN_RESERVE, share), size // 2)


def holds_torch_batches(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` is on the file system torch's workers pass batches through.

    That is the one ``/dev/shm`` is on (``shm_open``). Without a ``/dev/shm`` (macOS, some
    containers) no directory is: the store then sits in the temporary directory, often a large
    disk, where 10% would refuse every entry with gigabytes free. A ``directory`` that cannot
    be looked at counts as holding them (the store fails there anyway).
    """
    try:
        device = os.stat(directory).st_dev
    except OSError:
        return True
    try:
        return device == os.stat(DEFAULT_SHM_DIR).st_dev
    except OSError:
        return False


def free_bytes(directory: str | os.PathLike[str]) -> int | None:
    """Free bytes on the file system, or ``None`` if it reports no size (nothing to check)."""
    info = os.statvfs(directory)
    if info.f_blocks == 0:
        return None
    return info.f_bavail * info.f_frsize


def check_root(root: str | os.PathLike[str]) -> Path:
    """Check that other users cannot replace a store's directory inside ``root``.

    ``root`` must belong to the current user or to root, and if group or others may write to
    it, it must be sticky (like ``/dev/shm`` and ``/tmp``): in a sticky directory only an
    entry's owner may rename or remove it. Every directory and link on the way to it must pass
    the same rule (:mod:`revamper.store.path_chain`).

    Returns:
        Its real path, to use from then on.

    Raises:
        ValueError: If ``root`` is not an existing, writable directory.
        UnsafeCacheError: If another user could replace what the store creates there.
    """
    try:
        real = checked_real_path(root)
        st = os.stat(real)
    except UnsafeCacheError:
        raise
    except OSError as exc:
        raise ValueError(f"directory {str(root)!r} does not exist or is not a directory") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"directory {str(root)!r} does not exist or is not a directory")
    if not os.access(real, os.W_OK | os.X_OK):
        raise ValueError(f"directory {str(root)!r} is not writable")
    problem = replaceable_by_others(st, str(real))
    if problem is not None:
        raise UnsafeCacheError(real, problem, st)
    return real


def default_directory() -> Path:
    """The tmpfs to create stores in: ``/dev/shm`` if usable and safe, else the temp directory."""
    shm = Path(DEFAULT_SHM_DIR)
    fallback = Path(tempfile.gettempdir())
    try:
        check_root(shm)
    except UnsafeCacheError as exc:  # e.g. a 0777 tmpfs without the sticky bit
        logger.warning(
            "%s; the memory cache falls back to %s, which may not be in RAM: fix %s "
            "(chmod 1777) or pass a private directory on a tmpfs",
            exc,
            fallback,
            shm,
        )
        return fallback
    except ValueError as exc:
        logger.info("%s is not usable (%s); the memory store falls back to %s", shm, exc, fallback)
        return fallback
    return shm


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN, FILE_MODE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def create_directory(root: Path, settings: MemorySettings) -> tuple[Path, int]:
    """Create a store's directory in ``root``, private, locked and complete.

    It is built under a hidden name, which :func:`sweep_abandoned` never looks at, and renamed
    into place once its owner lock is held: a sweep in another process can never take a store
    being created for an abandoned one.

    Returns:
        The directory and the descriptor of its owner lock (held for the owner's lifetime: the
        kernel drops it when the last process holding the descriptor exits, however it dies,
        which is how :func:`sweep_abandoned` tells a leftover directory from a live one).
    """

    def fill(building: Path) -> None:
        for name in SUBDIRS:
            os.mkdir(building / name, DIR_MODE)
        Counters.create(building)
        for name in ("lock", "counters"):
            os.chmod(building / name, FILE_MODE)  # in our fresh 0700 directory: no link there
        _write_private(building / SETTINGS, settings.to_json().encode())

    return build_owned_directory(root, DIR_PREFIX, fill)


def build_owned_directory(
    root: Path, prefix: str, fill: Callable[[Path], None]
) -> tuple[Path, int]:
    """Build a private directory in ``root`` under a hidden name, locked, then rename it in.

    The directory is 0700 and holds :data:`OWNER_LOCK`, flock-ed before ``fill`` writes the
    rest; the hidden name (``.`` + ``prefix`` + pid) is one :func:`sweep_abandoned` never
    looks at. A failure removes what was built. The memory and arena stores share it.

    Returns:
        The directory's final path and the descriptor of its owner lock.
    """
    building = Path(tempfile.mkdtemp(prefix=f".{prefix}{os.getpid()}-", dir=root))  # 0700
    lock_fd = -1
    try:
        os.chmod(building, DIR_MODE)
        lock_fd = os.open(building / OWNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fill(building)
        final = _rename_in(building, root, prefix)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if lock_fd >= 0:
            os.close(lock_fd)
        raise
    return final, lock_fd


def _rename_in(building: Path, root: Path, prefix: str) -> Path:
    """Rename the built directory to a fresh visible name; returns it.

    The visible name takes new random bits (not the hidden name's, which anyone may list), and
    a name taken meanwhile (another user planting one in a shared ``/dev/shm`` to make the
    store fail) is retried with another.

    Raises:
        OSError: If :data:`_RENAME_TRIES` names in a row were taken.
    """
    for attempt in range(_RENAME_TRIES):
        final = root / f"{prefix}{os.getpid()}-{secrets.token_hex(8)}"
        try:
            os.rename(building, final)  # onto a planted file, or a non-empty directory: fails
        except OSError:
            if attempt == _RENAME_TRIES - 1:
                raise
            continue
        return final
    raise AssertionError("unreachable")


def check_directory(given: Path) -> Path:
    """Check an existing store directory, its parent and its files against the owner rule.

    Returns:
        Its real path, to use from then on.

    Raises:
        ValueError: If ``path`` lacks one of the store's files (it is no live store).
        UnsafeCacheError: If another user could have written the directory or one of its
            files, or one is a link or of the wrong kind.
    """
    path = check_root(given.parent) / given.name
    missing = [name for name in (*SUBDIRS, *FILES) if not os.path.lexists(path / name)]
    if missing:
        raise ValueError(
            f"path {str(path)!r} is not a live revamper shared-memory store (missing: "
            f"{', '.join(missing)}); was it created on this machine, and is its owner open?"
        )
    check_path(path, directory=True)
    for name in SUBDIRS:
        check_path(path / name, directory=True)
    for name in FILES:
        check_path(path / name)
    return path


def read_settings(path: Path) -> MemorySettings:
    """Read and validate a store's recorded settings (after :func:`check_directory`).

    Raises:
        ValueError: If the file is unreadable or any setting is malformed or out of range.
        UnsafeCacheError: If the file is a link, not a regular file, or not private.
    """
    file = path / SETTINGS
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | _OPEN)
        try:
            check_fd(fd, file)
            data = os.read(fd, _MAX_SETTINGS + 1)
        finally:
            os.close(fd)
        if len(data) > _MAX_SETTINGS:
            raise ValueError(f"larger than {_MAX_SETTINGS} bytes")
        return MemorySettings.from_json(data.decode())
    except UnsafeCacheError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable settings in the store at {str(path)!r}: {exc}") from exc


def remove_store_dir(path: str, owner_pid: int, lock_fd: int) -> None:
    """Remove a store's directory, if this is the owner's process (a ``weakref.finalize``).

    A forked child inherits the finalizer but must never delete the directory its parent owns.
    """
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(path):  # a worker was still writing; one more pass
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(lock_fd)


def _abandoned(path: Path, st: os.stat_result) -> bool:
    """Whether nobody holds the owner lock of the store directory ``path`` (``lstat`` ``st``)."""
    try:
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _OPEN)
    except OSError:
        return False
    try:
        now = os.fstat(dir_fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False  # replaced since we looked: look again at the next sweep
        fd = os.open(OWNER_LOCK, os.O_RDWR | os.O_NONBLOCK | _OPEN, dir_fd=dir_fd)
    except OSError:
        return False  # being created, not a store of this version, or a link: not ours to judge
    finally:
        os.close(dir_fd)
    try:
        check_fd(fd, path / OWNER_LOCK)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (OSError, UnsafeCacheError):
        return False  # its owner (or one of its workers) is alive, or it is not ours
    finally:
        os.close(fd)
    return True


def sweep_abandoned(root: str | os.PathLike[str]) -> list[Path]:
    """Remove the store directories in ``root`` whose owner died without closing them.

    An owner killed by a signal (the OOM killer, a ``SIGKILL`` or an unhandled ``SIGTERM`` from
    a job scheduler or torchrun) cannot remove its directory, and the entries would occupy
    shared memory until the machine restarts. Every new store therefore sweeps: a directory of
    this user, writable by nobody else, whose owner lock nobody holds, is removed with a
    warning. Links, files and directories of other users are never followed nor removed; the
    removal itself never follows a link inside the directory.

    Returns:
        The directories removed.
    """
    removed: list[Path] = []
    try:
        with os.scandir(root) as scan:
            names = [e.name for e in scan if _STORE_NAME.match(e.name)]
    except OSError:
        return removed
    for name in names:
        path = Path(root, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue  # a link, a file, or another user's: never ours to touch
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                logger.warning(
                    "not sweeping %s (mode %04o): others may write to it",
                    path,
                    stat.S_IMODE(st.st_mode),
                )
                continue
            if (path / MANIFEST_NAME).exists() or not _abandoned(path, st):
                continue  # a persistent disk cache named revamper-* has an owner lock too
            size = _tree_bytes(path)
            shutil.rmtree(path)
        except OSError:
            continue  # another process swept it first, or it is not ours to remove
        logger.warning(
            "removed %s (%.1f MB), a revamper cache whose process ended without closing it",
            path,
            size / 1e6,
        )
        removed.append(path)
    return removed


def _tree_bytes(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total
