"""A table of one fixed-size, self-checking slot per sample in a shared file.

The disk store's index: slot ``i`` says where sample ``i``'s current record lives (segment, offset,
length) and which generation it holds. Every process reads and writes the same file with
``pread``/``pwrite``, so a slot written by one worker is seen by all. The file is never written
through a memory map: on a full file system, the first write through a map into an unallocated
page kills the process with ``SIGBUS``, and so does any access to a file cut short under a map.
The table is allocated whole when the cache is created (:meth:`SlotTable.create`).

Everything read from the file is untrusted. Each slot carries a check word (a mix of its fields
and its own index), so a slot damaged on disk, or copied from elsewhere, reads as a miss; fields
are range-checked as well. A slot is written with one ``pwrite``; a reader never trusts it alone:
the record it points to carries its own index, generation, run id, length and checksum, so a slot
read half-way through an update leads to a rejected record (a miss), never to wrong data.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np

from revamper.store import permissions
from revamper.store.record import HEADER_SIZE

SLOT_DTYPE: Final = np.dtype(
    [("generation", "<i8"), ("offset", "<u8"), ("length", "<u4"), ("segment", "<u4"),
     ("check", "<u8")]
)  # fmt: skip
"""32 bytes per sample; an all-zero slot (``length == 0``) is empty."""

MAX_SEGMENT: Final = 2**32 - 2
"""The largest segment number a slot can name."""
MAX_OFFSET: Final = 2**48
"""No segment grows beyond this (a slot that says otherwise is damaged)."""
_CHUNK: Final = 1 << 20
_K = tuple(
    np.uint64(k)
    for k in (
        0x9E3779B97F4A7C15,
        0xBF58476D1CE4E5B9,
        0x94D049BB133111EB,
        0xD6E8FEB86659FD93,
        0xA0761D6478BD642F,
        0x5265564D50534C54,  # salt
    )
)


_ROW = struct.Struct("<qQIIQ")
_MASK: Final = 2**64 - 1
_KI = tuple(int(k) for k in _K)
_SMALL: Final = 16  # batches up to this size are checked in Python, larger ones with numpy


class Slot(NamedTuple):
    """Where one record lives."""

    generation: int
    offset: int
    length: int
    segment: int


def slot_checks(rows: np.ndarray[Any, Any], indices: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The check words slots ``rows`` of samples ``indices`` must carry.

    Each field goes through a bijection before the fields are combined, so any change to one
    field (or to the index) changes the check word; changes to several cancel out with
    probability about 2**-64.
    """
    with np.errstate(over="ignore"):
        h: np.ndarray[Any, Any] = (
            rows["generation"].view(np.uint64) ^ (rows["offset"] * _K[0])
        ) * _K[1]
        packed = rows["length"].astype(np.uint64) | (rows["segment"].astype(np.uint64) << 32)
        h ^= packed * _K[2]
        h ^= (indices.astype(np.uint64) * _K[3]) ^ _K[5]
        h ^= h >> np.uint64(31)
        h *= _K[4]
        h ^= h >> np.uint64(29)
    return h


def slot_check(index: int, generation: int, offset: int, length: int, segment: int) -> int:
    """:func:`slot_checks` of one slot, in Python integers (same result, far cheaper for one)."""
    k0, k1, k2, k3, k4, k5 = _KI
    h = (((generation & _MASK) ^ ((offset * k0) & _MASK)) * k1) & _MASK
    h ^= ((length | (segment << 32)) * k2) & _MASK
    h ^= ((index * k3) & _MASK) ^ k5
    h ^= h >> 31
    h = (h * k4) & _MASK
    return h ^ (h >> 29)


def _parse(raw: bytes, index: int) -> Slot | None:
    """One slot's bytes, checked; ``None`` if empty, damaged or out of range."""
    if len(raw) != _ROW.size:
        return None
    generation, offset, length, segment, check = _ROW.unpack(raw)
    if not (
        length >= HEADER_SIZE
        and generation >= 0
        and offset < MAX_OFFSET
        and segment <= MAX_SEGMENT
        and check == slot_check(index, generation, offset, length, segment)
    ):
        return None
    return Slot(generation, offset, length, segment)


def _slot(row: Any) -> Slot:
    return Slot(int(row["generation"]), int(row["offset"]), int(row["length"]), int(row["segment"]))


def _valid(rows: np.ndarray[Any, Any], indices: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Which ``rows`` are plausible, intact, non-empty slots."""
    length = rows["length"]
    ok: np.ndarray[Any, Any] = (
        (length >= HEADER_SIZE)
        & (rows["generation"] >= 0)
        & (rows["offset"] < MAX_OFFSET)
        & (rows["segment"] <= MAX_SEGMENT)
        & (rows["check"] == slot_checks(rows, indices))
    )
    return ok


def looks_like_slot_table(path: Path) -> bool:
    """Whether the file at ``path`` could be a slot table: every 32-byte row empty or valid.

    A reset without a manifest (a crash half-way through one, or a wrong ``cache_dir``) must
    not delete a user's file that merely happens to be called ``index``; a slot table is
    recognised by its content, since every non-empty slot carries the check word of its index.
    """
    try:
        fd = permissions.open_private(path, os.O_RDONLY)
    except (OSError, ValueError):
        return False
    try:
        size = os.fstat(fd).st_size
        if size % SLOT_DTYPE.itemsize:
            return False
        start = 0
        while start < size:
            raw = os.pread(fd, min(_CHUNK, size - start), start)
            if len(raw) % SLOT_DTYPE.itemsize or not raw:
                return False
            rows = np.frombuffer(raw, dtype=SLOT_DTYPE)
            first = start // SLOT_DTYPE.itemsize
            indices = np.arange(first, first + len(rows), dtype=np.int64)
            empty = ~(rows.view(np.uint64).reshape(-1, 4) != 0).any(axis=1)
            if not bool((empty | _valid(rows, indices)).all()):
                return False
            start += len(raw)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class SlotTable:
    """The slot table of one store, in one process.

    Args:
        path: The table's file (it must exist: see :meth:`create`).
        num_samples: Number of slots.

    Raises:
        UnsafeCacheError: If the file is a link, not a regular file, or not private.
        FileNotFoundError: If it does not exist.
    """

    def __init__(self, path: Path, num_samples: int) -> None:
        self.path = path
        self.num_samples = num_samples
        self.fd = permissions.open_private(path, os.O_RDWR)
        self.damaged = 0
        """Damaged slots met by this process (read as empty)."""

    @staticmethod
    def create(path: Path, num_samples: int) -> None:
        """Create a new, empty table at ``path`` (which must not exist), allocated whole.

        Raises:
            FileExistsError: If something is there already.
            OSError: If the space cannot be allocated (``ENOSPC``); nothing is left behind.
        """
        size = num_samples * SLOT_DTYPE.itemsize
        fd = permissions.open_private(path, os.O_RDWR | os.O_EXCL, create=True)
        try:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                _write_zeros(fd, 0, size)  # a file system without fallocate
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        os.close(fd)

    def size_ok(self) -> bool:
        """Whether the file has the size of ``num_samples`` slots."""
        return os.fstat(self.fd).st_size == self.num_samples * SLOT_DTYPE.itemsize

    def read_many(self, indices: Sequence[int]) -> list[Slot | None]:
        """The slots of ``indices`` (``None`` where empty or damaged)."""
        item = SLOT_DTYPE.itemsize
        raws = [os.pread(self.fd, item, int(index) * item) for index in indices]
        if len(raws) <= _SMALL:
            slots = [_parse(raw, int(index)) for raw, index in zip(raws, indices, strict=True)]
            self.damaged += sum(
                1 for raw, slot in zip(raws, slots, strict=True) if slot is None and any(raw)
            )
            return slots
        rows = np.zeros(len(raws), dtype=SLOT_DTYPE)
        for k, raw in enumerate(raws):
            if len(raw) == item:  # else the file was cut short: empty
                rows[k : k + 1] = np.frombuffer(raw, dtype=SLOT_DTYPE)
        valid = _valid(rows, np.asarray(indices, dtype=np.int64))
        self.damaged += int(
            np.count_nonzero(~valid & (rows.view(np.uint64).reshape(-1, 4) != 0).any(axis=1))
        )
        return [_slot(row) if ok else None for row, ok in zip(rows, valid, strict=True)]

    def read(self, index: int) -> Slot | None:
        """The slot of ``index``, or ``None`` if it is empty or damaged."""
        return self.read_many([index])[0]

    def write(self, index: int, slot: Slot) -> None:
        """Point ``index`` at a record, with one ``pwrite``.

        Raises:
            ValueError: If a field is out of range.
            OSError: If the write fails.
        """
        if not (
            slot.generation >= 0
            and 0 <= slot.offset < MAX_OFFSET
            and HEADER_SIZE <= slot.length < 2**32
            and 0 <= slot.segment <= MAX_SEGMENT
        ):
            raise ValueError(f"slot {slot} is out of range")
        check = slot_check(index, *slot)
        self._pwrite(_ROW.pack(*slot, check), index * SLOT_DTYPE.itemsize)

    def _pwrite(self, data: bytes, offset: int) -> None:
        if os.pwrite(self.fd, data, offset) != len(data):
            raise OSError(f"short write to the slot table {self.path}")

    def clear(self, index: int) -> int:
        """Empty the slot of ``index``; returns the length it pointed to (0 if empty or damaged).

        Raises:
            OSError: If the write fails.
        """
        slot = self.read(index)
        self._pwrite(bytes(SLOT_DTYPE.itemsize), index * SLOT_DTYPE.itemsize)
        return 0 if slot is None else slot.length

    def clear_all(self) -> None:
        """Empty every slot."""
        _write_zeros(self.fd, 0, self.num_samples * SLOT_DTYPE.itemsize)

    def scan(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Every slot and which of them are valid (the whole table in one read)."""
        size = self.num_samples * SLOT_DTYPE.itemsize
        rows = np.zeros(self.num_samples, dtype=SLOT_DTYPE)
        raw = rows.view(np.uint8)
        done = 0
        while done < size:
            got = os.preadv(self.fd, [raw.data[done : done + _CHUNK * 16]], done)
            if got <= 0:
                break
            done += got
        return rows, _valid(rows, np.arange(self.num_samples))

    def live_segments(self) -> set[int]:
        """Segments that hold at least one current record."""
        rows, valid = self.scan()
        return {int(s) for s in np.unique(rows["segment"][valid])}

    def totals(self) -> tuple[int, int]:
        """``(entries, bytes)`` of the current (valid) records."""
        rows, valid = self.scan()
        return int(np.count_nonzero(valid)), int(rows["length"][valid].sum(dtype=np.int64))

    def close(self) -> None:
        """Release the descriptor."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1


def _write_zeros(fd: int, start: int, size: int) -> None:
    zeros = bytes(min(size, _CHUNK))
    offset = start
    while offset < start + size:
        count = min(len(zeros), start + size - offset)
        written = os.pwrite(fd, zeros[:count], offset)
        if written <= 0:
            raise OSError(f"could not write zeros at offset {offset}")
        offset += written
