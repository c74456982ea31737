"""A cache store in shared memory that every DataLoader worker process maps.

Each entry is one record file (see :mod:`revamper.store.record`) on a tmpfs (``/dev/shm`` by
default), so the data lives in RAM and every process that knows the store's directory can read and
write it: fork and spawn workers, persistent or not, and later other ranks on the same machine. No
server process sits in the data path (a manager proxy would push every entry through a socket).

Writes go to a temporary file that is then renamed over the entry, which is atomic: a reader sees
the old record or the new one, never a torn one, so no checksum is needed by default. A small
shared counter block, updated under an ``flock``, tracks the bytes held so that an optional budget
is exact across processes. The owner (the instance that created the directory) removes it on
:meth:`close`, on garbage collection and at interpreter exit; attached instances never do. Pickling
an instance (as torch does for worker processes) attaches; so does :meth:`SharedMemoryStore.attach`,
which takes only the directory's path (how the other ranks of a machine join the cache that the
machine's first rank created). An owner killed by a signal cannot clean up; it holds a lock on
its directory for its lifetime, and the next store created on the machine removes directories
whose lock nobody holds (:func:`sweep_abandoned`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np

from revamper.store import codec, record
from revamper.store.base import MISS, CacheStore, IoCounters, StoreStats
from revamper.store.counters import Counters

logger = logging.getLogger(__name__)

DEFAULT_SHM_DIR: Final = "/dev/shm"
_SHARD_BITS: Final = 10  # 1,024 entries per sub-directory
DIR_PREFIX: Final = "revamper-"
_SETTINGS: Final = "settings.json"
_OWNER_LOCK: Final = "owner.lock"  # flock-ed by the owner for its lifetime
_LAYOUT: Final = ("data", "tmp", "lock", "counters", _SETTINGS, _OWNER_LOCK)
_MIN_RESERVE: Final = 256 * 2**20


def default_reserve(directory: str | os.PathLike[str]) -> int:
    """Free space a store leaves on its file system: 10% of it, at least 256 MiB, at most half.

    The tmpfs is shared: torch's worker processes hand every batch to the main process through
    shared memory too, and a worker that finds ``/dev/shm`` full dies of ``SIGBUS``. A cache
    that stops short of the last bytes leaves those batches room. A file system that reports
    no size (an unlimited tmpfs, ramfs) gets no reserve.
    """
    info = os.statvfs(directory)
    size = info.f_blocks * info.f_frsize
    return min(max(_MIN_RESERVE, size // 10), size // 2)


def _free_bytes(directory: str | os.PathLike[str]) -> int | None:
    """Free bytes on the file system, or ``None`` if it reports no size (nothing to check)."""
    info = os.statvfs(directory)
    if info.f_blocks == 0:
        return None
    return info.f_bavail * info.f_frsize


def default_directory() -> Path:
    """The tmpfs to create stores in: ``/dev/shm`` if usable, else the temp directory."""
    shm = Path(DEFAULT_SHM_DIR)
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    fallback = Path(tempfile.gettempdir())
    logger.info("%s is not usable; the memory store falls back to %s", shm, fallback)
    return fallback


def _remove_store_dir(path: str, owner_pid: int, lock_fd: int) -> None:
    # Runs from weakref.finalize; a forked child inherits the finalizer but must never delete
    # the directory its parent owns.
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(path):  # a worker was still writing; one more pass
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(lock_fd)


def _hold_owner_lock(path: Path) -> int:
    """Lock the new store's owner file for the owner's lifetime; returns the descriptor.

    The kernel drops the lock when the last process holding the descriptor exits, however it
    dies (SIGKILL included), which is how :func:`sweep_abandoned` tells a leftover directory from
    a live one. Forked workers inherit the descriptor, so the lock lasts while they run.
    """
    fd = os.open(path / _OWNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _create_directory(root: Path, settings: dict[str, Any]) -> tuple[Path, int]:
    """Create a store's directory in ``root``, locked and complete; returns it and the lock.

    It is built under a hidden name, which :func:`sweep_abandoned` never looks at, and renamed
    into place once its owner lock is held: a sweep in another process can never take a store
    being created for an abandoned one.
    """
    building = Path(tempfile.mkdtemp(prefix=f".{DIR_PREFIX}{os.getpid()}-", dir=root))
    lock_fd = -1
    try:
        lock_fd = _hold_owner_lock(building)
        (building / "data").mkdir()
        (building / "tmp").mkdir()
        Counters.create(building)
        (building / _SETTINGS).write_text(json.dumps(settings))
        final = building.with_name(building.name[1:])
        os.rename(building, final)  # a live store of that name is never empty: rename fails
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if lock_fd >= 0:
            os.close(lock_fd)
        raise
    return final, lock_fd


def _abandoned(path: Path) -> bool:
    try:
        fd = os.open(path / _OWNER_LOCK, os.O_RDWR)
    except OSError:
        return False  # being created, or not a store of this version: not ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # its owner (or one of its workers) is alive
    finally:
        os.close(fd)
    return True


def sweep_abandoned(root: str | os.PathLike[str]) -> list[Path]:
    """Remove the store directories in ``root`` whose owner died without closing them.

    An owner killed by a signal (the OOM killer, a ``SIGKILL`` or an unhandled ``SIGTERM`` from
    a job scheduler or torchrun) cannot remove its directory, and the entries would occupy
    shared memory until the machine restarts. Every new store therefore sweeps: a directory of
    this user whose owner lock nobody holds is removed, with a warning.

    Returns:
        The directories removed.
    """
    removed: list[Path] = []
    uid = os.getuid()
    try:
        with os.scandir(root) as scan:
            entries = [e for e in scan if e.name.startswith(DIR_PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != uid:
                continue
            if not _abandoned(path):
                continue
            size = _tree_bytes(path)
            shutil.rmtree(path, ignore_errors=True)
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


class _Handles:
    """What one process holds open on the store (a forked child reopens its own)."""

    def __init__(self, path: Path) -> None:
        self.pid = os.getpid()
        self.counters = Counters(path)
        self.shards: set[int] = set()

    def close(self) -> None:
        self.counters.close()


class SharedMemoryStore(CacheStore):
    """Cache entries as record files on a tmpfs shared by all processes of a loader.

    Args:
        capacity_bytes: Budget for all entries together (record sizes), or ``None`` for none.
            An entry that does not fit is not cached; readers then miss and recompute it.
        directory: Where to create the store's directory; defaults to ``/dev/shm`` (falling back
            to the system temp directory, with a log message, where there is none).
        checksum: Also store and verify a CRC-32 of each record. Renames already make records
            atomic, so this only guards against memory corruption; it costs a pass over the data.
        reserve_bytes: Free space to leave on the file system: an entry that would leave less
            is not cached (counted as rejected, with a warning once per process), whatever the
            budget. ``None``: :func:`default_reserve`.

    Raises:
        ValueError: If ``capacity_bytes`` or ``reserve_bytes`` is negative or ``directory`` is
            not a writable directory.
        TypeError: If ``capacity_bytes`` or ``reserve_bytes`` is not an int.
    """

    def __init__(
        self,
        capacity_bytes: int | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        checksum: bool = False,
        reserve_bytes: int | None = None,
    ) -> None:
        for name, value in (("capacity_bytes", capacity_bytes), ("reserve_bytes", reserve_bytes)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        root = Path(directory) if directory is not None else default_directory()
        if not root.is_dir():
            raise ValueError(f"directory {str(root)!r} does not exist or is not a directory")
        if not os.access(root, os.W_OK | os.X_OK):
            raise ValueError(f"directory {str(root)!r} is not writable")
        self._capacity = capacity_bytes
        self._checksum = checksum
        self._reserve = default_reserve(root) if reserve_bytes is None else reserve_bytes
        sweep_abandoned(root)
        settings = {
            "capacity_bytes": capacity_bytes,
            "checksum": bool(checksum),
            "reserve_bytes": self._reserve,
        }
        self._path, lock_fd = _create_directory(root, settings)
        self._owner_pid = os.getpid()
        self._finalizer: weakref.finalize[Any, SharedMemoryStore] | None = weakref.finalize(
            self, _remove_store_dir, str(self._path), self._owner_pid, lock_fd
        )
        self._handles: _Handles | None = None
        self._closed = False
        self._warned: set[str] = set()
        self._bytes_read = 0

    @classmethod
    def attach(cls, path: str | os.PathLike[str]) -> SharedMemoryStore:
        """Open the store another process created at ``path``, as an attached instance.

        The attached instance reads and writes the same entries under the same budget and
        checksum setting as the owner (they are recorded in the directory), and never removes
        the directory: the owner does, when it closes. This is how the ranks of one machine share
        the cache that its first rank created; the path is all that needs to travel.

        Args:
            path: The owner's :attr:`path`.

        Returns:
            An attached store.

        Raises:
            ValueError: If ``path`` is not the directory of a live shared-memory store (it does
                not exist, for example because its owner closed it, or it lies on another
                machine, or it lacks the store's files).
        """
        root = Path(path)
        missing = [name for name in _LAYOUT if not (root / name).exists()]
        if missing:
            raise ValueError(
                f"path {str(root)!r} is not a live revamper shared-memory store (missing: "
                f"{', '.join(missing)}); was it created on this machine, and is its owner open?"
            )
        try:
            settings = json.loads((root / _SETTINGS).read_text())
            capacity = settings["capacity_bytes"]
            checksum = settings["checksum"]
            reserve = settings["reserve_bytes"]
            if capacity is not None and (
                isinstance(capacity, bool) or not isinstance(capacity, int)
            ):
                raise TypeError(f"capacity_bytes is {capacity!r}")
            if isinstance(reserve, bool) or not isinstance(reserve, int):
                raise TypeError(f"reserve_bytes is {reserve!r}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable settings in the store at {str(root)!r}: {exc}") from exc
        store = cls.__new__(cls)
        store.__setstate__(
            {"path": root, "capacity": capacity, "checksum": bool(checksum), "reserve": reserve}
        )
        return store

    # -- pickling: what a worker process receives is an attached instance -------------------
    def __getstate__(self) -> dict[str, Any]:
        self._check_open()
        return {
            "path": self._path,
            "capacity": self._capacity,
            "checksum": self._checksum,
            "reserve": self._reserve,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path = state["path"]
        self._capacity = state["capacity"]
        self._checksum = state["checksum"]
        self._reserve = state["reserve"]
        self._owner_pid = -1
        self._finalizer = None
        self._handles = None
        self._closed = False
        self._warned = set()
        self._bytes_read = 0

    @property
    def path(self) -> Path:
        """The store's directory."""
        return self._path

    @property
    def capacity_bytes(self) -> int | None:
        """The byte budget, or ``None``."""
        return self._capacity

    @property
    def reserve_bytes(self) -> int:
        """Free space the store leaves on its file system."""
        return self._reserve

    @property
    def is_owner(self) -> bool:
        """Whether this instance (in this process) releases the store on close."""
        return self._finalizer is not None and os.getpid() == self._owner_pid

    # -- helpers --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the cache store at {self._path} is closed")

    def _proc(self) -> _Handles:
        self._check_open()
        handles = self._handles
        if handles is None or handles.pid != os.getpid():
            try:
                handles = self._handles = _Handles(self._path)
            except FileNotFoundError:
                raise _StoreGone(self._path) from None
        return handles

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Counters]:
        with self._proc().counters.locked() as counters:
            yield counters

    def _count(self, name: str, delta: int = 1) -> None:
        with self._locked() as counters:
            counters.add(name, delta)

    def _entry_path(self, index: int) -> str:
        return f"{self._path}/data/{index >> _SHARD_BITS:x}/{index}"

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    @staticmethod
    def _check_index(index: int) -> None:
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")

    # -- the contract -----------------------------------------------------------------------
    def get(self, index: int, generation: int) -> Any:
        """See :meth:`CacheStore.get`."""
        self._check_open()
        self._check_index(index)
        try:
            fd = os.open(self._entry_path(index), os.O_RDONLY)
        except FileNotFoundError:
            return MISS
        try:
            size = os.fstat(fd).st_size
            data = np.empty(size, dtype=np.uint8)
            got = os.readv(fd, [data.data])
            while got < size:
                more = os.preadv(fd, [data.data[got:]], got)
                if more == 0:
                    break
                got += more
        finally:
            os.close(fd)
        self._bytes_read += got
        try:
            header, meta, payload = record.open_record(data[:got], index)
            if header.generation != generation:
                return MISS
            return codec.decode(meta, payload)
        except (record.RecordError, codec.CodecError) as exc:
            with contextlib.suppress(_StoreGone):
                self._count("invalid")
            logger.debug("cache entry %d rejected: %s", index, exc)
            return MISS

    def put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        """See :meth:`CacheStore.put_encoded`."""
        self._check_index(index)
        try:
            return self._put(index, generation, encoded)
        except _StoreGone:
            self._warn_once(
                "gone",
                f"revamper: the cache directory {self._path} no longer exists (its loader was "
                "closed, or something removed it); samples are no longer cached",
            )
            return False

    def _put(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        handles = self._proc()
        size = record.record_size(encoded)
        final = self._entry_path(index)
        if self._capacity is not None:
            # Optimistic check without the lock: skip writing what cannot fit.
            old = _size_or_zero(final)
            if handles.counters.value("bytes") - old + size > self._capacity:
                self._reject(index)
                return False
        free = _free_bytes(self._path)
        if free is not None and free - size < self._reserve:
            self._warn_once(
                "reserve",
                f"revamper: only {free / 2**20:.0f} MiB free in {self._path.parent}; the memory "
                f"cache leaves {self._reserve / 2**20:.0f} MiB there for DataLoader's batches "
                "and stops growing. Pass a smaller cache_bytes, or give the machine more shared "
                "memory (docker: --shm-size).",
            )
            self._reject(index)
            return False
        tmp = f"{self._path}/tmp/{index}.{os.getpid()}"
        try:
            self._ensure_shard(handles, index)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                record.write_segments(
                    fd, record.record_segments(index, generation, encoded, checksum=self._checksum)
                )
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return self._write_failed(index, exc)
        with self._locked() as counters:
            old = _size_or_zero(final)
            if self._capacity is not None and counters.value("bytes") - old + size > self._capacity:
                os.unlink(tmp)
                self._reject_locked(counters, final, old)
                return False
            try:
                os.replace(tmp, final)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                counters.add("failed")
                return self._write_failed(index, exc, counted=True)
            counters.add("bytes", size - old)
            counters.add("entries", 0 if old else 1)
            counters.add("puts")
        return True

    def _ensure_shard(self, handles: _Handles, index: int) -> None:
        shard = index >> _SHARD_BITS
        if shard in handles.shards:
            return
        # os.mkdir, never makedirs: after close() the parent is gone and must stay gone.
        with contextlib.suppress(FileExistsError):
            os.mkdir(f"{self._path}/data/{shard:x}")
        handles.shards.add(shard)

    def _reject(self, index: int) -> None:
        with self._locked() as counters:
            final = self._entry_path(index)
            self._reject_locked(counters, final, _size_or_zero(final))

    def _reject_locked(self, counters: Counters, final: str, old: int) -> None:
        # Whatever the index held before is outdated by this put: drop it too.
        if old:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(final)
                counters.add("bytes", -old)
                counters.add("entries", -1)
        counters.add("rejected")

    def _write_failed(self, index: int, exc: OSError, *, counted: bool = False) -> bool:
        if not counted:
            self._count("failed")
        if exc.errno == errno.ENOENT and not self._path.exists():
            raise _StoreGone(self._path)
        self._warn_once(
            f"write-{exc.errno}",
            f"revamper: could not cache sample {index} in {self._path} ({exc}); it stays "
            "uncached and is recomputed when needed. Free space on that file system, pass a "
            "smaller cache_bytes, or use another directory.",
        )
        return False

    def evict(self, index: int) -> None:
        """See :meth:`CacheStore.evict`."""
        self._check_index(index)
        final = self._entry_path(index)
        with self._locked() as counters:
            old = _size_or_zero(final)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(final)
                counters.add("bytes", -old)
                counters.add("entries", -1)

    def contains(self, index: int, generation: int | None = None) -> bool:
        """See :meth:`CacheStore.contains`."""
        self._check_open()
        self._check_index(index)
        try:
            with open(self._entry_path(index), "rb") as file:
                head = file.read(record.HEADER_SIZE)
        except FileNotFoundError:
            return False
        try:
            header = record.parse_header(head)
        except record.RecordError:
            return False
        return header.index == index and (generation is None or header.generation == generation)

    def io_counters(self) -> IoCounters:
        """See :meth:`CacheStore.io_counters`: entries read here, all from memory."""
        return IoCounters(memory_read=self._bytes_read)

    def stats(self) -> StoreStats:
        """See :meth:`CacheStore.stats`."""
        return self._proc().counters.stats(self._capacity)

    def close(self) -> None:
        """See :meth:`CacheStore.close`; the owner removes the directory and every entry."""
        if self._closed:
            return
        if self._handles is not None and self._handles.pid == os.getpid():
            self._handles.close()
        self._handles = None
        self._closed = True
        if self._finalizer is not None and os.getpid() == self._owner_pid:
            self._finalizer()

    def __repr__(self) -> str:
        role = "owner" if self.is_owner else "attached"
        state = "closed" if self._closed else role
        return f"SharedMemoryStore({str(self._path)!r}, capacity_bytes={self._capacity}, {state})"


class _StoreGone(RuntimeError):
    """The store's directory was removed under an attached instance."""


def _size_or_zero(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
