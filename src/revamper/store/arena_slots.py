"""Placing, writing and clearing one slot of an arena (the writer's side of the seqlock).

A writer holds the store's lock. It makes the slot's sequence number odd, writes the record into
the slot's region (with ``pwritev``), then the slot's words, then makes the number even again:
a reader that saw the same even number before and after copying the region read a record no
writer touched meanwhile (on x86, and wherever a system call orders memory, the stores reach
other processes in program order; the record's checksum catches anything else). The sequence
word is always written with one aligned 8-byte store through a numpy view: :mod:`struct`'s
``pack_into`` zeroes its target before filling it in, and a reader that caught a sequence
number of 0 (even) would take a half-written slot for a stable one.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any, Final, NamedTuple

import numpy as np

from revamper.store.arena_file import ArenaHandles
from revamper.store.arena_layout import GRANULE, PAGE, SEQ, SLOT, ArenaGeometry, region_size
from revamper.store.arena_usage import BUMP, BYTES
from revamper.store.record import HEADER_SIZE

__all__ = ["Placement", "clear_slot", "place", "slot_offset", "write_slot"]

_WORDS: Final = struct.Struct("<3Q")  # offset, size, cap (after the sequence word)
Words = np.ndarray[Any, np.dtype[np.uint64]]


class Placement(NamedTuple):
    """Where a put goes: ``outcome`` is ``"ok"`` or ``"rejected"`` (it does not fit).

    Attributes:
        outcome: ``"ok"`` or ``"rejected"``.
        seq: The slot's sequence number before the put.
        offset: The region to write (``"ok"`` only).
        cap: The region's size.
        old: Bytes of the valid entry the slot held (0: none).
        new_region: Whether the region is new (the allocation pointer moves past it).
    """

    outcome: str
    seq: int
    offset: int
    cap: int
    old: int
    new_region: bool


def slot_offset(index: int) -> int:
    """Where the slot of ``index`` starts in the file."""
    return PAGE + SLOT.size * index


def place(
    mm: mmap.mmap, geometry: ArenaGeometry, values: list[int], index: int, size: int
) -> Placement:
    """Decide where a record of ``size`` bytes for ``index`` goes (hold the lock).

    The slot's own region is reused when the record fits in it; else a new region is taken at
    the allocation pointer: exactly the record's size the first time, an eighth more when an
    entry outgrows its region (values whose size varies then settle in place; the abandoned
    region is not reused: the arena has no compaction). A record that would exceed the budget
    (live bytes) or the arena's end is rejected when the arena has a budget (its size);
    without one, the arena is as large as its tmpfs and the region returned lies past its end
    (the writer reports a full tmpfs).
    Slot words that do not describe a region below the allocation pointer are
    ignored (a damaged slot gets a new region).
    """
    seq, offset, old, cap = SLOT.unpack_from(mm, slot_offset(index))
    bump = values[BUMP]
    has_region = (
        geometry.data_offset <= offset and offset % GRANULE == 0 and 0 < cap <= bump - offset
    )
    if not has_region or not HEADER_SIZE <= old <= cap:
        old = 0
    need = region_size(size)
    budget = geometry.budget_bytes
    if budget is not None and values[BYTES] - old + size > budget:
        return Placement("rejected", seq, 0, 0, old, False)
    if has_region and cap >= need:
        return Placement("ok", seq, offset, cap, old, False)
    if has_region:
        need = region_size(size + size // 8)  # it grew once: leave room to grow in place
    if bump + need > geometry.file_size and budget is not None:
        return Placement("rejected", seq, 0, 0, old, False)  # the budget is the arena's size
    return Placement("ok", seq, bump, need, old, True)


_SEQ_WRAP: Final = 2**64


def _odd(seq: int) -> int:
    """The odd sequence number a writer sets after ``seq`` (wrapping: damage may put any)."""
    return (seq + 1 if seq % 2 == 0 else seq + 2) % _SEQ_WRAP


def _even_after(writing: int) -> int:
    return (writing + 1) % _SEQ_WRAP


def write_slot(
    handles: ArenaHandles,
    index: int,
    where: Placement,
    size: int,
    segments: list[bytes | memoryview],
) -> None:
    """Write a record's ``segments`` into the placed region and publish it (hold the lock).

    The record is written with ``pwritev`` (:meth:`ArenaHandles.write_record`), never through
    the map: the kernel fills the tmpfs pages without faulting them into this process (a
    worker rarely has the page of an entry it rewrites mapped), and a full tmpfs is an
    ``ENOSPC``. A new region is written whole (zero padded to its capacity) while readers
    still see the old one; a region rewritten in place is written with the slot's sequence
    number odd.

    Raises:
        OSError: ``ENOSPC`` writing a new region (the slot keeps its previous words).
    """
    words = handles.words
    assert words is not None
    seq_word = 4 * index
    writing = _odd(where.seq)
    if where.new_region:
        handles.write_record(where.offset, segments, where.cap)
        words[seq_word] = writing
    else:
        words[seq_word] = writing
        handles.write_record(where.offset, segments, 0)
    _WORDS.pack_into(handles.mm, slot_offset(index) + SEQ.size, where.offset, size, where.cap)
    words[seq_word] = _even_after(writing)


def clear_slot(words: Words, index: int, seq: int) -> None:
    """Mark a slot empty, keeping its region for the next put (hold the lock)."""
    seq_word = 4 * index
    writing = _odd(seq)
    words[seq_word] = writing
    words[seq_word + 2] = 0  # size: no entry
    words[seq_word] = _even_after(writing)
