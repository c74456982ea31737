"""Reading a disk cache's records: a batch in file order, every record checked, damage reported.

A batch's slots are read together, the wanted records grouped by segment and sorted by offset
(one pass over each file), and each record is checked against its slot, its checksum and the
cache's run identity before it is decoded. Anything damaged is a miss, reported to the store
(which counts it and warns once); nothing read here is trusted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Final

from revamper.errors import RecordError
from revamper.store.base import MISS
from revamper.store.disk_layout import ProcessFiles, by_segment, decode_record
from revamper.store.slots import Slot

DAMAGE: Final = (ValueError, TypeError, OverflowError, LookupError, MemoryError)
"""What decoding damaged bytes may raise (``RecordError`` and ``CodecError`` are ValueErrors)."""

Damaged = Callable[[int, str], None]
"""How the reader reports damage: ``(how many, what)``."""


def read_records(
    files: ProcessFiles,
    indices: Sequence[int],
    generations: Sequence[int],
    *,
    run_id: bytes,
    allow_pickle: bool,
    drop_after_read: bool,
    damaged: Damaged,
) -> list[Any]:
    """The values of the entries ``(index, generation)``, :data:`MISS` where there is none.

    Args:
        files: This process's files.
        indices: Sample indices (checked against the slot table's size by the caller).
        generations: The generation wanted for each.
        run_id: The cache's incarnation: a record of another one is a miss.
        allow_pickle: Whether a pickled value may be unpickled.
        drop_after_read: Drop the records' pages from the page cache once read.
        damaged: Called for damaged slots and records.
    """
    out: list[Any] = [MISS] * len(indices)
    try:
        slots = files.slots.read_many(indices)
    except OSError:
        return out
    new = files.slots.damaged - files.damaged_seen
    if new:
        files.damaged_seen = files.slots.damaged
        damaged(new, f"{new} damaged slot(s) of the index")
    for segment, items in by_segment(slots, generations).items():
        spans = [(slot.offset, slot.length) for _, slot in items]
        datas = files.reader.read_many(segment, spans)
        for (position, slot), data in zip(items, datas, strict=True):
            index = indices[position]
            try:
                if data is None:
                    raise RecordError("its segment file is missing or cut short")
                files.disk_read += slot.length
                out[position] = decode_record(data, index, slot, run_id, allow_pickle)
            except DAMAGE as exc:
                damaged(1, f"a damaged record (sample {index}: {exc})")
        if drop_after_read:
            files.reader.release(segment, spans)
    return out


def prefetch_records(
    files: ProcessFiles, indices: Sequence[int], generations: Sequence[int]
) -> None:
    """Start reading these entries in the background (``POSIX_FADV_WILLNEED``); a hint only.

    Indices outside the slot table are ignored.
    """
    keep = [k for k, i in enumerate(indices) if 0 <= i < files.slots.num_samples]
    try:
        slots: Sequence[Slot | None] = files.slots.read_many([indices[k] for k in keep])
    except OSError:
        return
    wanted = by_segment(slots, [generations[k] for k in keep])
    for segment, items in wanted.items():
        spans = [(slot.offset, slot.length) for _, slot in items]
        files.reader.advise(segment, spans, os.POSIX_FADV_WILLNEED)
