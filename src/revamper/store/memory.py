"""A cache store in shared memory that every DataLoader worker process maps.

Each entry is one record file (see :mod:`revamper.store.record`) on a tmpfs (``/dev/shm`` by
default), so the data lives in RAM and every process that knows the store's directory can read and
write it: fork and spawn workers, persistent or not, and later other ranks on the same machine. No
server process sits in the data path (a manager proxy would push every entry through a socket).

Writes go to a temporary file renamed over the entry (atomic: a reader sees the old record or the
new one). Every record carries the store's random run identity and, by default, a CRC-32; it is
read into a private buffer (never mapped) from a file opened without following links, so a
damaged, truncated or replaced entry reads as a miss (counted in ``invalid_reads``), never as a
crash or wrong data (:mod:`revamper.store.memory_entry`). Shared counters under an ``flock``
keep an optional budget exact across processes; one out of range is recounted.

The owner (the instance that created the directory) removes it on :meth:`close`, on garbage
collection and at interpreter exit; attached instances never do. Pickling an instance (as torch
does for worker processes) attaches; so does :meth:`SharedMemoryStore.attach`, which takes only
the directory's path (how the other ranks of a machine join the first rank's cache) and refuses
a directory another user could have written (:mod:`revamper.store.memory_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from revamper.errors import CodecError, RecordError
from revamper.store import codec, record
from revamper.store.base import MISS, CacheStore, IoCounters, PerProcess, StoreStats, check_budget
from revamper.store.counters import Counters
from revamper.store.memory_dir import (
    DIR_PREFIX,
    check_directory,
    check_root,
    create_directory,
    default_directory,
    default_reserve,
    free_bytes,
    read_settings,
    remove_store_dir,
    sweep_abandoned,
)
from revamper.store.memory_entry import (
    DamagedEntry,
    entry_size,
    max_entry_size,
    read_entry,
    read_head,
    remove_entry,
    remove_orphans,
    replace_entry,
    write_new,
)
from revamper.store.memory_handles import Handles, StoreGone
from revamper.store.memory_settings import MemorySettings
from revamper.store.memory_usage import MAX_BYTES, checked_stats, checked_usage
from revamper.store.registry import StoreOptions, StoreSpec, handle_field, register_store

__all__ = ["DIR_PREFIX", "SharedMemoryStore", "default_reserve", "sweep_abandoned"]

logger = logging.getLogger(__name__)

_SHARD_BITS: Final = 10  # 1,024 entries per sub-directory


class SharedMemoryStore(CacheStore):
    """Cache entries as record files on a tmpfs shared by all processes of a loader.

    Pickle policy: ``allow_pickle`` defaults to ``True`` here (values the codec cannot encode
    natively are pickled, with a warning once per type), unlike the disk store. The store's
    directory is created private (0700, files 0600) by this process, lives only as long as
    the run, is refused by :meth:`attach` unless it belongs to the current user and nobody else
    can write to it, and every record must carry this store's random run identity: no other
    user can plant an entry that it would unpickle. Pass ``allow_pickle=False`` to never
    unpickle anything (a value that needs pickle then raises
    :class:`~revamper.errors.PickleNotAllowedError` on :meth:`put`).

    Args:
        budget_bytes: Budget for all entries together (record sizes), or ``None`` for none.
            An entry that does not fit is not cached; readers then miss and recompute it.
        directory: Where to create the store's directory; defaults to ``/dev/shm`` (falling back
            to the system temp directory, with a log message, where there is none).
        checksum: Store and verify a CRC-32 of each record (on by default). Renames already
            make records atomic; the checksum makes an entry damaged in memory or by another
            program read as a miss instead of as wrong pixels. It costs one pass over the data
            per put and per get (about 20 us for a 150 KB entry).
        reserve_bytes: Free space to leave on the file system: an entry that would leave less
            is not cached (counted as rejected, with a warning once per process), whatever the
            budget. ``None``: :func:`default_reserve`.
        allow_pickle: Whether values the codec cannot encode natively may be pickled (and
            unpickled when read back); see the pickle policy above.

    Raises:
        ValueError: If ``budget_bytes`` or ``reserve_bytes`` is negative or ``directory`` is
            not a writable directory.
        UnsafeCacheError: If another user could replace what the store creates in
            ``directory`` (it is theirs, or writable by others and not sticky).
        TypeError: If ``budget_bytes`` or ``reserve_bytes`` is not an int.
    """

    _finalizer: weakref.finalize[Any, Any] | None

    def __init__(
        self,
        budget_bytes: int | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        checksum: bool = True,
        reserve_bytes: int | None = None,
        allow_pickle: bool = True,
    ) -> None:
        check_budget("budget_bytes", budget_bytes)
        check_budget("reserve_bytes", reserve_bytes)
        root = Path(directory) if directory is not None else default_directory()
        root = check_root(root)
        settings = MemorySettings(
            budget_bytes=budget_bytes,
            checksum=bool(checksum),
            reserve_bytes=default_reserve(root) if reserve_bytes is None else reserve_bytes,
            allow_pickle=bool(allow_pickle),
            run_id=os.urandom(record.RUN_ID_SIZE),
        )
        sweep_abandoned(root)
        path, lock_fd = create_directory(root, settings)
        self._init_state(path, settings)
        self._owner_pid = os.getpid()
        self._finalizer = weakref.finalize(
            self, remove_store_dir, str(path), self._owner_pid, lock_fd
        )

    def _init_state(self, path: Path, settings: MemorySettings) -> None:
        self._path = path
        self._settings = settings
        self._capacity = settings.budget_bytes
        self._checksum = settings.checksum
        self._reserve = settings.reserve_bytes
        self._allow_pickle = settings.allow_pickle
        self._run_id = settings.run_id
        self._max_record = max_entry_size(path, settings.budget_bytes)
        self._max_used = MAX_BYTES if self._capacity is None else self._capacity
        self._owner_pid = -1
        self._finalizer = None
        self._handles: PerProcess[Handles] = PerProcess()
        self._bytes_read = 0
        self._invalid_seen = 0

    @classmethod
    def attach(cls, path: str | os.PathLike[str]) -> SharedMemoryStore:
        """Open the store another process created at ``path``, as an attached instance.

        It shares the owner's entries, budget, checksum, pickle policy and run identity (all
        recorded in the directory) and never removes the directory. This is how the ranks of
        one machine share the cache of its first rank; only the path travels. The directory
        is input: it and its files must belong to the current user and be writable by nobody
        else (the rule ``ssh`` applies to ``~/.ssh``).

        Args:
            path: The owner's :attr:`path`.

        Returns:
            An attached store.

        Raises:
            ValueError: If ``path`` is not the directory of a live shared-memory store (it does
                not exist, for example because its owner closed it, or it lies on another
                machine, or it lacks the store's files, or its settings are malformed).
            UnsafeCacheError: If another user could have written the directory or a file in
                it (the message names the path, its owner and its mode, and what to do).
        """
        root = check_directory(Path(path))
        store = cls.__new__(cls)
        store._init_state(root, read_settings(root))
        return store

    # -- pickling: what a worker process receives is an attached instance -------------------
    def _shared_state(self) -> dict[str, Any]:
        return {"path": self._path, "settings": self._settings}

    def _attach_state(self, state: Mapping[str, Any]) -> None:
        # The state comes from the owner's process (a trusted pickle, not the directory).
        self._init_state(state["path"], state["settings"])

    @property
    def path(self) -> Path:
        """The store's directory."""
        return self._path

    @property
    def budget_bytes(self) -> int | None:
        """The byte budget, or ``None``."""
        return self._capacity

    @property
    def reserve_bytes(self) -> int:
        """Free space the store leaves on its file system."""
        return self._reserve

    @property
    def checksum(self) -> bool:
        """Whether records carry, and must pass, a CRC-32."""
        return self._checksum

    @property
    def run_id(self) -> bytes:
        """The store's random identity, shared by attached instances and written in records."""
        return self._run_id

    @property
    def is_owner(self) -> bool:
        """Whether this instance (in this process) releases the store on close."""
        return self._finalizer is not None and os.getpid() == self._owner_pid

    # -- helpers --------------------------------------------------------------------------
    def _open_handles(self) -> Handles:
        return Handles.open(self._path)

    def _proc(self) -> Handles:
        self._check_open()  # internal callers too: a closed store never re-opens files
        return self._handles.get(self._open_handles)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Counters]:
        with self._proc().counters.locked() as counters:
            yield counters

    def _count(self, name: str, delta: int = 1) -> None:
        with self._locked() as counters:
            counters.add(name, delta)

    def _entry_path(self, index: int) -> str:
        return f"{self._path}/data/{index >> _SHARD_BITS:x}/{index}"

    def _invalid(self, index: int, reason: str) -> Any:
        """Count a damaged or foreign entry (warning once per process) and miss."""
        with contextlib.suppress(StoreGone, OSError):
            self._count("invalid")
        logger.debug("cache entry %d in %s rejected: %s", index, self._path, reason)
        self._warn_once(
            "invalid",
            f"revamper: a damaged or foreign entry in the memory cache {self._path} was "
            f"ignored and its sample recomputed (sample {index}: {reason}); further ones are "
            "counted in stats().invalid_reads",
        )
        return MISS

    def _usage(self, counters: Counters, *, recount: bool = False) -> int:
        """The bytes held (hold the lock); counters out of range are recounted first."""
        data = self._path / "data"
        used, recounted = checked_usage(counters, data, self._max_used, force=recount)
        if recounted and not recount:
            self._warn_once(
                "recount",
                f"revamper: the memory cache's counters in {self._path} were damaged; "
                "recounted from its entries",
            )
        return used

    # -- the contract's hooks (see CacheStore) ---------------------------------------------------
    def _get(self, index: int, generation: int) -> Any:
        try:
            data = read_entry(self._entry_path(index), self._max_record)
        except DamagedEntry as exc:
            return self._invalid(index, str(exc))
        if data is None:
            return MISS
        self._bytes_read += data.size
        try:
            header, meta, payload = record.open_record(
                data, index, run_id=self._run_id, require_checksum=self._checksum
            )
            if header.generation != generation:
                return MISS
            return codec.decode(meta, payload, allow_pickle=self._allow_pickle)
        except (RecordError, CodecError) as exc:
            return self._invalid(index, str(exc))

    def _put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        try:
            return self._put(index, generation, encoded)
        except StoreGone as exc:
            self._warn_once("gone", f"{exc}; samples are no longer cached")
            return False

    def _put(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        handles = self._proc()
        size = record.record_size(encoded)
        final = self._entry_path(index)
        if self._capacity is not None:
            # Optimistic check without the lock: skip writing what cannot fit.
            used = handles.counters.value("bytes")
            if 0 <= used <= self._capacity and used - entry_size(final) + size > self._capacity:
                self._reject(index)
                return False
        free = free_bytes(self._path)
        if free is not None and free - size < self._reserve:
            self._warn_once(
                "reserve",
                f"revamper: only {free / 2**20:.0f} MiB free in {self._path.parent}; the memory "
                f"cache leaves {self._reserve / 2**20:.0f} MiB there free (reserve_bytes; for "
                "DataLoader's batches on /dev/shm) and stops growing. Pass a smaller "
                "cache_bytes, or give the machine more shared memory (docker: --shm-size).",
            )
            self._reject(index)
            return False
        tmp = f"{self._path}/tmp/{index}.{os.getpid()}"
        try:
            self._ensure_shard(handles, index)
            self._write_tmp(tmp, index, generation, encoded)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return self._write_failed(index, exc)
        with self._locked() as counters:
            return self._commit(counters, tmp, final, size)

    def _write_tmp(self, tmp: str, index: int, generation: int, enc: codec.EncodedValue) -> None:
        write_new(
            tmp,
            record.record_segments(
                index, generation, enc, checksum=self._checksum, run_id=self._run_id
            ),
        )

    def _commit(self, counters: Counters, tmp: str, final: str, size: int) -> bool:
        """Rename the written record into place if it fits (hold the lock)."""
        old = entry_size(final)
        if self._capacity is not None and self._usage(counters) - old + size > self._capacity:
            os.unlink(tmp)
            self._reject_locked(counters, final, old)
            return False
        try:
            replace_entry(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            counters.add("failed")
            return self._write_failed(int(os.path.basename(final)), exc, counted=True)
        counters.add("bytes", size - old)
        counters.add("entries", 0 if old else 1)
        counters.add("puts")
        return True

    def _ensure_shard(self, handles: Handles, index: int) -> None:
        shard = index >> _SHARD_BITS
        if shard in handles.shards:
            return
        # os.mkdir, never makedirs: after close() the parent is gone and must stay gone.
        path = f"{self._path}/data/{shard:x}"
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        if not stat.S_ISDIR(os.lstat(path).st_mode):  # a link or a file: never write through
            remove_entry(path)
            os.mkdir(path, 0o700)
        handles.shards.add(shard)

    def _reject(self, index: int) -> None:
        with self._locked() as counters:
            final = self._entry_path(index)
            self._reject_locked(counters, final, entry_size(final))

    def _reject_locked(self, counters: Counters, final: str, old: int) -> None:
        # Whatever the index held before is outdated by this put: drop it too.
        self._drop_locked(counters, final, old)
        counters.add("rejected")

    @staticmethod
    def _drop_locked(counters: Counters, final: str, old: int) -> None:
        with contextlib.suppress(OSError):
            if remove_entry(final) and old:
                counters.add("bytes", -old)
                counters.add("entries", -1)

    def _write_failed(self, index: int, exc: OSError, *, counted: bool = False) -> bool:
        if not counted:
            self._count("failed")
        if exc.errno == errno.ENOENT and not self._path.exists():
            raise StoreGone(self._path)
        self._warn_once(
            f"write-{exc.errno}",
            f"revamper: could not cache sample {index} in {self._path} ({exc}); it stays "
            "uncached and is recomputed when needed. Free space on that file system, pass a "
            "smaller cache_bytes, or use another directory.",
        )
        return False

    def _evict(self, index: int) -> None:
        final = self._entry_path(index)
        with self._locked() as counters:
            self._drop_locked(counters, final, entry_size(final))

    def _contains(self, index: int, generation: int | None) -> bool:
        try:
            head = read_head(self._entry_path(index))
            if head is None:
                return False
            header = record.parse_header(head)
        except (DamagedEntry, RecordError):
            return False
        return (
            header.index == index
            and header.run_id == self._run_id
            and (generation is None or header.generation == generation)
        )

    def _on_epoch_start(self, epoch: int) -> None:
        """Recount the bytes if damaged entries were seen lately; remove dead writers' records.

        Damaged entries skew the byte count; a worker killed in a put leaves its temporary
        record behind.
        """
        with contextlib.suppress(StoreGone, OSError), self._locked() as counters:
            invalid = counters.value("invalid")
            if invalid != self._invalid_seen:
                self._invalid_seen = invalid
                self._usage(counters, recount=True)
        with contextlib.suppress(OSError):
            remove_orphans(f"{self._path}/tmp")

    def _io_counters(self) -> IoCounters:
        """Entries read here, all from memory."""
        return IoCounters(memory_read=self._bytes_read)

    def _stats(self) -> StoreStats:
        """The shared counters; one found out of range is reset (recounted)."""
        with self._locked() as counters:
            self._usage(counters)
            return checked_stats(counters, self._capacity)

    def _handle(self) -> dict[str, str]:
        return {"memory": str(self._path)}

    def _close(self) -> None:
        """The owner also removes the directory and every entry."""
        self._handles.close()
        if self._finalizer is not None and os.getpid() == self._owner_pid:
            self._finalizer()

    def __repr__(self) -> str:
        role = "owner" if self.is_owner else "attached"
        state = "closed" if self.closed else role
        return f"SharedMemoryStore({str(self._path)!r}, budget_bytes={self._capacity}, {state})"


def _create(options: StoreOptions) -> SharedMemoryStore:
    return SharedMemoryStore(
        options.budget_bytes,
        directory=options.directory,
        **options.pickle_keyword(),
        **options.extra,
    )


def _attach(options: StoreOptions, handle: Mapping[str, str]) -> SharedMemoryStore:
    return SharedMemoryStore.attach(handle_field(handle, "memory", "memory"))


register_store(
    StoreSpec(
        name="memory",
        store_class=SharedMemoryStore,
        create=_create,
        attach=_attach,
        needs_directory=False,
        needs_num_samples=False,
        persistent=False,
        budget="bytes of all records in shared memory together (None: no budget; the free "
        "space reserve on the tmpfs applies either way)",
        summary="record files on a tmpfs (/dev/shm), shared by the loader's processes for the run",
    )
)
