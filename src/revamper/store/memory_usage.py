"""Reading a shared-memory store's counters without trusting them.

The counters live in a file of the store's directory that every process maps; a damaged value
(a stray write, a file restored from elsewhere) must never stop the cache or raise in a worker.
The byte and entry counts are recounted from the entry files when they are out of range; the
other statistics are reset to zero.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from revamper.store import record
from revamper.store.base import StoreStats
from revamper.store.counters import STATS, Counters
from revamper.store.memory_entry import entry_size

MAX_BYTES: Final = 2**62
"""Beyond any file system: a counter above it is damaged."""


def checked_usage(
    counters: Counters, data: Path, max_used: int, *, force: bool = False
) -> tuple[int, bool]:
    """The bytes held, recounted from the entries in ``data`` if the counters are implausible.

    Plausible: ``0 <= entries``, each entry at least a record header, and at most ``max_used``
    bytes (the budget, which a put never exceeds under the lock). Hold the counters' lock.

    Args:
        counters: The store's counters.
        data: The directory of its entry files.
        max_used: The most bytes it may hold.
        force: Recount even if the counters look plausible.

    Returns:
        ``(bytes held, whether the counters were recounted)``.
    """
    used, entries = counters.value("bytes"), counters.value("entries")
    if not force and entries >= 0 and entries * record.HEADER_SIZE <= used <= max_used:
        return used, False
    used, entries = 0, 0
    for directory, _, names in os.walk(data):
        for name in names:
            size = entry_size(os.path.join(directory, name))
            used, entries = used + size, entries + (size > 0)
    counters.set("bytes", used)
    counters.set("entries", entries)
    return used, True


def checked_stats(counters: Counters, budget_bytes: int | None) -> StoreStats:
    """A snapshot of the statistics, resetting any counter out of range (hold the lock)."""
    values: dict[str, int] = {}
    for name in STATS:
        value = counters.value(name)
        if not 0 <= value <= MAX_BYTES:
            counters.set(name, 0)
            value = 0
        values[name] = value
    return StoreStats(
        entries=values["entries"],
        bytes_used=values["bytes"],
        budget_bytes=budget_bytes,
        puts=values["puts"],
        rejected_puts=values["rejected"],
        failed_puts=values["failed"],
        invalid_reads=values["invalid"],
    )
