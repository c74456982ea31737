"""A table of one fixed-size slot per sample in a shared, memory-mapped file.

The disk store's index: slot ``i`` says where sample ``i``'s current record lives (segment, offset,
length) and which generation it holds. Every process maps the same file, so a slot written by
one worker is seen by all. A slot is not updated atomically, but a reader never trusts it alone:
the record it points to carries its own index, generation, length and checksum, so a slot read
half-way through an update leads to a rejected record (a miss), never to wrong data.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np

SLOT_DTYPE: Final = np.dtype(
    [("generation", "<i8"), ("offset", "<u8"), ("length", "<u4"), ("segment", "<u4"),
     ("reserved", "<u8")]
)  # fmt: skip
"""32 bytes per sample; ``length == 0`` marks an empty slot."""


class Slot(NamedTuple):
    """Where one record lives."""

    generation: int
    offset: int
    length: int
    segment: int


class SlotTable:
    """The memory-mapped slot table of one store, in one process.

    Args:
        path: The table's file (created, zero-filled, if missing).
        num_samples: Number of slots.
    """

    def __init__(self, path: Path, num_samples: int) -> None:
        size = num_samples * SLOT_DTYPE.itemsize
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.slots: np.ndarray[Any, Any] = np.frombuffer(self._map, dtype=SLOT_DTYPE)

    def read(self, index: int) -> Slot | None:
        """The slot of ``index``, or ``None`` if it is empty."""
        row = self.slots[index]
        length = int(row["length"])
        if length == 0:
            return None
        return Slot(int(row["generation"]), int(row["offset"]), length, int(row["segment"]))

    def write(self, index: int, slot: Slot) -> None:
        """Point ``index`` at a record: length last, so a reader sees empty, then the new slot."""
        row = self.slots[index : index + 1]
        row["length"] = 0
        row["generation"] = slot.generation
        row["offset"] = slot.offset
        row["segment"] = slot.segment
        row["length"] = slot.length

    def clear(self, index: int) -> int:
        """Empty the slot of ``index``; returns the length it pointed to (0 if empty)."""
        length = int(self.slots[index]["length"])
        self.slots[index : index + 1]["length"] = 0
        return length

    def live_segments(self) -> set[int]:
        """Segments that hold at least one current record."""
        used = self.slots["length"] > 0
        return {int(s) for s in np.unique(self.slots["segment"][used])}

    def totals(self) -> tuple[int, int]:
        """``(entries, bytes)`` of the current records."""
        lengths = self.slots["length"]
        return int(np.count_nonzero(lengths)), int(lengths.sum(dtype=np.int64))

    def close(self) -> None:
        """Unmap the table (views into it must be gone)."""
        del self.slots
        self._map.close()
