"""What a store reports: its shared statistics and the bytes one instance moved."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class StoreStats:
    """A snapshot of a store's shared state, the same whichever process asks.

    Attributes:
        entries: Entries currently held.
        bytes_used: Bytes currently held (encoded size, headers included).
        budget_bytes: The byte budget, or ``None`` for no budget (what it covers depends on
            the kind of store: see :attr:`revamper.store.registry.StoreSpec.budget`).
        puts: Entries written since the store was created.
        rejected_puts: Entries not cached because they did not fit in the budget.
        failed_puts: Entries not cached because writing them failed (e.g. a full file system).
        invalid_reads: Entries found but rejected on read as damaged or foreign (wrong index,
            length or codec version, failed checksum). An entry of another generation is an
            ordinary miss and is not counted here.
    """

    entries: int
    bytes_used: int
    budget_bytes: int | None
    puts: int
    rejected_puts: int
    failed_puts: int
    invalid_reads: int


@dataclasses.dataclass(frozen=True)
class IoCounters:
    """Cumulative bytes one store instance moved in one process, by tier.

    Attributes:
        memory_read: Bytes of entries read from memory.
        disk_read: Bytes of entries read from disk (or its page cache).
        disk_written: Bytes of entries written to disk.
    """

    memory_read: int = 0
    disk_read: int = 0
    disk_written: int = 0

    def __sub__(self, other: IoCounters) -> IoCounters:
        return IoCounters(
            self.memory_read - other.memory_read,
            self.disk_read - other.disk_read,
            self.disk_written - other.disk_written,
        )

    def __add__(self, other: IoCounters) -> IoCounters:
        return IoCounters(
            self.memory_read + other.memory_read,
            self.disk_read + other.disk_read,
            self.disk_written + other.disk_written,
        )
