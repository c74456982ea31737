"""An arena's shared counters, read without trusting them and rebuilt from its slot table.

The counters (the allocation pointer, bytes and entries held, and the statistics) live in the
arena's header page, changed only under the store's lock. A stray write, or damage to the file
by another program of the user, must never stop the cache nor make a writer allocate over live
regions unchecked: counters out of range are rebuilt from the slots (one vectorised pass over
the table; 1.28 M slots take a few milliseconds), statistics out of range are reset to zero.
"""

from __future__ import annotations

import mmap
from typing import Final

import numpy as np

from revamper.store.arena_layout import (
    COUNTER_BLOCK,
    COUNTERS,
    COUNTERS_OFFSET,
    GRANULE,
    PAGE,
    ArenaGeometry,
)
from revamper.store.base import StoreStats
from revamper.store.record import HEADER_SIZE

__all__ = [
    "BUMP",
    "BYTES",
    "COUNTERS",
    "ENTRIES",
    "count_invalid",
    "plausible",
    "read_counters",
    "rebuild_counters",
    "snapshot",
    "write_counters",
]

MAX_COUNT: Final = 2**62
BUMP, BYTES, ENTRIES = 0, 1, 2


def read_counters(mm: mmap.mmap) -> list[int]:
    """The counters, in :data:`~revamper.store.arena_layout.COUNTERS` order (hold the lock)."""
    return list(COUNTER_BLOCK.unpack_from(mm, COUNTERS_OFFSET))


def write_counters(mm: mmap.mmap, values: list[int]) -> None:
    """Write all counters back (hold the lock), each kept from 0 to :data:`MAX_COUNT`.

    A statistic read back out of range (damage) and then counted on would not fit its field.
    """
    COUNTER_BLOCK.pack_into(mm, COUNTERS_OFFSET, *(min(max(v, 0), MAX_COUNT) for v in values))


def plausible(geometry: ArenaGeometry, values: list[int]) -> bool:
    """Whether the allocation pointer, bytes and entries can be what the store wrote."""
    bump, used, entries = values[BUMP], values[BYTES], values[ENTRIES]
    return (
        geometry.data_offset <= bump <= geometry.file_size
        and bump % GRANULE == 0
        and 0 <= entries <= geometry.num_samples
        and entries * HEADER_SIZE <= used <= bump - geometry.data_offset
    )


def rebuild_counters(mm: mmap.mmap, geometry: ArenaGeometry, values: list[int]) -> list[int]:
    """Recount bytes, entries and the allocation pointer from the slot table (hold the lock).

    A slot whose words are out of range is cleared (its entry, if any, is lost: a miss). The
    allocation pointer goes past every region a slot still describes, so no new region can
    overlap one. Statistics out of range are reset to zero.

    Returns:
        The rebuilt counters (also written back).
    """
    n = geometry.num_samples
    fixed = [v if 0 <= v <= MAX_COUNT else 0 for v in values]
    if n:
        table = np.frombuffer(mm, dtype="<u8", count=4 * n, offset=PAGE).reshape(n, 4)
        try:
            offset, size, cap = table[:, 1], table[:, 2], table[:, 3]
            region = (
                (offset >= geometry.data_offset)
                & (offset % GRANULE == 0)
                & (cap > 0)
                & (cap <= geometry.file_size)
                & (offset <= geometry.file_size - np.minimum(cap, geometry.file_size))
            )
            entry = region & (size >= HEADER_SIZE) & (size <= cap)
            table[~region & (offset != 0), 1:] = 0  # a damaged slot: forget its region
            table[region & ~entry, 2] = 0  # a region without a plausible entry: keep it free
            ends = offset[region] + cap[region]
            fixed[BUMP] = int(ends.max()) if ends.size else geometry.data_offset
            fixed[BYTES] = int(size[entry].sum())
            fixed[ENTRIES] = int(entry.sum())
        finally:
            del table
    else:
        fixed[BUMP], fixed[BYTES], fixed[ENTRIES] = geometry.data_offset, 0, 0
    write_counters(mm, fixed)
    return fixed


def _stat(values: list[int], name: str) -> int:
    value = values[COUNTERS.index(name)]
    return value if 0 <= value <= MAX_COUNT else 0


def snapshot(values: list[int], budget_bytes: int | None) -> StoreStats:
    """The statistics the counters describe (one out of range reads as zero)."""
    return StoreStats(
        entries=_stat(values, "entries"),
        bytes_used=_stat(values, "bytes"),
        budget_bytes=budget_bytes,
        puts=_stat(values, "puts"),
        rejected_puts=_stat(values, "rejected"),
        failed_puts=_stat(values, "failed"),
        invalid_reads=_stat(values, "invalid"),
    )


def count_invalid(mm: mmap.mmap) -> None:
    """Count one damaged or foreign entry read (hold the lock)."""
    values = read_counters(mm)
    at = COUNTERS.index("invalid")
    values[at] = min(max(values[at], 0) + 1, MAX_COUNT)
    write_counters(mm, values)
