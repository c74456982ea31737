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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from revamper.errors import CacheInUseError
from revamper.store import codec, manifest, record
from revamper.store import disk_layout as layout
from revamper.store import disk_read as reading
from revamper.store import disk_write as writing
from revamper.store.base import MISS, CacheStore, IoCounters, PerProcess, StoreStats
from revamper.store.disk_layout import check_directory
from revamper.store.ownership import OwnerLock
from revamper.store.registry import StoreOptions, StoreSpec, handle_field, register_store
from revamper.store.segments import segment_path
from revamper.store.slots import Slot

__all__ = ["DEFAULT_SEGMENT_BYTES", "CacheInUseError", "DiskStore", "check_directory"]

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES: Final = 256 * 2**20
_SHARED_STATE: Final = (
    "_path", "_num_samples", "_capacity", "_segment_bytes", "_drop_after_read", "_allow_pickle",
    "_run_id", "_disabled",
)  # fmt: skip
"""What a pickled copy (a worker's) carries."""


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
        budget_bytes: Budget for all live records together, or ``None``.
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
    _proc_state: PerProcess[layout.ProcessFiles]
    _verified_pid: int | None
    _manifest: dict[str, Any]

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        num_samples: int,
        fingerprint: Mapping[str, Any] | None = None,
        budget_bytes: int | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        drop_after_read: bool = False,
        allow_pickle: bool = False,
    ) -> None:
        self._setup(directory, num_samples, budget_bytes, segment_bytes, drop_after_read)
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
        budget_bytes: int | None,
        segment_bytes: int,
        drop_after_read: bool,
    ) -> None:
        path = layout.check_directory(directory)
        layout.check_arguments(num_samples, budget_bytes)
        self._path = path
        self._num_samples = num_samples
        self._capacity = budget_bytes
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
        budget_bytes: int | None = None,
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
            budget_bytes: As for the constructor.
            segment_bytes: As for the constructor.
            drop_after_read: As for the constructor.
            allow_pickle: As for the constructor.

        Raises:
            ValueError: If there is no trustworthy cache there, or it is another one.
        """
        store = cls.__new__(cls)
        store._setup(directory, num_samples, budget_bytes, segment_bytes, drop_after_read)
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
    def _shared_state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SHARED_STATE}

    def _attach_state(self, state: Mapping[str, Any]) -> None:
        for name in _SHARED_STATE:
            setattr(self, name, state[name])
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        """What each instance keeps for itself (never owned after unpickling)."""
        self._owner = None
        self._proc_state = PerProcess()
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
    def _proc(self) -> layout.ProcessFiles:
        self._check_open()  # internal callers too: a closed store never re-opens files
        return self._proc_state.get(self._open_files)

    def _open_files(self) -> layout.ProcessFiles:
        if self._owner is not None:
            self._owner.drop_inherited()  # a forked worker: the owner keeps the lock
        proc = layout.ProcessFiles(self._path, self._num_samples)
        if proc.pid != self._verified_pid:
            try:
                self._verify_incarnation()
            except BaseException:
                proc.close()
                raise
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
            self._proc_state.close()
            self._disable(str(exc))
            return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[layout.ProcessFiles]:
        proc = self._proc()
        with proc.counters.locked():
            yield proc

    def _index_bound(self) -> int:
        return self._num_samples

    def _damaged(self, count: int, what: str) -> None:
        with contextlib.suppress(OSError), self._locked() as locked:
            locked.counters.add("invalid", count)
        self._warn_once(
            "corrupt",
            f"revamper: {what} in the disk cache {self._path} was not used; damaged entries "
            "are recomputed",
        )

    # -- reading --------------------------------------------------------------------------------
    def _get_many(self, indices: Sequence[int], generations: Sequence[int]) -> list[Any]:
        """One pass over the batch, in file order (:mod:`revamper.store.disk_read`)."""
        proc = self._live()
        if proc is None:
            return [MISS] * len(indices)
        return reading.read_records(
            proc,
            indices,
            generations,
            run_id=self._run_id,
            allow_pickle=self._allow_pickle,
            drop_after_read=self._drop_after_read,
            damaged=self._damaged,
        )

    def _prefetch(self, indices: Sequence[int], generations: Sequence[int]) -> None:
        """Start reading these entries from disk in the background (``POSIX_FADV_WILLNEED``)."""
        proc = self._live()
        if proc is not None:
            reading.prefetch_records(proc, indices, generations)

    def _contains(self, index: int, generation: int | None) -> bool:
        """Checks the slot, not the record."""
        proc = self._live()
        if proc is None:
            return False
        try:
            slot = proc.slots.read(index)
        except OSError:
            return False
        return slot is not None and (generation is None or slot.generation == generation)

    # -- writing --------------------------------------------------------------------------------
    def _put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        proc = self._live()
        if proc is None:
            self._failed_here += 1
            return False
        size = record.record_size(encoded)
        try:
            if not layout.fits(proc, index, size, self._capacity):
                with self._locked() as locked:
                    return writing.reject(locked, index)
            active = writing.active_segment(proc, self._path, generation, self._segment_bytes)
            offset = active.append(
                record.record_segments(
                    index, generation, encoded, checksum=True, run_id=self._run_id
                )
            )
            proc.disk_written += size
            with self._locked() as locked:
                slot = Slot(generation, offset, size, active.number)
                if not writing.commit(locked, self._path, index, slot, self._capacity):
                    return False
        except (OSError, ValueError) as exc:
            return self._write_failed(proc, index, exc)
        if self._drop_after_read:
            proc.reader.advise(active.number, [(offset, size)], os.POSIX_FADV_DONTNEED)
        return True

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

    def _evict(self, index: int) -> None:
        proc = self._live()
        if proc is None:
            return
        with contextlib.suppress(OSError), self._locked() as locked:
            layout.drop_slot(locked, index)

    # -- maintenance ----------------------------------------------------------------------------
    def _on_epoch_start(self, epoch: int) -> None:
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
        self._on_epoch_start(-1)

    def disk_bytes(self) -> int:
        """Bytes the segment files take, live and dead records together."""
        total = 0
        for number in layout.segment_numbers(self._path):
            with contextlib.suppress(OSError):
                total += os.lstat(segment_path(self._path / "segments", number)).st_size
        return total

    def _io_counters(self) -> IoCounters:
        proc = self._proc_state.here()
        if proc is None:
            return IoCounters()
        return IoCounters(disk_read=proc.disk_read, disk_written=proc.disk_written)

    def _stats(self) -> StoreStats:
        proc = self._live()
        if proc is None:
            return StoreStats(0, 0, self._capacity, 0, 0, self._failed_here, 0)
        return proc.counters.stats(self._capacity)

    def _handle(self) -> dict[str, str]:
        return {"disk_run_id": self._run_id.hex()}

    def _ram_bytes(self) -> int:
        return 0  # entries are in segment files (their page cache is the kernel's)

    def _close(self) -> None:
        """Release this process's handles (and the directory, if it owns it); the cache stays."""
        self._proc_state.close()
        self._release_owner()

    def __repr__(self) -> str:
        return f"DiskStore({str(self._path)!r}, num_samples={self._num_samples})"


class _Gone(Exception):
    """The cache this process knew is no longer there (reset or replaced by another process)."""


def _disk_keywords(options: StoreOptions) -> dict[str, Any]:
    return {
        "num_samples": options.num_samples,
        "fingerprint": options.fingerprint,
        "budget_bytes": options.budget_bytes,
        **options.pickle_keyword(),
        **options.extra,
    }


def _create(options: StoreOptions) -> DiskStore:
    assert options.directory is not None  # make_store checked it
    return DiskStore(options.directory, **_disk_keywords(options))


def _attach(options: StoreOptions, handle: Mapping[str, str]) -> DiskStore:
    assert options.directory is not None
    run_id = bytes.fromhex(handle_field(handle, "disk_run_id", "disk"))
    return DiskStore.attach(options.directory, run_id=run_id, **_disk_keywords(options))


register_store(
    StoreSpec(
        name="disk",
        store_class=DiskStore,
        create=_create,
        attach=_attach,
        needs_directory=True,
        needs_num_samples=True,
        persistent=True,
        budget="bytes of all live records in the segment files together (None: no budget; "
        "dead records wait for the garbage collection between epochs)",
        summary="checksummed records in segment files on local disk, kept across runs",
    )
)
