"""Append-only segment files: how the disk store writes records and reads them back.

Each writing process appends to its own *active* segment, so writers never contend for a file and
records are written sequentially, which suits SSDs. A writer holds a shared ``flock`` on its
active segment; garbage collection deletes only segments that no slot points to and that nobody
holds, so a segment being filled is never deleted under its writer. A writer starts a new segment
when the current one is full or a newer generation (epoch) begins, so that each segment's records
age together and whole segments become garbage once the plan has recomputed them.

Readers copy records into private buffers with ``preadv``, never through a memory map: a segment
cut short (a full disk, a damaged or truncated file) then reads short and the record is a miss,
where a map would kill the process with ``SIGBUS``. Records that lie back to back in a segment
(the usual case: a batch's entries were mostly written in order) are read with one ``preadv``
into their separate buffers, so small entries (a 32x32 image is 3 KB) do not cost a system call
each. Every file is opened without following links and must be a private file of ours
(:mod:`revamper.store.permissions`); a new segment is created exclusively.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import Any, Final

import numpy as np

from revamper.store import permissions, record
from revamper.store.vectored import advance

SEGMENT_SUFFIX: Final = ".seg"
_IOV_MAX: Final = 512  # buffers per preadv, well under the kernel's limit
_GAP: Final = 4096  # bytes between two records still read in one preadv (into a scratch buffer)


def segment_path(directory: Path, segment: int) -> Path:
    """The file of segment number ``segment``."""
    return directory / f"{segment:08d}{SEGMENT_SUFFIX}"


class ActiveSegment:
    """The segment one process appends to.

    Args:
        path: The segment's file (created; it must not exist).
        number: Its segment number.
        generation: The newest generation written to it so far.

    Raises:
        FileExistsError: If a file of that name exists (take another number).
        OSError: If it cannot be created (``ENOSPC``, ...).
    """

    def __init__(self, path: Path, number: int, generation: int) -> None:
        self.path = path
        self.number = number
        self.generation = generation
        self.fd = permissions.open_private(path, os.O_WRONLY | os.O_APPEND | os.O_EXCL, create=True)
        fcntl.flock(self.fd, fcntl.LOCK_SH)
        self.size = 0

    def append(self, segments: list[bytes | memoryview]) -> int:
        """Append one record; returns its offset. On an error, the size is re-read.

        Raises:
            OSError: If the write fails (the record is then not usable).
        """
        offset = self.size
        try:
            record.write_segments(self.fd, segments)
        except OSError:
            with contextlib.suppress(OSError):  # a partial write moved the end
                self.size = os.fstat(self.fd).st_size
            raise
        self.size = offset + sum(memoryview(segment).nbytes for segment in segments)
        return offset

    def close(self) -> None:
        """Release the segment (its lock goes with the descriptor)."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


class SegmentReader:
    """Reads records from segments into private buffers (``preadv``), checking every length."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fds: dict[int, int] = {}

    def read(self, segment: int, offset: int, length: int) -> np.ndarray[Any, Any] | None:
        """Copy one record into a private, writable array; ``None`` if it is not there."""
        return self.read_many(segment, [(offset, length)])[0]

    def read_many(
        self, segment: int, spans: list[tuple[int, int]]
    ) -> list[np.ndarray[Any, Any] | None]:
        """Copy the records at ``(offset, length)`` ``spans`` (sorted) of one segment.

        Returns:
            One private, writable array per span, or ``None`` where the segment is missing or
            ends before the record does.
        """
        out: list[np.ndarray[Any, Any] | None] = [None] * len(spans)
        fd = self.fd(segment)
        if fd is None:
            return out
        try:
            size = os.fstat(fd).st_size
        except OSError:
            return out
        # A span past the file's end is a miss without reading: a forged slot may name 4 GiB.
        inside = [k for k, (offset, length) in enumerate(spans) if offset + length <= size]
        for run in _runs([spans[k] for k in inside]):
            positions = [inside[k] for k in run]
            start = spans[positions[0]][0]
            views: list[memoryview] = []
            ends: list[tuple[int, int]] = []  # (end offset of the span's bytes, span position)
            cursor = start
            for position in positions:
                offset, length = spans[position]
                if offset > cursor:
                    views.append(memoryview(bytearray(offset - cursor)))
                buffer = np.empty(length, dtype=np.uint8)
                out[position] = buffer
                views.append(buffer.data)
                cursor = offset + length
                ends.append((cursor, position))
            got = _read_fully(fd, views, start)
            for end, position in ends:
                if start + got < end:
                    out[position] = None  # cut short: a miss
        return out

    def fd(self, segment: int) -> int | None:
        """A read descriptor of ``segment`` (kept open), or ``None`` if it does not exist."""
        fd = self._fds.get(segment)
        if fd is None:
            try:
                fd = permissions.open_private(segment_path(self.directory, segment), os.O_RDONLY)
            except (OSError, ValueError):  # missing, a link, not ours: nothing to read
                return None
            self._fds[segment] = fd
        return fd

    def advise(self, segment: int, ranges: list[tuple[int, int]], advice: int) -> None:
        """``posix_fadvise`` each ``(offset, length)`` range of a segment, merging neighbours."""
        fd = self.fd(segment)
        if fd is None:
            return
        for offset, length in _merge(ranges):
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, offset, length, advice)

    def release(self, segment: int, ranges: list[tuple[int, int]]) -> None:
        """Ask the kernel to drop these ranges from the page cache (``POSIX_FADV_DONTNEED``).

        Records are copied out with ``preadv``, so no map of this process keeps them cached;
        pages not yet written back stay.
        """
        self.advise(segment, ranges, os.POSIX_FADV_DONTNEED)

    def forget(self, segment: int) -> None:
        """Drop the descriptor of a segment (it was deleted)."""
        fd = self._fds.pop(segment, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Drop every descriptor."""
        for segment in list(self._fds):
            self.forget(segment)


def _read_fully(fd: int, views: list[memoryview], start: int) -> int:
    """``preadv`` into ``views`` from ``start`` until they are full or the file ends.

    One ``preadv`` moves at most about 2 GiB on Linux, so a large record takes several.

    Returns:
        The number of bytes read (short only at the end of the file or on an error).
    """
    done = 0
    while views:
        try:
            got = os.preadv(fd, views, start + done)
        except OSError:
            return done
        if got <= 0:
            return done
        done += got
        views = advance(views, got)
    return done


def _runs(spans: list[tuple[int, int]]) -> list[list[int]]:
    """Group sorted, non-overlapping spans into runs read by one ``preadv`` each."""
    runs: list[list[int]] = []
    end = -1
    for position, (offset, length) in enumerate(spans):
        if runs and end <= offset <= end + _GAP and len(runs[-1]) < _IOV_MAX // 2:
            runs[-1].append(position)
        else:
            runs.append([position])
        end = offset + length
    return runs


def _merge(ranges: list[tuple[int, int]], gap: int = 65536) -> list[tuple[int, int]]:
    """Sort ``(offset, length)`` ranges and merge those closer than ``gap`` bytes."""
    merged: list[list[int]] = []
    for offset, length in sorted(ranges):
        if merged and offset <= merged[-1][0] + merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], offset + length - merged[-1][0])
        else:
            merged.append([offset, length])
    return [(offset, length) for offset, length in merged]


def try_delete(path: Path) -> bool:
    """Delete a segment file unless a writer holds it; returns whether it was deleted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        return False  # a link: not ours to delete or follow
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False  # planted (a directory, a FIFO): not a segment to delete
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # an active segment of a live writer
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    finally:
        os.close(fd)
