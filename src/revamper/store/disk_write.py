"""Writing a disk cache's records: the segment a process appends to, and the slot that points at it.

A put appends its record to this process's *active segment* (one writer per segment, so appends
need no lock), then, under the store's lock, points the sample's slot at it if the budget still
allows (another process may have filled it meanwhile). A record written but not pointed at is
dead bytes that the garbage collection between epochs reclaims with its segment.
"""

from __future__ import annotations

from pathlib import Path

from revamper.store.disk_layout import ProcessFiles, drop_slot, fits, new_segment, reconcile
from revamper.store.record import HEADER_SIZE
from revamper.store.segments import ActiveSegment
from revamper.store.slots import Slot


def active_segment(
    files: ProcessFiles, path: Path, generation: int, segment_bytes: int
) -> ActiveSegment:
    """The segment this process appends a record of ``generation`` to, started anew if needed.

    A segment holds records of one generation or older (garbage collection drops a segment when
    no slot points into it, so mixing generations would keep old ones alive), and at most about
    ``segment_bytes``.

    Raises:
        OSError: If a new segment cannot be created.
    """
    active = files.active
    if active is not None and active.size < segment_bytes:
        if generation <= active.generation:
            return active
        if active.size == 0:
            active.generation = generation
            return active
    if active is not None:
        active.close()
        files.active = None
    files.active = new_segment(files, path, generation)
    return files.active


def reject(files: ProcessFiles, index: int) -> bool:
    """Count a put the budget refused, dropping the entry it outdates (hold the lock)."""
    drop_slot(files, index)
    files.counters.add("rejected", 1)
    return False


def commit(
    files: ProcessFiles, path: Path, index: int, slot: Slot, budget_bytes: int | None
) -> bool:
    """Point ``index``'s slot at a written record if it fits the budget (hold the lock).

    The budget is only as good as the ``bytes`` counter, which any process of ours may have
    left damaged: counters that cannot be true (negative, more entries than samples, fewer
    bytes than headers) are rebuilt from the slot table first, so that a damaged counter cannot
    let the cache outgrow its budget. (Counters too high only refuse puts, and a count too low
    but possible lasts until the next epoch, when the store rebuilds its counters anyway.)

    Returns:
        Whether the entry is now cached (else it was counted as rejected).
    """
    if budget_bytes is not None and not _plausible(files):
        reconcile(files, path, quiet=False)
    if not fits(files, index, slot.length, budget_bytes):
        return reject(files, index)
    old = files.slots.clear(index)
    files.slots.write(index, slot)
    files.counters.add("bytes", slot.length - old)
    files.counters.add("entries", 0 if old else 1)
    files.counters.add("puts", 1)
    return True


def _plausible(files: ProcessFiles) -> bool:
    """Whether the usage counters could be true of the cache."""
    used, entries = files.counters.value("bytes"), files.counters.value("entries")
    return 0 <= entries <= files.slots.num_samples and entries * HEADER_SIZE <= used
