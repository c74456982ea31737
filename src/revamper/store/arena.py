"""A cache store in one shared mapping on a tmpfs: packed records, slots reused in place.

:class:`SharedMemoryStore` keeps each entry in a file of its own: every get opens, reads and
closes a file, every put creates one and renames it, and each occupies at least a 4 KiB tmpfs
page. An arena keeps all entries in a single file that every process maps
(:mod:`revamper.store.arena_layout`): a slot table with one 32-byte slot per sample, then the
records packed 8-byte aligned. A get copies its record out of the mapping into a private buffer
with no system call of its own (one ``fstat`` per batch bounds what may be read); a put takes
the file's ``flock``, writes the record into the slot's region (in place when it fits, else a
new region at the allocation pointer) and updates the counters.

Safety (everything read back is input): the directory is private (0700, the file 0600) and
:meth:`ArenaStore.attach` applies the owner and mode rule; every record carries the run identity
and (by default) a CRC-32 and is served only after :func:`~revamper.store.record.open_record`
checked it; a slot is a seqlock (:mod:`revamper.store.arena_slots`), so a read racing a write
misses instead of returning a torn record; two writers of one index are serialised by the lock.
Records are written with ``pwritev``, so a full tmpfs gives ``ENOSPC`` (the entry stays
uncached, one warning), never ``SIGBUS``; a file cut short (only its owner can) is noticed
at the next read (an ``fstat`` per batch or single read) or put and switches the cache off.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from revamper.errors import CodecError, RecordError
from revamper.store import codec, record
from revamper.store.arena_file import (
    ArenaGone,
    ArenaHandles,
    check_arena_dir,
    create_arena_dir,
    data_bytes,
)
from revamper.store.arena_layout import PAGE, SEQ, SLOT, ArenaGeometry
from revamper.store.arena_slots import Placement, clear_slot, place, slot_offset, write_slot
from revamper.store.arena_usage import (
    BUMP,
    BYTES,
    COUNTERS,
    ENTRIES,
    count_invalid,
    plausible,
    read_counters,
    rebuild_counters,
    snapshot,
    write_counters,
)
from revamper.store.base import MISS, CacheStore, IoCounters, PerProcess, StoreStats, check_budget
from revamper.store.memory_dir import (
    check_root,
    default_directory,
    default_reserve,
    remove_store_dir,
    sweep_abandoned,
)
from revamper.store.registry import StoreOptions, StoreSpec, handle_field, register_store

__all__ = ["ArenaStore"]

logger = logging.getLogger(__name__)

_C = {name: k for k, name in enumerate(COUNTERS)}


class ArenaStore(CacheStore):
    """Cache entries packed in one file on a tmpfs that every process of a loader maps.

    Args:
        num_samples: The data set's size (one slot per index).
        budget_bytes: Budget for all records together, or ``None``: the arena may then grow to
            the tmpfs's size (less the reserve). With a budget, the arena's data region is the
            budget rounded up to a page, so the records' RAM never exceeds it by more than
            4 KiB (the slot table, 32 bytes a sample, comes on top); a record that does not
            fit stays uncached.
        directory: Where to create the store's private directory; defaults to ``/dev/shm``.
        checksum: Store and verify a CRC-32 of each record (on by default).
        reserve_bytes: Free space to leave on the file system (``None``: room for DataLoader's
            batches on ``/dev/shm``'s, see :func:`~revamper.store.memory_dir.default_reserve`).
        allow_pickle: Whether values the codec cannot encode natively may be pickled (the
            memory store's policy: default ``True``, the directory is private).
        preallocate: Allocate the whole data region on the tmpfs now (needs a budget), so that
            epoch 0's puts do not pay for it.

    Raises:
        ValueError: If a size is negative, ``directory`` is unusable, or ``preallocate`` is set
            without a budget.
        UnsafeCacheError: If another user could replace what the store creates there.
        TypeError: If a size is not an int.
    """

    _finalizer: weakref.finalize[Any, Any] | None
    _gone: str | None

    def __init__(
        self,
        num_samples: int,
        budget_bytes: int | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        checksum: bool = True,
        reserve_bytes: int | None = None,
        allow_pickle: bool = True,
        preallocate: bool = False,
    ) -> None:
        samples = check_budget("num_samples", num_samples)
        if samples is None:
            raise TypeError("num_samples must be an int")
        check_budget("budget_bytes", budget_bytes)
        check_budget("reserve_bytes", reserve_bytes)
        if preallocate and budget_bytes is None:
            raise ValueError("preallocate=True needs budget_bytes (how much to allocate)")
        root = Path(directory) if directory is not None else default_directory()
        root = check_root(root)
        reserve = default_reserve(root) if reserve_bytes is None else reserve_bytes
        geometry = ArenaGeometry.plan(
            samples,
            data_bytes(root, budget_bytes),
            budget_bytes=budget_bytes,
            reserve_bytes=reserve,
            checksum=bool(checksum),
            allow_pickle=bool(allow_pickle),
            run_id=os.urandom(record.RUN_ID_SIZE),
        )
        sweep_abandoned(root)
        self._init_state(root / "(not created)", geometry, gone=None)
        try:
            path, lock_fd = create_arena_dir(root, geometry)
        except OSError as exc:  # ENOSPC for the table: a cache that caches nothing
            self._stop(f"the arena could not be created in {root} ({exc})")
            return
        self._path = path
        self._owner_pid = os.getpid()
        self._finalizer = weakref.finalize(
            self, remove_store_dir, str(path), self._owner_pid, lock_fd
        )
        if preallocate:
            self._preallocate()

    def _init_state(self, path: Path, geometry: ArenaGeometry, gone: str | None) -> None:
        self._path = path
        self._geometry = geometry
        self._capacity = geometry.budget_bytes
        self._checksum = geometry.checksum
        self._allow_pickle = geometry.allow_pickle
        self._run_id = geometry.run_id
        self._gone = gone
        self._owner_pid = -1
        self._finalizer = None
        self._handles: PerProcess[ArenaHandles] = PerProcess()
        self._bytes_read = 0
        self._invalid_seen = 0

    def _preallocate(self) -> None:
        with contextlib.suppress(OSError):  # ENOSPC: puts allocate (and warn) as they go
            if (handles := self._proc()) is not None:
                handles.preallocate(self._geometry.reserve_bytes)

    @classmethod
    def attach(cls, path: str | os.PathLike[str]) -> ArenaStore:
        """Open the arena another process created at ``path`` (its :attr:`path`), attached.

        Raises:
            ValueError: If ``path`` is not a live arena store, or its settings are malformed.
            UnsafeCacheError: If another user could have written the directory or its files.
        """
        root, geometry = check_arena_dir(Path(path))
        store = cls.__new__(cls)
        store._init_state(root, geometry, gone=None)
        return store

    def _shared_state(self) -> dict[str, Any]:  # what workers receive: no per-process state
        return {"path": self._path, "geometry": self._geometry, "gone": self._gone}

    def _attach_state(self, state: Mapping[str, Any]) -> None:
        self._init_state(state["path"], state["geometry"], state["gone"])

    @property
    def path(self) -> Path:
        """The store's directory."""
        return self._path

    @property
    def budget_bytes(self) -> int | None:
        """The byte budget, or ``None``."""
        return self._capacity

    @property
    def geometry(self) -> ArenaGeometry:
        """The arena's layout and settings."""
        return self._geometry

    @property
    def is_owner(self) -> bool:
        """Whether this instance (in this process) removes the arena on close."""
        return self._finalizer is not None and os.getpid() == self._owner_pid

    # -- per-process state ------------------------------------------------------------------
    def _proc(self) -> ArenaHandles | None:
        if self._gone is not None:
            return None
        try:
            return self._handles.get(lambda: ArenaHandles(self._path, self._geometry))
        except (ArenaGone, OSError) as exc:
            self._stop(str(exc))
            return None

    def _stop(self, reason: str) -> None:
        """Stop using the arena in this process (misses from now on), with one warning."""
        self._gone = reason
        self._handles.close()
        self._warn_once(
            "gone",
            f"revamper: the arena cache {self._path} is no longer usable ({reason}); samples "
            "are recomputed and no longer cached",
        )

    def _index_bound(self) -> int:
        return self._geometry.num_samples

    def _counted(self, handles: ArenaHandles) -> list[int]:
        """The counters, rebuilt if implausible (hold the lock)."""
        values = read_counters(handles.mm)
        if not plausible(self._geometry, values):
            values = rebuild_counters(handles.mm, self._geometry, values)
            self._warn_once("recount", f"revamper: the arena {self._path}'s counters were damaged")
        return values

    def _invalid(self, handles: ArenaHandles, index: int, reason: str) -> Any:
        """Count a damaged or foreign entry (warning once per process) and miss."""
        handles.lock()
        try:
            count_invalid(handles.mm)
        finally:
            handles.unlock()
        logger.debug("arena entry %d in %s rejected: %s", index, self._path, reason)
        self._warn_once(
            "invalid",
            f"revamper: a damaged or foreign entry in the arena cache {self._path} was ignored "
            f"and its sample recomputed (sample {index}: {reason}); further ones are counted "
            "in stats().invalid_reads",
        )
        return MISS

    # -- reads ------------------------------------------------------------------------------
    def _get(self, index: int, generation: int) -> Any:
        handles = self._proc()
        if handles is None:
            return MISS
        if not self._still_readable(handles):  # a single get checks the file as a batch does
            return MISS
        return self._read(handles, index, generation)

    def _get_many(self, indices: Sequence[int], generations: Sequence[int]) -> list[Any]:
        handles = self._proc()
        if handles is None:
            return [MISS] * len(indices)
        if not self._still_readable(handles):
            return [MISS] * len(indices)
        read = self._read
        return [read(handles, i, g) for i, g in zip(indices, generations, strict=True)]

    def _read(self, handles: ArenaHandles, index: int, generation: int) -> Any:
        where = PAGE + SLOT.size * index
        seq, offset, size, cap = SLOT.unpack_from(handles.mm, where)
        if size == 0 or seq & 1:
            return MISS  # empty, or a writer is rewriting it
        geometry = self._geometry
        if not (geometry.data_offset <= offset and record.HEADER_SIZE <= size <= cap):
            if SEQ.unpack_from(handles.mm, where)[0] != seq:
                return MISS  # caught a writer between two of the slot's words
            return self._invalid(handles, index, f"slot words {offset}, {size}, {cap}")
        if offset + size > handles.limit and not self._grown(handles, offset + size):
            return MISS
        buf = handles.buf
        assert buf is not None
        data = buf[offset : offset + size].copy()
        if SEQ.unpack_from(handles.mm, where)[0] != seq:
            return MISS  # rewritten while we copied
        self._bytes_read += size
        try:
            header, meta, payload = record.open_record(
                data, index, run_id=self._run_id, require_checksum=self._checksum
            )
            if header.generation != generation:
                return MISS
            return codec.decode(meta, payload, allow_pickle=self._allow_pickle)
        except (RecordError, CodecError) as exc:
            return self._invalid(handles, index, str(exc))

    def _still_readable(self, handles: ArenaHandles) -> bool:
        """Whether the file has its size still (else stop: reading past its end is a SIGBUS)."""
        try:
            handles.readable()
        except ArenaGone as exc:
            self._stop(str(exc))
            return False
        return True

    def _grown(self, handles: ArenaHandles, end: int) -> bool:
        """Whether the file is allocated up to ``end`` now (another process wrote there)."""
        try:
            limit = handles.readable()
        except ArenaGone as exc:
            self._stop(str(exc))
            return False
        return end <= limit

    def _contains(self, index: int, generation: int | None) -> bool:
        handles = self._proc()
        if handles is None or not self._still_readable(handles):
            return False
        where = PAGE + SLOT.size * index
        seq, offset, size, cap = SLOT.unpack_from(handles.mm, where)
        if seq & 1 or not (self._geometry.data_offset <= offset and 64 <= size <= cap):
            return False  # empty, being rewritten, or damaged (record headers are 64 bytes)
        if offset + size > handles.limit and not self._grown(handles, offset + size):
            return False
        head = handles.mm[offset : offset + record.HEADER_SIZE]
        try:
            header = record.parse_header(head)
        except RecordError:
            return False
        return (
            header.index == index
            and header.run_id == self._run_id
            and (generation is None or header.generation == generation)
        )

    # -- writes -----------------------------------------------------------------------------
    def _put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        handles = self._proc()
        if handles is None:
            return False
        segments = record.record_segments(
            index, generation, encoded, checksum=self._checksum, run_id=self._run_id
        )
        size = record.record_size(encoded)
        handles.lock()
        try:
            if not handles.locked_size_ok():
                self._stop("the arena file was cut short while in use")
                return False
            return self._put_locked(handles, index, size, segments)
        finally:
            handles.unlock()

    def _put_locked(
        self, handles: ArenaHandles, index: int, size: int, segments: list[bytes | memoryview]
    ) -> bool:
        mm = handles.mm
        values = self._counted(handles)
        where = place(mm, self._geometry, values, index, size)
        if where.outcome != "ok":
            return self._refuse(handles, values, index, where, "rejected")
        bump = values[BUMP]
        try:
            if where.offset + where.cap > self._geometry.file_size:  # the tmpfs's size: full
                raise OSError(errno.ENOSPC, "the arena is as large as its tmpfs")
            if where.new_region:  # a rewrite in place allocates nothing
                handles.check_reserve(where.offset + where.cap, self._geometry.reserve_bytes)
                # Claim the region before a slot names it: a writer killed in between leaks
                # it, where publishing first left the next put allocating the same region.
                values[BUMP] += where.cap
                write_counters(mm, values)
            write_slot(handles, index, where, size, segments)
        except OSError as exc:
            values[BUMP] = bump  # no slot names a region claimed here (and the lock is held)
            self._warn_once(
                f"write-{exc.errno}",
                f"revamper: could not cache sample {index} in {self._path} ({exc}); it stays "
                "uncached and is recomputed when needed. Free space on that tmpfs, pass a "
                "smaller cache_bytes, or use another directory.",
            )
            return self._refuse(handles, values, index, where, "failed")
        values[BYTES] += size - where.old
        values[ENTRIES] += 0 if where.old else 1
        values[_C["puts"]] += 1
        write_counters(mm, values)
        return True

    @staticmethod
    def _refuse(
        handles: ArenaHandles, values: list[int], index: int, where: Placement, counter: str
    ) -> bool:
        """Not cached: the index's outdated entry is dropped too (hold the lock)."""
        if where.old and handles.words is not None:
            clear_slot(handles.words, index, where.seq)
            values[BYTES] -= where.old
            values[ENTRIES] -= 1
        values[_C[counter]] += 1
        write_counters(handles.mm, values)
        return False

    def _evict(self, index: int) -> None:
        handles = self._proc()
        if handles is None or not self._still_readable(handles):
            return
        handles.lock()
        try:
            values = self._counted(handles)
            seq, _, old, cap = SLOT.unpack_from(handles.mm, slot_offset(index))
            if old and handles.words is not None:
                clear_slot(handles.words, index, seq)
                if record.HEADER_SIZE <= old <= cap:
                    values[BYTES] = max(values[BYTES] - old, 0)
                    values[ENTRIES] = max(values[ENTRIES] - 1, 0)
                    write_counters(handles.mm, values)
        finally:
            handles.unlock()

    # -- maintenance and statistics -----------------------------------------------------------
    def _on_epoch_start(self, epoch: int) -> None:
        """Check the file is whole; rebuild the counters if damaged entries were seen."""
        handles = self._proc()
        if handles is None:
            return
        try:
            handles.readable()
        except ArenaGone as exc:
            self._stop(str(exc))
            return
        handles.lock()
        try:
            values = self._counted(handles)
            invalid = values[_C["invalid"]]
            if invalid != self._invalid_seen:
                self._invalid_seen = invalid
                rebuild_counters(handles.mm, self._geometry, values)
        finally:
            handles.unlock()

    def _stats(self) -> StoreStats:
        values = [0] * len(COUNTERS)
        handles = self._proc()  # the loader asks after every batch: the file's size first
        if handles is not None and self._still_readable(handles):
            handles.lock()
            try:
                values = self._counted(handles)
            finally:
                handles.unlock()
        return snapshot(values, self._capacity)

    def _ram_bytes(self) -> int:
        """Bytes the arena file occupies on the tmpfs (slot table included)."""
        handles = self._proc()
        if handles is None:
            return 0
        return os.fstat(handles.fd).st_blocks * 512

    def _io_counters(self) -> IoCounters:
        return IoCounters(memory_read=self._bytes_read)

    def _handle(self) -> dict[str, str]:
        return {"arena": str(self._path)}

    def _close(self) -> None:
        self._handles.close()
        if self._finalizer is not None and os.getpid() == self._owner_pid:
            self._finalizer()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "owner" if self.is_owner else "attached"
        return f"ArenaStore({str(self._path)!r}, budget_bytes={self._capacity}, {state})"


def _create(options: StoreOptions) -> ArenaStore:
    assert options.num_samples is not None  # needs_num_samples: the registry checked
    return ArenaStore(
        options.num_samples,
        options.budget_bytes,
        directory=options.directory,
        **options.pickle_keyword(),
        **options.extra,
    )


def _attach(options: StoreOptions, handle: Mapping[str, str]) -> ArenaStore:
    return ArenaStore.attach(handle_field(handle, "arena", "arena"))


register_store(
    StoreSpec(
        name="arena",
        store_class=ArenaStore,
        create=_create,
        attach=_attach,
        needs_directory=False,
        needs_num_samples=True,
        persistent=False,
        budget="bytes of all records in the arena together; with a budget the arena's data "
        "region is that size (None: it may grow to the tmpfs's size, less the reserve)",
        summary="records packed in one shared mapping on a tmpfs (/dev/shm), for the run",
    )
)
