"""The layout of an arena store's one file: a header page, a slot table, then the records.

An arena is a single file on a tmpfs that every process of a loader maps. Its first page holds
the settings every instance must agree on (written once by the owner) and the shared counters
(changed under the file's ``flock``); then comes one 32-byte *slot* per sample index, then the
data region where records (:mod:`revamper.store.record`) are packed one after another, 8-byte
aligned. A slot is four little-endian 64-bit words::

    seq     even: stable; odd: a writer is rewriting the slot (a seqlock)
    offset  where the slot's region starts in the file (0: the slot never had one)
    size    bytes of the record held there (0: no entry)
    cap     bytes of the region (a rewrite that fits reuses it in place)

Everything read back from the file is input: settings, counters and slots are range-checked
before use, and a record is only served after :func:`~revamper.store.record.open_record` has
checked its index, run identity, length and checksum.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Final

from revamper.store.record import HEADER_SIZE, NO_RUN_ID, RUN_ID_SIZE

__all__ = [
    "COUNTERS",
    "PAGE",
    "SLOT",
    "ArenaGeometry",
    "parse_settings",
    "region_size",
]

MAGIC: Final = b"RVMPAREN"
VERSION: Final = 1
PAGE: Final = 4096
GRANULE: Final = 8
"""Regions start and end on multiples of this (the record header's 64-bit fields stay aligned)."""
MAX_FILE: Final = 2**50

_SETTINGS: Final = struct.Struct("<8sIIQQQqQBB16s")
# magic, version, pad, num_samples, data offset, file size, budget (-1: none), reserve,
# checksum, allow_pickle, run id
COUNTERS_OFFSET: Final = 512
COUNTERS: Final = ("bump", "bytes", "entries", "puts", "rejected", "failed", "invalid")
COUNTER_BLOCK: Final = struct.Struct(f"<{len(COUNTERS)}q")
SLOT: Final = struct.Struct("<4Q")
SEQ: Final = struct.Struct("<Q")


def round_up(value: int, granule: int) -> int:
    """``value`` rounded up to a multiple of ``granule``."""
    return (value + granule - 1) // granule * granule


def region_size(record_bytes: int) -> int:
    """Bytes a region for a record of ``record_bytes`` occupies."""
    return round_up(record_bytes, GRANULE)


@dataclasses.dataclass(frozen=True)
class ArenaGeometry:
    """What every instance of one arena agrees on (the owner's settings).

    Attributes:
        num_samples: Slots in the table (indices are below it).
        data_offset: Where the data region starts.
        file_size: The arena file's size (the data region ends there).
        budget_bytes: The byte budget, or ``None``.
        reserve_bytes: Free space left on the tmpfs.
        checksum: Whether records carry, and must pass, a CRC-32.
        allow_pickle: Whether values may be pickled and unpickled.
        run_id: The store's random identity (16 bytes), required of every record.
    """

    num_samples: int
    data_offset: int
    file_size: int
    budget_bytes: int | None
    reserve_bytes: int
    checksum: bool
    allow_pickle: bool
    run_id: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.num_samples <= MAX_FILE // SLOT.size:
            raise ValueError(f"num_samples is {self.num_samples}, out of range")
        if self.data_offset != table_end(self.num_samples):
            raise ValueError(f"data offset {self.data_offset} does not fit the table")
        if not self.data_offset <= self.file_size <= MAX_FILE or self.file_size % PAGE:
            raise ValueError(f"file size {self.file_size} is out of range")
        if self.budget_bytes is not None and not 0 <= self.budget_bytes <= MAX_FILE:
            raise ValueError(f"budget {self.budget_bytes} is out of range")
        if not 0 <= self.reserve_bytes <= MAX_FILE:
            raise ValueError(f"reserve {self.reserve_bytes} is out of range")
        if len(self.run_id) != RUN_ID_SIZE or self.run_id == NO_RUN_ID:
            raise ValueError("the run id must be 16 bytes, not all zero")

    @classmethod
    def plan(
        cls,
        num_samples: int,
        data_bytes: int,
        *,
        budget_bytes: int | None,
        reserve_bytes: int,
        checksum: bool,
        allow_pickle: bool,
        run_id: bytes,
    ) -> ArenaGeometry:
        """The geometry of a new arena with a data region of (at least) ``data_bytes``."""
        data_offset = table_end(num_samples)
        file_size = data_offset + round_up(max(data_bytes, 0), PAGE)
        return cls(
            num_samples=num_samples,
            data_offset=data_offset,
            file_size=min(file_size, MAX_FILE),
            budget_bytes=budget_bytes,
            reserve_bytes=reserve_bytes,
            checksum=checksum,
            allow_pickle=allow_pickle,
            run_id=run_id,
        )

    def slot_offset(self, index: int) -> int:
        """Where the slot of ``index`` starts in the file."""
        return PAGE + SLOT.size * index

    def pack(self) -> bytes:
        """The settings part of the header page."""
        return _SETTINGS.pack(
            MAGIC,
            VERSION,
            0,
            self.num_samples,
            self.data_offset,
            self.file_size,
            -1 if self.budget_bytes is None else self.budget_bytes,
            self.reserve_bytes,
            int(self.checksum),
            int(self.allow_pickle),
            self.run_id,
        )


def table_end(num_samples: int) -> int:
    """Where the data region of an arena with ``num_samples`` slots starts."""
    return round_up(PAGE + SLOT.size * num_samples, PAGE)


def parse_settings(header: bytes) -> ArenaGeometry:
    """Validate and decode the settings an arena's owner wrote in its header page.

    Raises:
        ValueError: If it is not an arena of this version, or any field is out of range.
    """
    if len(header) < _SETTINGS.size:
        raise ValueError("the arena's header is short")
    fields = _SETTINGS.unpack_from(header)
    magic, version, _, num_samples, data_offset, file_size, budget, reserve, *rest = fields
    checksum, allow_pickle, run_id = rest
    if magic != MAGIC or version != VERSION:
        raise ValueError("not a revamper arena of this version (magic or version)")
    if budget < -1 or checksum not in (0, 1) or allow_pickle not in (0, 1):
        raise ValueError("the arena's settings are out of range")
    return ArenaGeometry(
        num_samples=num_samples,
        data_offset=data_offset,
        file_size=file_size,
        budget_bytes=None if budget == -1 else budget,
        reserve_bytes=reserve,
        checksum=bool(checksum),
        allow_pickle=bool(allow_pickle),
        run_id=run_id,
    )


def slot_is_plausible(geometry: ArenaGeometry, offset: int, size: int, cap: int) -> bool:
    """Whether a slot's words describe a region inside the data region holding a record."""
    return (
        geometry.data_offset <= offset
        and offset % GRANULE == 0
        and HEADER_SIZE <= size <= cap
        and offset + cap <= geometry.file_size
    )
