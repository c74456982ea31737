"""A persistent cache store on local disk (an SSD), for caches larger than memory.

Records (the same verifiable format as the memory store's, always with a CRC-32) are appended to
segment files (:mod:`revamper.store.segments`); a slot table with one slot per sample
(:mod:`revamper.store.slots`) says where each sample's current record lives. Every process that
knows the directory reads and writes it: DataLoader workers, and a later run after a restart.

What it guarantees:

- a torn or corrupted record (a crash mid-write, a flipped bit) fails its length or checksum test
  and reads as a miss: recomputed by the loader, counted, warned about once, never served;
- a full disk (even at construction) or a write error leaves entries uncached (counted, warned
  once) and training goes on;
- a cache made for another data set, transform, reuse factor, seed or codec is discarded with a
  log message saying what differed (:mod:`revamper.store.manifest`), never served;
- old segments are deleted between epochs once no slot points into them;
- the directory and everything the store finds in it must belong to the current user and be
  writable by nobody else (:mod:`revamper.store.permissions`); files are opened without following
  links, and the store creates its own with mode 0600 (directories 0700);
- one owning store per directory at a time (:mod:`revamper.store.ownership`), and every record
  carries the run identity of the cache incarnation that wrote it (a record of another is a miss);
- nothing read from the directory is unpickled unless ``allow_pickle=True``; every field read
  back (slots, counters, record headers, the manifest) is range-checked: a damaged slot or
  record is a miss, damaged counters are rebuilt between epochs, a damaged manifest resets the
  cache, with a log message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from revamper.store import codec, manifest, record
from revamper.store import disk_layout as layout
from revamper.store.base import MISS, CacheStore, IoCounters, StoreStats
from revamper.store.disk_layout import check_directory
from revamper.store.ownership import CacheInUseError, OwnerLock
from revamper.store.segments import ActiveSegment, segment_path
from revamper.store.slots import Slot

__all__ = ["DEFAULT_SEGMENT_BYTES", "CacheInUseError", "DiskStore", "check_directory"]

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES: Final = 256 * 2**20
_SHARED_STATE: Final = (
    "_path", "_num_samples", "_capacity", "_segment_bytes", "_drop_after_read", "_allow_pickle",
    "_run_id", "_disabled",
)  # fmt: skip
"""What a pickled copy (a worker's) carries."""
_DAMAGE: Final = (ValueError, TypeError, OverflowError, LookupError, MemoryError)
"""What decoding damaged bytes may raise (``RecordError`` and ``CodecError`` are ValueErrors)."""


class DiskStore(CacheStore):
    """Cache entries as checksummed records in segment files under ``directory``.

    The directory is kept when the store closes: a later run with the same fingerprint reuses
    the entries (that is how resume avoids recomputation). Call :meth:`clear` to empty it.

    The store built by the constructor *owns* the directory for its lifetime (a second owner
    gets :class:`CacheInUseError`); pickled copies (DataLoader workers) and :meth:`attach`
    (the other ranks of one distributed run) share it without owning it.

    Args:
        directory: An existing, writable directory on local disk (one cache per directory)
            that belongs to the current user and that nobody else can write to.
        num_samples: Size of the data set (the slot table has one slot per sample).
        fingerprint: What the cache is for (see :mod:`revamper.store.manifest`); a cache found
            with another fingerprint is discarded. ``None`` means "don't care": reuse any.
        capacity_bytes: Budget for all records together, or ``None``.
        segment_bytes: A writer starts a new segment file beyond this size.
        drop_after_read: Ask the kernel to drop a record's pages from the page cache once read
            (each entry is read once per epoch), so the cache does not also fill RAM; used with
            a RAM tier in front (:class:`~revamper.store.tiered.TieredStore`).
        allow_pickle: Let values the codec cannot encode natively be pickled, and pickled
            records be read back. Off by default: unpickling runs code, and a cache directory
            is input that someone else may have written.

    Raises:
        ValueError: If ``directory`` is missing, not a directory or read-only, or an argument is
            out of range.
        UnsafeCacheError: (a ValueError) If the directory or a cache file in it belongs to
            another user, is writable by group or others, or is a symbolic link.
        CacheInUseError: If another live store owns the directory.
    """

    _owner: OwnerLock | None
    _proc_state: layout.ProcessFiles | None
    _warned: set[str]
    _verified_pid: int | None
    _manifest: dict[str, Any]

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        num_samples: int,
        fingerprint: Mapping[str, Any] | None = None,
        capacity_bytes: int | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        drop_after_read: bool = False,
        allow_pickle: bool = False,
    ) -> None:
        self._setup(directory, num_samples, capacity_bytes, segment_bytes, drop_after_read)
        self._allow_pickle = bool(allow_pickle)
        try:
            layout.check_cache_files(self._path)
            self._owner = OwnerLock(self._path)
            self._open_or_reset(fingerprint)
        except OSError as exc:
            if not layout.is_full(exc):
                self._release_owner()
                raise
            self._disable(f"the disk is full ({exc})")
        except BaseException:
            self._release_owner()
            raise

    def _setup(
        self,
        directory: str | os.PathLike[str],
        num_samples: int,
        capacity_bytes: int | None,
        segment_bytes: int,
        drop_after_read: bool,
    ) -> None:
        path = layout.check_directory(directory)
        layout.check_arguments(num_samples, capacity_bytes)
        self._path = path
        self._num_samples = num_samples
        self._capacity = capacity_bytes
        self._segment_bytes = max(int(segment_bytes), 1)
        self._drop_after_read = drop_after_read
        self._disabled: str | None = None
        self._run_id = record.NO_RUN_ID
        self._reset_process_state()

    @classmethod
    def attach(
        cls,
        directory: str | os.PathLike[str],
        *,
        num_samples: int,
        fingerprint: Mapping[str, Any] | None = None,
        run_id: bytes | None = None,
        capacity_bytes: int | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        drop_after_read: bool = False,
        allow_pickle: bool = False,
    ) -> DiskStore:
        """Open a disk cache that another process owns, without owning it (nor resetting it).

        For the other ranks of one distributed run, which share their leader's cache by design.

        Args:
            directory: The owner's cache directory.
            num_samples: Must match the cache's.
            fingerprint: If given, must match the cache's.
            run_id: If given, the owner's :attr:`run_id`: the cache must still be that
                incarnation.
            capacity_bytes: As for the constructor.
            segment_bytes: As for the constructor.
            drop_after_read: As for the constructor.
            allow_pickle: As for the constructor.

        Raises:
            ValueError: If there is no trustworthy cache there, or it is another one.
        """
        store = cls.__new__(cls)
        store._setup(directory, num_samples, capacity_bytes, segment_bytes, drop_after_read)
        store._allow_pickle = bool(allow_pickle)
        store._run_id = layout.attached_run_id(store._path, num_samples, fingerprint, run_id)
        store._proc()  # open the files now: errors show here, not in the first get
        return store

    # -- set-up ---------------------------------------------------------------------------------
    def _open_or_reset(self, fingerprint: Mapping[str, Any] | None) -> None:
        self._manifest = layout.open_or_reset(self._path, self._num_samples, fingerprint)
        run_id = manifest.run_id_of(self._manifest)
        assert run_id is not None
        self._run_id = run_id
        self._verified_pid = os.getpid()
        layout.reconcile(self._proc(), self._path, quiet=True)  # open_or_reset held the lock

    def _disable(self, reason: str) -> None:
        """Cache nothing from now on (a full disk at construction), and say so once."""
        self._disabled = reason
        self._warn_once(
            "disabled",
            f"revamper: the disk cache {self._path} cannot be used: {reason}. Nothing is "
            "cached; every entry is recomputed when needed. Free space or use another cache_dir.",
        )

    def _release_owner(self) -> None:
        if self._owner is not None:
            self._owner.release()
            self._owner = None

    # -- pickling: workers get attached instances ------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        self._check_open()
        return {name: getattr(self, name) for name in _SHARED_STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in _SHARED_STATE:
            setattr(self, name, state[name])
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        """What each instance keeps for itself (never owned after unpickling)."""
        self._owner = None
        self._proc_state = None
        self._closed = False
        self._warned = set()
        self._failed_here = 0
        self._verified_pid = None

    @property
    def path(self) -> Path:
        """The cache directory."""
        return self._path

    @property
    def num_samples(self) -> int:
        """Slots in the table."""
        return self._num_samples

    @property
    def run_id(self) -> bytes:
        """The random identity of this incarnation of the cache (in its manifest and records)."""
        return self._run_id

    @property
    def owner(self) -> bool:
        """Whether this instance owns the directory (it was built by the constructor)."""
        return self._owner is not None

    # -- helpers ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the disk cache store at {self._path} is closed")

    def _proc(self) -> layout.ProcessFiles:
        self._check_open()
        proc = self._proc_state
        if proc is None or proc.pid != os.getpid():
            if self._owner is not None:
                self._owner.drop_inherited()  # a forked worker: the owner keeps the lock
            proc = self._proc_state = layout.ProcessFiles(self._path, self._num_samples)
            if proc.pid != self._verified_pid:
                self._verify_incarnation()
        return proc

    def _verify_incarnation(self) -> None:
        """A process that opens the cache checks that it is still the incarnation it knows."""
        found = manifest.read_manifest(self._path)
        if found is None or manifest.run_id_of(found) != self._run_id:
            raise _Gone("the cache was reset or replaced by another process meanwhile")
        self._verified_pid = os.getpid()

    def _live(self) -> layout.ProcessFiles | None:
        """This process's handles, or ``None`` if the cache cannot be used (said once)."""
        if self._disabled is not None:
            self._check_open()
            return None
        try:
            return self._proc()
        except (OSError, ValueError, _Gone) as exc:  # files gone, unsafe, full, reset
            if self._proc_state is not None and self._proc_state.pid == os.getpid():
                self._proc_state.close()
            self._proc_state = None
            self._disable(str(exc))
            return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[layout.ProcessFiles]:
        proc = self._proc()
        with proc.counters.locked():
            yield proc

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._num_samples:
            raise ValueError(f"index must be in [0, {self._num_samples}), got {index}")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _damaged(self, proc: layout.ProcessFiles, count: int, what: str) -> None:
        with contextlib.suppress(OSError), self._locked() as locked:
            locked.counters.add("invalid", count)
        self._warn_once(
            "corrupt",
            f"revamper: {what} in the disk cache {self._path} was not used; damaged entries "
            "are recomputed",
        )

    # -- reading --------------------------------------------------------------------------------
    def get(self, index: int, generation: int) -> Any:
        """See :meth:`CacheStore.get`."""
        return self.get_many([index], [generation])[0]

    def get_many(self, indices: Sequence[int], generations: Sequence[int]) -> list[Any]:
        """See :meth:`CacheStore.get_many`: one pass over the batch, in file order."""
        if len(indices) != len(generations):
            raise ValueError(
                f"get_many: got {len(indices)} indices but {len(generations)} generations"
            )
        for index in indices:
            self._check_index(index)
        out: list[Any] = [MISS] * len(indices)
        proc = self._live()
        if proc is None or len(indices) == 0:
            return out
        try:
            slots = proc.slots.read_many(indices)
        except OSError:
            return out
        self._note_damaged_slots(proc)
        for segment, items in layout.by_segment(slots, generations).items():
            spans = [(slot.offset, slot.length) for _, slot in items]
            datas = proc.reader.read_many(segment, spans)
            for (position, slot), data in zip(items, datas, strict=True):
                out[position] = self._open(proc, indices[position], slot, data)
            if self._drop_after_read:
                proc.reader.release(segment, spans)
        return out

    def _note_damaged_slots(self, proc: layout.ProcessFiles) -> None:
        new = proc.slots.damaged - proc.damaged_seen
        if new:
            proc.damaged_seen = proc.slots.damaged
            self._damaged(proc, new, f"{new} damaged slot(s) of the index")

    def _open(self, proc: layout.ProcessFiles, index: int, slot: Slot, data: Any) -> Any:
        try:
            if data is None:
                raise record.RecordError("its segment file is missing or cut short")
            proc.disk_read += slot.length
            return layout.decode_record(data, index, slot, self._run_id, self._allow_pickle)
        except _DAMAGE as exc:
            self._damaged(proc, 1, f"a damaged record (sample {index}: {exc})")
            return MISS

    def prefetch(self, indices: Sequence[int], generations: Sequence[int]) -> None:
        """Start reading these entries from disk in the background (``POSIX_FADV_WILLNEED``)."""
        proc = self._live()
        if proc is None:
            return
        keep = [k for k, i in enumerate(indices) if 0 <= i < self._num_samples]
        try:
            slots = proc.slots.read_many([indices[k] for k in keep])
        except OSError:
            return
        wanted = layout.by_segment(slots, [generations[k] for k in keep])
        for segment, items in wanted.items():
            spans = [(slot.offset, slot.length) for _, slot in items]
            proc.reader.advise(segment, spans, os.POSIX_FADV_WILLNEED)

    def contains(self, index: int, generation: int | None = None) -> bool:
        """See :meth:`CacheStore.contains` (checks the slot, not the record)."""
        self._check_index(index)
        proc = self._live()
        if proc is None:
            return False
        try:
            slot = proc.slots.read(index)
        except OSError:
            return False
        return slot is not None and (generation is None or slot.generation == generation)

    # -- writing --------------------------------------------------------------------------------
    def put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        """See :meth:`CacheStore.put_encoded`."""
        self._check_index(index)
        proc = self._live()
        if proc is None:
            self._failed_here += 1
            return False
        size = record.record_size(encoded)
        try:
            if not layout.fits(proc, index, size, self._capacity):
                with self._locked() as locked:
                    layout.drop_slot(locked, index)
                    locked.counters.add("rejected", 1)
                return False
            active = self._active(proc, generation)
            offset = active.append(
                record.record_segments(
                    index, generation, encoded, checksum=True, run_id=self._run_id
                )
            )
            proc.disk_written += size
            with self._locked() as locked:
                if not layout.fits(locked, index, size, self._capacity):
                    layout.drop_slot(locked, index)
                    locked.counters.add("rejected", 1)
                    return False
                old = locked.slots.clear(index)
                locked.slots.write(index, Slot(generation, offset, size, active.number))
                locked.counters.add("bytes", size - old)
                locked.counters.add("entries", 0 if old else 1)
                locked.counters.add("puts", 1)
        except (OSError, ValueError) as exc:
            return self._write_failed(proc, index, exc)
        if self._drop_after_read:
            proc.reader.advise(active.number, [(offset, size)], os.POSIX_FADV_DONTNEED)
        return True

    def _active(self, proc: layout.ProcessFiles, generation: int) -> ActiveSegment:
        active = proc.active
        if active is not None and active.size < self._segment_bytes:
            if generation <= active.generation:
                return active
            if active.size == 0:
                active.generation = generation
                return active
        if active is not None:
            active.close()
            proc.active = None
        proc.active = layout.new_segment(proc, self._path, generation)
        return proc.active

    def _write_failed(self, proc: layout.ProcessFiles, index: int, exc: Exception) -> bool:
        with contextlib.suppress(OSError), self._locked() as locked:
            locked.counters.add("failed", 1)
            layout.drop_slot(locked, index)  # the old entry is outdated by this put anyway
        kind = "full" if layout.is_full(exc) else "error"
        self._warn_once(
            f"write-{kind}",
            f"revamper: could not write sample {index} to the disk cache {self._path} ({exc}); "
            "it stays uncached and is recomputed when needed. Free space or pass a smaller "
            "cache budget.",
        )
        return False

    def evict(self, index: int) -> None:
        """See :meth:`CacheStore.evict`."""
        self._check_index(index)
        proc = self._live()
        if proc is None:
            return
        with contextlib.suppress(OSError), self._locked() as locked:
            layout.drop_slot(locked, index)

    # -- maintenance ----------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        """Check the counters, and delete the segments no slot points into and no writer holds.

        Counters that disagree with the slot table (damaged) are rebuilt from it, with a log
        message. With ``drop_after_read``, also flush the segments and drop them from the page
        cache: pages written last epoch could not be dropped while they were dirty, and the disk
        tier must not hold RAM behind the budget's back.
        """
        proc = self._live()
        if proc is None:
            return
        if self._owner is not None and self._owner.held_here:
            layout.repair_manifest(self._path, self._manifest)
        try:
            with self._locked() as locked:
                live = layout.reconcile(locked, self._path, quiet=False)
        except OSError:
            return
        layout.collect_garbage(proc, self._path, live, flush=self._drop_after_read)

    def clear(self) -> None:
        """Delete every entry (the directory stays, with a fresh, empty cache)."""
        proc = self._live()
        if proc is None:
            return
        with self._locked() as locked:
            locked.slots.clear_all()
            locked.counters.set("bytes", 0)
            locked.counters.set("entries", 0)
        self.on_epoch_start(-1)

    def disk_bytes(self) -> int:
        """Bytes the segment files take, live and dead records together."""
        total = 0
        for number in layout.segment_numbers(self._path):
            with contextlib.suppress(OSError):
                total += os.lstat(segment_path(self._path / "segments", number)).st_size
        return total

    def io_counters(self) -> IoCounters:
        """See :meth:`CacheStore.io_counters`."""
        proc = self._proc_state
        if proc is None or proc.pid != os.getpid():
            return IoCounters()
        return IoCounters(disk_read=proc.disk_read, disk_written=proc.disk_written)

    def stats(self) -> StoreStats:
        """See :meth:`CacheStore.stats`."""
        proc = self._live()
        if proc is None:
            return StoreStats(0, 0, self._capacity, 0, 0, self._failed_here, 0)
        return proc.counters.stats(self._capacity)

    def close(self) -> None:
        """Release this process's handles (and the directory, if it owns it); the cache stays."""
        if self._closed:
            return
        if self._proc_state is not None and self._proc_state.pid == os.getpid():
            self._proc_state.close()
        self._proc_state = None
        self._release_owner()
        self._closed = True

    def __repr__(self) -> str:
        return f"DiskStore({str(self._path)!r}, num_samples={self._num_samples})"


class _Gone(Exception):
    """The cache this process knew is no longer there (reset or replaced by another process)."""
