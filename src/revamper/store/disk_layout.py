"""The files of a disk cache: checking them, creating them, resetting them, opening them.

A cache directory holds ``owner.lock`` (:mod:`revamper.store.ownership`), ``lock`` and
``counters`` (:mod:`revamper.store.counters`), ``index`` (:mod:`revamper.store.slots`), the
manifest (:mod:`revamper.store.manifest`) and ``segments/`` (:mod:`revamper.store.segments`).
Everything found there must pass the owner and mode rule (:mod:`revamper.store.permissions`)
before it is read. A reset removes the manifest first and writes it back last, so a cache whose
rebuilding was interrupted (a full disk, a crash) is never trusted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from revamper.errors import RecordError, UnsafeCacheError
from revamper.store import codec, manifest, permissions, record
from revamper.store.base import check_budget
from revamper.store.counters import STATS, Counters
from revamper.store.memory_entry import remove_entry
from revamper.store.path_chain import checked_real_path
from revamper.store.segments import ActiveSegment, SegmentReader, segment_path, try_delete
from revamper.store.slots import MAX_SEGMENT, Slot, SlotTable, looks_like_slot_table

logger = logging.getLogger("revamper.store.disk")

EXTRA_COUNTERS: Final = ("next_segment",)
RESET_MARKER: Final = "reset-in-progress"
"""Present while a reset runs (see :func:`reset_files`)."""
_MARKER_TEXT: Final = b"revamper: a reset of this disk cache is in progress\n"
_FILES: Final = ("lock", "owner.lock", "index", "counters", manifest.MANIFEST_NAME, RESET_MARKER)
_FULL: Final = (errno.ENOSPC, errno.EDQUOT)
_SEGMENT_NAME: Final = re.compile(r"[0-9]{8,10}\.seg")
_MAX_COUNTERS: Final = 64  # int64 counters a counters file holds at most (7 today)
_MAX_COUNTER_VALUE: Final = 2**48  # beyond any real count; ASCII text read as int64 is above it


def check_directory(directory: str | os.PathLike[str]) -> Path:
    """Return ``directory`` as a Path if it is a usable cache directory, else raise.

    Usable: an existing, writable directory that belongs to the current user and is writable by
    nobody else (:mod:`revamper.store.permissions`), reached through directories and links no
    other user can change (:mod:`revamper.store.path_chain`).

    Returns:
        Its real path, to use from then on.

    Raises:
        ValueError: Naming the path and what is wrong with it (an
            :class:`~revamper.store.UnsafeCacheError` for the owner and mode rule).
    """
    path = Path(directory)
    if not path.exists():
        raise ValueError(f"cache_dir {str(path)!r} does not exist; create it first")
    if not path.is_dir():
        raise ValueError(f"cache_dir {str(path)!r} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"cache_dir {str(path)!r} is not writable")
    real = checked_real_path(path)  # the directories and links on the way
    permissions.check_path(real, directory=True)
    return real


def check_cache_files(path: Path) -> None:
    """Apply the owner and mode rule to every file and directory of a cache found in ``path``.

    Raises:
        UnsafeCacheError: For the first offending path.
    """
    for name in _FILES:
        with contextlib.suppress(FileNotFoundError):
            permissions.check_path(path / name)
    with contextlib.suppress(FileNotFoundError):
        permissions.check_tree(path / "segments")


class ProcessFiles:
    """What one process holds open on a disk cache."""

    def __init__(self, path: Path, num_samples: int) -> None:
        self.pid = os.getpid()
        self.counters = Counters(path, EXTRA_COUNTERS)
        try:
            self.slots = SlotTable(path / "index", num_samples)
        except BaseException:
            self.counters.close()
            raise
        self.reader = SegmentReader(path / "segments")
        self.active: ActiveSegment | None = None
        self.disk_read = 0
        self.disk_written = 0
        self.damaged_seen = 0

    def close(self) -> None:
        """Close every descriptor."""
        if self.active is not None:
            self.active.close()
        self.reader.close()
        self.slots.close()
        self.counters.close()


def flush_and_drop(path: Path) -> None:
    """Write a segment's dirty pages back and drop it from the page cache (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the file system (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def check_arguments(num_samples: int, budget_bytes: int | None) -> None:
    """Check a disk store's size arguments.

    Raises:
        ValueError, TypeError: Naming the argument and its value.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    check_budget("budget_bytes", budget_bytes)


def open_or_reset(
    path: Path, num_samples: int, fingerprint: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Reuse the cache in ``path`` if it was made for ``fingerprint``, else reset it.

    Returns:
        The manifest of the cache (the reused one, or a fresh one with a new run identity).

    Raises:
        OSError: If the files cannot be written (``ENOSPC`` included).
        UnsafeCacheError: If a file found there fails the owner and mode rule.
    """
    lock_fd = permissions.open_private(path / "lock", os.O_RDWR, create=True)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # attached processes wait for the set-up
        found = manifest.read_manifest(path)
        wanted = manifest.manifest_for(fingerprint or {}, num_samples)
        reason = reuse_problem(path, num_samples, found, fingerprint, wanted)
        if reason is not None:
            if found is None and not os.path.lexists(path / manifest.MANIFEST_NAME):
                _refuse_foreign_files(path)  # (a damaged manifest of ours says it is a cache)
            if found is not None or (path / "index").exists():
                logger.warning("discarding the disk cache in %s: %s", path, reason)
            reset_files(path, num_samples, wanted)
        else:
            logger.info("reusing the disk cache in %s", path)
            Counters.create(path, EXTRA_COUNTERS)
            with contextlib.suppress(FileNotFoundError):  # a reset that crashed at its end
                os.unlink(path / RESET_MARKER)
        kept: dict[str, Any] = json.loads(json.dumps(wanted if found is None or reason else found))
        assert manifest.run_id_of(kept) is not None
        return kept
    finally:
        os.close(lock_fd)


def _refuse_foreign_files(path: Path) -> None:
    """Refuse to reset a directory with no manifest whose ``index``/``counters`` are not ours.

    Without a manifest file, the directory may be a wrong ``cache_dir`` holding a user's files
    of those names, which a reset would delete. A reset of ours leaves :data:`RESET_MARKER`
    until it has written the manifest, so files found with the marker are ours (a reset that
    crashed); without it, ours are recognised by their content: a slot table whose every row
    is empty or carries its check word, counters of exactly the size and range a store writes.

    Raises:
        UnsafeCacheError: Naming the file, so that the user can move it or pick another directory.
    """
    if _marker_of_ours(path):
        return  # a reset of ours was interrupted: finish it
    if os.path.lexists(path / RESET_MARKER):
        raise UnsafeCacheError(path / RESET_MARKER, "it is not a revamper marker", advice=_FOREIGN)
    index, counters = path / "index", path / "counters"
    if os.path.lexists(index) and not looks_like_slot_table(index):
        raise UnsafeCacheError(index, "it is not a revamper slot table", advice=_FOREIGN)
    if os.path.lexists(counters) and not _looks_like_counters(counters):
        raise UnsafeCacheError(counters, "it is not a revamper counters file", advice=_FOREIGN)


_FOREIGN: Final = (
    "There is no manifest (revamper-cache.json) in this directory, so a reset would delete a "
    "file that may be yours: choose an empty cache_dir. If it is a revamper cache whose manifest "
    "was lost, delete its index, counters and segments/ (or the whole directory)"
)


def _write_marker(path: Path) -> None:
    """Put the reset marker in place whole (written aside, then renamed: never found empty)."""
    aside = path / f"{RESET_MARKER}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(aside)  # a leftover of a crash of this pid
    fd = permissions.open_private(aside, os.O_WRONLY | os.O_EXCL, create=True)
    try:
        if os.write(fd, _MARKER_TEXT) != len(_MARKER_TEXT):
            raise OSError(f"short write to {aside}")
    finally:
        os.close(fd)
    os.replace(aside, path / RESET_MARKER)  # ours: without a manifest, a foreign one was refused


def _marker_of_ours(path: Path) -> bool:
    """Whether ``path`` holds the marker of an interrupted reset of ours (by its text)."""
    try:
        fd = permissions.open_private(path / RESET_MARKER, os.O_RDONLY)
    except (OSError, ValueError):
        return False
    try:
        return os.pread(fd, len(_MARKER_TEXT) + 1, 0) == _MARKER_TEXT
    except OSError:
        return False
    finally:
        os.close(fd)


def _looks_like_counters(path: Path) -> bool:
    """Whether ``path`` holds what :meth:`Counters.create` writes: a few int64s in range."""
    try:
        fd = permissions.open_private(path, os.O_RDONLY)
    except (OSError, ValueError):
        return False
    try:
        raw = os.pread(fd, 8 * (_MAX_COUNTERS + 1), 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    if len(raw) not in (0, 8 * (len(STATS) + len(EXTRA_COUNTERS))):
        return False
    values = np.frombuffer(raw, dtype="<i8")
    return bool(((values >= 0) & (values <= _MAX_COUNTER_VALUE)).all())


def reuse_problem(
    path: Path,
    num_samples: int,
    found: Mapping[str, Any] | None,
    fingerprint: Mapping[str, Any] | None,
    wanted: Mapping[str, Any],
) -> str | None:
    """Why the cache found in ``path`` cannot be reused, or ``None``."""
    if found is None:
        return "no cache there yet" if not (path / "index").exists() else "no manifest"
    reason = manifest.mismatch(found, wanted, fingerprint=fingerprint is not None)
    if reason is not None:
        return reason
    try:
        table = SlotTable(path / "index", num_samples)
    except FileNotFoundError:
        return "its slot table is missing"
    try:
        if not table.size_ok():
            return "its slot table has the wrong size (damaged)"
    finally:
        table.close()
    if not (path / "counters").exists() or not (path / "segments").is_dir():
        return "its counters or segments are missing"
    return None


def reset_files(path: Path, num_samples: int, wanted: Mapping[str, Any]) -> None:
    """Rebuild an empty cache; the manifest goes first and comes back last.

    :data:`RESET_MARKER` stays from before the manifest goes until it is back, so that a reset
    interrupted half-way is recognised as ours by the next one.
    """
    segments = _segment_files(path / "segments")  # refuses before anything is deleted
    _write_marker(path)
    manifest.remove_manifest(path)
    for planted in (path / "index", path / "counters", *segments):
        remove_entry(str(planted))  # a directory planted in a file's place goes too
    permissions.make_private_dir(path / "segments")
    SlotTable.create(path / "index", num_samples)
    Counters.create(path, EXTRA_COUNTERS)
    manifest.write_manifest(path, wanted)
    os.unlink(path / RESET_MARKER)


def _segment_files(directory: Path) -> list[Path]:
    """The segment files in ``directory``; refuses anything else in it.

    A reset must never delete the contents of a directory that merely happens to be called
    ``segments`` (a wrong ``cache_dir``).

    Raises:
        UnsafeCacheError: For the first entry that is not a segment file.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        if not _SEGMENT_NAME.fullmatch(name):
            raise UnsafeCacheError(
                directory / name, "it is not a cache segment, and a reset would delete it"
            )
    return [directory / name for name in names]


def attached_run_id(
    path: Path, num_samples: int, fingerprint: Mapping[str, Any] | None, run_id: bytes | None
) -> bytes:
    """The run identity of the cache another process owns in ``path``, after checking it.

    Raises:
        ValueError: If there is no trustworthy cache there, or it is another one.
    """
    check_cache_files(path)
    found = manifest.read_manifest(path)
    wanted = manifest.manifest_for(fingerprint or {}, num_samples)
    reason = "it has no valid manifest" if found is None else None
    if found is not None:
        reason = manifest.mismatch(found, wanted, fingerprint=fingerprint is not None)
    have = None if found is None else manifest.run_id_of(found)
    if reason is None and run_id is not None and have != run_id:
        reason = "it is another incarnation of the cache (run id)"
    if reason is not None:
        raise ValueError(f"cannot attach to the disk cache in {path}: {reason}")
    assert have is not None
    return have


def segment_numbers(path: Path) -> list[int]:
    """The numbers of the segment files in the cache ``path``."""
    try:
        names = os.listdir(path / "segments")
    except OSError:
        return []
    return [int(n[:-4]) for n in names if n.endswith(".seg") and n[:-4].isdigit()]


def reconcile(files: ProcessFiles, path: Path, *, quiet: bool) -> set[int]:
    """Make the counters agree with the slot table and the segments (hold the lock).

    Counters are statistics, and after a crash or damage they may be off: ``bytes`` and
    ``entries`` are recomputed from the valid slots, ``next_segment`` is brought back in range.

    Returns:
        The segments some valid slot points into.
    """
    rows, valid = files.slots.scan()
    entries = int(np.count_nonzero(valid))
    used = int(rows["length"][valid].sum(dtype=np.int64))
    counters = files.counters
    following = counters.value("next_segment")
    if not 0 <= following <= MAX_SEGMENT:
        following = 0
    numbers = [n for n in segment_numbers(path) if n <= MAX_SEGMENT]
    following = max([following - 1, *numbers], default=-1) + 1
    wanted = {"bytes": used, "entries": entries, "next_segment": following}
    wrong = [name for name, value in wanted.items() if counters.value(name) != value]
    if wrong and not quiet:
        logger.warning(
            "the disk cache %s had damaged counters (%s disagreed with its files); rebuilt",
            path,
            ", ".join(wrong),
        )
    for name, value in wanted.items():
        counters.set(name, value)
    return {int(s) for s in np.unique(rows["segment"][valid])}


def new_segment(files: ProcessFiles, path: Path, generation: int) -> ActiveSegment:
    """Create this process's next active segment, under a fresh number.

    Raises:
        OSError: If none can be created (``ENOSPC``, ...).
    """
    for _ in range(64):
        with files.counters.locked():
            number = files.counters.add("next_segment", 1)
            if not 0 <= number <= MAX_SEGMENT:  # a damaged counter
                reconcile(files, path, quiet=False)
                number = files.counters.add("next_segment", 1)
        try:
            created = ActiveSegment(segment_path(path / "segments", number), number, generation)
        except FileExistsError:
            continue  # a damaged counter named a segment that exists: take the next
        # Another process's garbage collection (on_epoch_start of another rank sharing this
        # directory) may unlink a fresh segment between its creation and its lock: records
        # appended there would be lost, so take a new one.
        if os.fstat(created.fd).st_nlink > 0:
            return created
        created.close()
    raise OSError(errno.EEXIST, "could not create a new segment file", str(path))


def by_segment(
    slots: Sequence[Slot | None], generations: Sequence[int]
) -> dict[int, list[tuple[int, Slot]]]:
    """The ``(position, slot)`` of the slots that hold the wanted generation, by segment.

    Segments come in increasing order and each one's slots by offset: file order.
    """
    wanted: dict[int, list[tuple[int, Slot]]] = {}
    for position, (slot, generation) in enumerate(zip(slots, generations, strict=True)):
        if slot is not None and slot.generation == generation:
            wanted.setdefault(slot.segment, []).append((position, slot))
    return {
        segment: sorted(items, key=lambda item: item[1].offset)
        for segment, items in sorted(wanted.items())
    }


def decode_record(data: Any, index: int, slot: Slot, run_id: bytes, allow_pickle: bool) -> Any:
    """The value of the record ``slot`` points to, read into ``data``, after every check.

    Raises:
        RecordError, CodecError: If it is damaged, foreign or of another incarnation.
    """
    header, meta, payload = record.open_record(data, index, run_id=run_id, require_checksum=True)
    if header.generation != slot.generation:
        raise RecordError("record and slot disagree on the generation")
    return codec.decode(meta, payload, allow_pickle=allow_pickle)


def fits(files: ProcessFiles, index: int, size: int, capacity: int | None) -> bool:
    """Whether replacing ``index``'s entry by ``size`` bytes stays within ``capacity``."""
    if capacity is None:
        return True
    slot = files.slots.read(index)
    used = files.counters.value("bytes")
    return bool(used - (slot.length if slot else 0) + size <= capacity)


def drop_slot(files: ProcessFiles, index: int) -> None:
    """Empty ``index``'s slot and count it out (hold the lock)."""
    old = files.slots.clear(index)
    if old:
        files.counters.add("bytes", -old)
        files.counters.add("entries", -1)


def collect_garbage(files: ProcessFiles, path: Path, live: set[int], *, flush: bool) -> None:
    """Delete the segments outside ``live`` that no writer holds; ``flush`` (and drop) the rest."""
    for number in sorted(segment_numbers(path)):
        segment = segment_path(path / "segments", number)
        if number not in live and try_delete(segment):
            files.reader.forget(number)
        elif flush:
            flush_and_drop(segment)


def repair_manifest(path: Path, kept: Mapping[str, Any]) -> None:
    """Write the owner's manifest back if it was damaged or removed while the cache runs.

    Processes that open the cache later (next epoch's workers) check it; without the repair
    they would stop using the cache for the rest of the run.
    """
    if manifest.read_manifest(path) != kept:
        logger.warning("the manifest of the disk cache %s was damaged; written back", path)
        with contextlib.suppress(OSError):
            manifest.write_manifest(path, kept)
