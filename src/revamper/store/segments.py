"""Append-only segment files: how the disk store writes records and reads them back.

Each writing process appends to its own *active* segment, so writers never contend for a file and
records are written sequentially, which suits SSDs. A writer holds a shared ``flock`` on its
active segment; garbage collection deletes only segments that no slot points to and that nobody
holds, so a segment being filled is never deleted under its writer. A writer starts a new segment
when the current one is full or a newer generation (epoch) begins, so that each segment's records
age together and whole segments become garbage once the plan has recomputed them.

Readers map segments into memory and copy records out: reading the entries of a whole batch costs
no system call per entry, which matters for small entries (a 32x32 image is 3 KB).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from pathlib import Path
from typing import Any, Final

import numpy as np

from revamper.store import record

SEGMENT_SUFFIX: Final = ".seg"


def segment_path(directory: Path, segment: int) -> Path:
    """The file of segment number ``segment``."""
    return directory / f"{segment:08d}{SEGMENT_SUFFIX}"


class ActiveSegment:
    """The segment one process appends to.

    Args:
        path: The segment's file (created).
        number: Its segment number.
        generation: The newest generation written to it so far.
    """

    def __init__(self, path: Path, number: int, generation: int) -> None:
        self.path = path
        self.number = number
        self.generation = generation
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_SH)
        self.size = os.fstat(self.fd).st_size

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
    """Reads records from segments through per-process memory maps, remapping as they grow."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._maps: dict[int, mmap.mmap] = {}
        self._fds: dict[int, int] = {}

    def read(self, segment: int, offset: int, length: int) -> np.ndarray[Any, Any] | None:
        """Copy one record into a private, writable array; ``None`` if it is not there."""
        mapped = self._map(segment, offset + length)
        if mapped is None:
            return None
        out = np.empty(length, dtype=np.uint8)
        out[:] = np.frombuffer(mapped, dtype=np.uint8, count=length, offset=offset)
        return out

    def _map(self, segment: int, needed: int) -> mmap.mmap | None:
        mapped = self._maps.get(segment)
        if mapped is not None and len(mapped) >= needed:
            return mapped
        fd = self.fd(segment)
        if fd is None:
            return None
        size = os.fstat(fd).st_size
        if size < needed or size == 0:
            return None
        if mapped is not None:
            mapped.close()
        mapped = self._maps[segment] = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        return mapped

    def fd(self, segment: int) -> int | None:
        """A read descriptor of ``segment`` (kept open), or ``None`` if it does not exist."""
        fd = self._fds.get(segment)
        if fd is None:
            try:
                fd = os.open(segment_path(self.directory, segment), os.O_RDONLY)
            except FileNotFoundError:
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
        """Drop these ranges from this process's map and from the page cache.

        The kernel keeps a page cached while any process maps it, so the map's pages are let go
        first (``MADV_DONTNEED`` on a shared file map only unmaps them), then the page cache is
        asked to drop them (``POSIX_FADV_DONTNEED``; pages not yet written back stay).
        """
        mapped = self._maps.get(segment)
        if mapped is not None:
            page = mmap.PAGESIZE
            for offset, length in _merge(ranges):
                start = offset // page * page
                end = min(len(mapped), -(-(offset + length) // page) * page)
                with contextlib.suppress(OSError, ValueError):
                    mapped.madvise(mmap.MADV_DONTNEED, start, end - start)
        self.advise(segment, ranges, os.POSIX_FADV_DONTNEED)

    def forget(self, segment: int) -> None:
        """Drop the map and descriptor of a segment (it was deleted)."""
        mapped = self._maps.pop(segment, None)
        if mapped is not None:
            with contextlib.suppress(BufferError):
                mapped.close()
        fd = self._fds.pop(segment, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Drop every map and descriptor."""
        for segment in list(self._fds) + list(self._maps):
            self.forget(segment)


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
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # an active segment of a live writer
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    finally:
        os.close(fd)
