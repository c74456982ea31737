"""A persistent cache store on local disk (an SSD), for caches larger than memory.

Records (the same verifiable format as the memory store's, always with a CRC-32) are appended to
segment files (:mod:`revamper.store.segments`); a memory-mapped slot table with one slot per sample
(:mod:`revamper.store.slots`) says where each sample's current record lives. Every process that
knows the directory reads and writes it: DataLoader workers, and a later run after a restart.

What it guarantees:

- a torn or corrupted record (a crash mid-write, a flipped bit) fails its length or checksum test
  and reads as a miss: recomputed by the loader, counted, warned about once, never served;
- a full disk or a write error leaves that entry uncached (counted, warned once) and training
  goes on;
- a cache made for another data set, transform, reuse factor, seed or codec is discarded with a
  log message saying what differed (:mod:`revamper.store.manifest`), never served;
- old segments are deleted between epochs once no slot points into them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from revamper.store import codec, manifest, record
from revamper.store.base import MISS, CacheStore, IoCounters, StoreStats
from revamper.store.counters import Counters
from revamper.store.segments import ActiveSegment, SegmentReader, segment_path, try_delete
from revamper.store.slots import Slot, SlotTable

logger = logging.getLogger(__name__)

_EXTRA_COUNTERS: Final = ("next_segment",)
DEFAULT_SEGMENT_BYTES: Final = 256 * 2**20


def check_directory(directory: str | os.PathLike[str]) -> Path:
    """Return ``directory`` as a Path if it is an existing, writable directory, else raise.

    Raises:
        ValueError: Naming the path and what is wrong with it.
    """
    path = Path(directory)
    if not path.exists():
        raise ValueError(f"cache_dir {str(path)!r} does not exist; create it first")
    if not path.is_dir():
        raise ValueError(f"cache_dir {str(path)!r} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"cache_dir {str(path)!r} is not writable")
    return path


class _Process:
    """What one process holds open on the store."""

    def __init__(self, path: Path, num_samples: int) -> None:
        self.pid = os.getpid()
        self.counters = Counters(path, _EXTRA_COUNTERS)
        self.slots = SlotTable(path / "index", num_samples)
        self.reader = SegmentReader(path / "segments")
        self.active: ActiveSegment | None = None
        self.disk_read = 0
        self.disk_written = 0

    def close(self) -> None:
        if self.active is not None:
            self.active.close()
        self.reader.close()
        with contextlib.suppress(BufferError):
            self.slots.close()
        self.counters.close()


def _flush_and_drop(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


class DiskStore(CacheStore):
    """Cache entries as checksummed records in segment files under ``directory``.

    The directory is kept when the store closes: a later run with the same fingerprint reuses
    the entries (that is how resume avoids recomputation). Call :meth:`clear` to empty it.

    Args:
        directory: An existing, writable directory on local disk (one cache per directory).
        num_samples: Size of the data set (the slot table has one slot per sample).
        fingerprint: What the cache is for (see :mod:`revamper.store.manifest`); a cache found
            with another fingerprint is discarded. ``None`` means "don't care": reuse any.
        capacity_bytes: Budget for all records together, or ``None``.
        segment_bytes: A writer starts a new segment file beyond this size.
        drop_after_read: Ask the kernel to drop a record's pages from the page cache once read
            (each entry is read once per epoch), so the cache does not also fill RAM; used with
            a RAM tier in front (:class:`~revamper.store.tiered.TieredStore`).

    Raises:
        ValueError: If ``directory`` is missing, not a directory or read-only, or an argument is
            out of range.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        num_samples: int,
        fingerprint: Mapping[str, Any] | None = None,
        capacity_bytes: int | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        drop_after_read: bool = False,
    ) -> None:
        path = check_directory(directory)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        if capacity_bytes is not None and (
            isinstance(capacity_bytes, bool) or not isinstance(capacity_bytes, int)
        ):
            raise TypeError(f"capacity_bytes must be an int or None, got {capacity_bytes!r}")
        if capacity_bytes is not None and capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self._path = path
        self._num_samples = num_samples
        self._capacity = capacity_bytes
        self._segment_bytes = max(int(segment_bytes), 1)
        self._drop_after_read = drop_after_read
        self._proc_state: _Process | None = None
        self._closed = False
        self._warned: set[str] = set()
        self._open_or_reset(fingerprint)

    def _open_or_reset(self, fingerprint: Mapping[str, Any] | None) -> None:
        path = self._path
        lock_fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # one process sets a directory up at a time
            found = manifest.read_manifest(path)
            wanted = manifest.manifest_for(fingerprint or {}, self._num_samples)
            reason = None
            if found is None:
                reason = "no cache there yet" if not (path / "index").exists() else "no manifest"
            elif fingerprint is not None or found.get("num_samples") != self._num_samples:
                reason = manifest.mismatch(found, wanted)
                if reason is not None:
                    logger.warning("discarding the disk cache in %s: %s", path, reason)
            if reason is not None:
                self._reset_files()
                manifest.write_manifest(path, wanted)
            else:
                logger.info("reusing the disk cache in %s", path)
            self._recount()
        finally:
            os.close(lock_fd)

    def _reset_files(self) -> None:
        for name in ("index", "counters"):
            with contextlib.suppress(FileNotFoundError):
                (self._path / name).unlink()
        shutil.rmtree(self._path / "segments", ignore_errors=True)
        (self._path / "segments").mkdir()

    def _recount(self) -> None:
        # Counters are statistics; after a crash they may be off, so rebuild them from the slots.
        Counters.create(self._path, _EXTRA_COUNTERS)
        (self._path / "segments").mkdir(exist_ok=True)
        proc = self._proc()
        entries, used = proc.slots.totals()
        numbers = [int(p.stem) for p in (self._path / "segments").iterdir() if p.stem.isdigit()]
        counters = proc.counters
        counters.set("bytes", used)
        counters.set("entries", entries)
        following = max([counters.value("next_segment") - 1, *numbers], default=-1) + 1
        counters.set("next_segment", following)

    # -- pickling: workers get attached instances ------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        self._check_open()
        return {
            "path": self._path,
            "num_samples": self._num_samples,
            "capacity": self._capacity,
            "segment_bytes": self._segment_bytes,
            "drop_after_read": self._drop_after_read,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path = state["path"]
        self._num_samples = state["num_samples"]
        self._capacity = state["capacity"]
        self._segment_bytes = state["segment_bytes"]
        self._drop_after_read = state["drop_after_read"]
        self._proc_state = None
        self._closed = False
        self._warned = set()

    @property
    def path(self) -> Path:
        """The cache directory."""
        return self._path

    @property
    def num_samples(self) -> int:
        """Slots in the table."""
        return self._num_samples

    # -- helpers ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the disk cache store at {self._path} is closed")

    def _proc(self) -> _Process:
        self._check_open()
        proc = self._proc_state
        if proc is None or proc.pid != os.getpid():
            proc = self._proc_state = _Process(self._path, self._num_samples)
        return proc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Process]:
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
        proc = self._proc()
        out: list[Any] = [MISS] * len(indices)
        wanted = []
        for position, (index, generation) in enumerate(zip(indices, generations, strict=True)):
            self._check_index(index)
            slot = proc.slots.read(index)
            if slot is not None and slot.generation == generation:
                wanted.append((slot.segment, slot.offset, position, index, slot))
        drops: dict[int, list[tuple[int, int]]] = {}
        for segment, offset, position, index, slot in sorted(wanted):
            out[position] = self._read(proc, index, slot)
            if self._drop_after_read:
                drops.setdefault(segment, []).append((offset, slot.length))
        for segment, ranges in drops.items():
            proc.reader.release(segment, ranges)
        return out

    def _read(self, proc: _Process, index: int, slot: Slot) -> Any:
        data = proc.reader.read(slot.segment, slot.offset, slot.length)
        try:
            if data is None:
                raise record.RecordError("its segment file is missing or cut short")
            proc.disk_read += slot.length
            header, meta, payload = record.open_record(data, index)
            if header.generation != slot.generation:
                raise record.RecordError("record and slot disagree on the generation")
            return codec.decode(meta, payload)
        except (record.RecordError, codec.CodecError) as exc:
            with self._locked() as locked:
                locked.counters.add("invalid", 1)
            self._warn_once(
                "corrupt",
                f"revamper: a damaged record in the disk cache {self._path} (sample {index}: "
                f"{exc}) was not used; damaged records are recomputed",
            )
            return MISS

    def prefetch(self, indices: Sequence[int], generations: Sequence[int]) -> None:
        """Start reading these entries from disk in the background (``POSIX_FADV_WILLNEED``)."""
        proc = self._proc()
        ranges: dict[int, list[tuple[int, int]]] = {}
        for index, generation in zip(indices, generations, strict=True):
            slot = proc.slots.read(index) if 0 <= index < self._num_samples else None
            if slot is not None and slot.generation == generation:
                ranges.setdefault(slot.segment, []).append((slot.offset, slot.length))
        for segment, spans in ranges.items():
            proc.reader.advise(segment, spans, os.POSIX_FADV_WILLNEED)

    def contains(self, index: int, generation: int | None = None) -> bool:
        """See :meth:`CacheStore.contains` (checks the slot, not the record)."""
        self._check_index(index)
        slot = self._proc().slots.read(index)
        return slot is not None and (generation is None or slot.generation == generation)

    # -- writing --------------------------------------------------------------------------------
    def put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        """See :meth:`CacheStore.put_encoded`."""
        self._check_index(index)
        proc = self._proc()
        size = record.record_size(encoded)
        if self._capacity is not None and not self._fits(proc, index, size):
            with self._locked() as locked:
                self._drop_slot(locked, index)
                locked.counters.add("rejected", 1)
            return False
        try:
            active = self._active(proc, generation)
            offset = active.append(
                record.record_segments(index, generation, encoded, checksum=True)
            )
        except OSError as exc:
            return self._write_failed(proc, index, exc)
        proc.disk_written += size
        with self._locked() as locked:
            if self._capacity is not None and not self._fits(locked, index, size):
                self._drop_slot(locked, index)
                locked.counters.add("rejected", 1)
                return False
            old = locked.slots.clear(index)
            locked.slots.write(index, Slot(generation, offset, size, active.number))
            locked.counters.add("bytes", size - old)
            locked.counters.add("entries", 0 if old else 1)
            locked.counters.add("puts", 1)
        if self._drop_after_read:
            proc.reader.advise(active.number, [(offset, size)], os.POSIX_FADV_DONTNEED)
        return True

    def _fits(self, proc: _Process, index: int, size: int) -> bool:
        assert self._capacity is not None
        slot = proc.slots.read(index)
        used = proc.counters.value("bytes")
        return bool(used - (slot.length if slot else 0) + size <= self._capacity)

    def _drop_slot(self, proc: _Process, index: int) -> None:
        old = proc.slots.clear(index)
        if old:
            proc.counters.add("bytes", -old)
            proc.counters.add("entries", -1)

    def _active(self, proc: _Process, generation: int) -> ActiveSegment:
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
        while True:
            with self._locked() as locked:
                number = locked.counters.add("next_segment", 1)
            path = segment_path(self._path / "segments", number)
            created = ActiveSegment(path, number, generation)
            # Another process's garbage collection (on_epoch_start of another rank sharing this
            # directory) may unlink a fresh segment between its creation and its lock: records
            # appended there would be lost, so take a new one.
            if os.fstat(created.fd).st_nlink > 0:
                proc.active = created
                return created
            created.close()

    def _write_failed(self, proc: _Process, index: int, exc: OSError) -> bool:
        with self._locked() as locked:
            locked.counters.add("failed", 1)
            self._drop_slot(locked, index)  # the old entry is outdated by this put anyway
        kind = "full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "error"
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
        with self._locked() as locked:
            self._drop_slot(locked, index)

    # -- maintenance ----------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        """Delete the segments no slot points into and no writer holds.

        With ``drop_after_read``, also flush the segments and drop them from the page cache:
        pages written last epoch could not be dropped while they were dirty, and the disk tier
        must not hold RAM behind the budget's back.
        """
        proc = self._proc()
        live = proc.slots.live_segments()
        for path in sorted((self._path / "segments").glob("*.seg")):
            number = int(path.stem)
            if number not in live and try_delete(path):
                proc.reader.forget(number)
            elif self._drop_after_read:
                _flush_and_drop(path)

    def clear(self) -> None:
        """Delete every entry (the directory stays, with a fresh, empty cache)."""
        with self._locked() as locked:
            locked.slots.slots["length"] = 0
            locked.counters.set("bytes", 0)
            locked.counters.set("entries", 0)
        self.on_epoch_start(-1)

    def disk_bytes(self) -> int:
        """Bytes the segment files take, live and dead records together."""
        return sum(p.stat().st_size for p in (self._path / "segments").glob("*.seg"))

    def io_counters(self) -> IoCounters:
        """See :meth:`CacheStore.io_counters`."""
        proc = self._proc_state
        if proc is None or proc.pid != os.getpid():
            return IoCounters()
        return IoCounters(disk_read=proc.disk_read, disk_written=proc.disk_written)

    def stats(self) -> StoreStats:
        """See :meth:`CacheStore.stats`."""
        return self._proc().counters.stats(self._capacity)

    def close(self) -> None:
        """Release this process's handles; the cache stays on disk."""
        if self._closed:
            return
        if self._proc_state is not None and self._proc_state.pid == os.getpid():
            self._proc_state.close()
        self._proc_state = None
        self._closed = True

    def __repr__(self) -> str:
        return f"DiskStore({str(self._path)!r}, num_samples={self._num_samples})"
