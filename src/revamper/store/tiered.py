"""A RAM budget in front of a disk cache, placed with the plan's knowledge instead of an LRU.

The access pattern of refurbishing is a fresh random permutation of the whole data set every
epoch, over a working set larger than memory: a page cache or any LRU keeps what was touched
last, which is no better a guess than any other, and every write (a recomputed entry) pushes out
something that will be read. Here:

- a fixed subset stays resident in RAM: an entry goes to the memory tier if it fits in the budget
  (its own earlier copy's bytes count as free), so once RAM is full, the same samples keep their
  place there epoch after epoch and the rest live on disk;
- the disk entries the next batches need are read ahead (the loader calls :meth:`prefetch` as it
  hands out batches), and their pages are dropped from the page cache once read, since each entry
  is read at most once per epoch; written pages are dropped too, so the disk tier does not fill
  RAM behind the budget's back.

Per epoch, then, the disk supplies at most the bytes of the entries that do not fit in RAM.
An entry lives in one tier only, so the RAM tier's entries do not survive a restart: they are
recomputed once when next needed (writing them to disk as well would cost a disk write per
recomputed entry, every epoch, to save one recomputation per restart).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from revamper.store import codec
from revamper.store.base import MISS, CacheStore, IoCounters, StoreStats
from revamper.store.disk import DiskStore
from revamper.store.memory import SharedMemoryStore
from revamper.store.registry import StoreOptions, StoreSpec, handle_field, register_store


class TieredStore(CacheStore):
    """A :class:`SharedMemoryStore` with a byte budget in front of a :class:`DiskStore`.

    Both stores are owned by the tiered store: closing it closes them (the disk cache stays on
    disk). The disk store should be created with ``drop_after_read=True``.

    A value is encoded once and may land in either tier, so it is pickled only if both tiers
    allow pickle (:attr:`allow_pickle`); the disk tier's default (``False``) therefore decides
    unless the disk store is created with ``allow_pickle=True``.

    Args:
        memory: The RAM tier; its ``budget_bytes`` is the RAM budget.
        disk: The disk tier.
    """

    def __init__(self, memory: SharedMemoryStore, disk: DiskStore) -> None:
        if memory.budget_bytes is None:
            raise ValueError("the memory tier of a TieredStore needs a budget_bytes budget")
        self.memory = memory
        self.disk = disk

    @property
    def allow_pickle(self) -> bool:
        """Pickle only if both tiers allow it: a value is encoded once, for either tier."""
        return self.memory.allow_pickle and self.disk.allow_pickle

    def _index_bound(self) -> int:
        return self.disk.num_samples

    def _get_many(self, indices: Sequence[int], generations: Sequence[int]) -> list[Any]:
        """RAM first, the rest from disk in one pass."""
        out = self.memory.get_many(indices, generations)
        missing = [k for k, value in enumerate(out) if value is MISS]
        if missing:
            found = self.disk.get_many(
                [indices[k] for k in missing], [generations[k] for k in missing]
            )
            for k, value in zip(missing, found, strict=True):
                out[k] = value
        return out

    def _put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        """RAM if it fits, else disk; never both."""
        if self.memory.put_encoded(index, generation, encoded):
            self.disk.evict(index)
            return True
        return self.disk.put_encoded(index, generation, encoded)

    def _prefetch(self, indices: Sequence[int], generations: Sequence[int]) -> None:
        """Read ahead the disk entries among these (RAM entries need nothing)."""
        self.disk.prefetch(indices, generations)

    def _on_epoch_start(self, epoch: int) -> None:
        """Both tiers' maintenance (the RAM tier recounts after damage; see each tier's)."""
        self.memory.on_epoch_start(epoch)
        self.disk.on_epoch_start(epoch)

    def _evict(self, index: int) -> None:
        self.memory.evict(index)
        self.disk.evict(index)

    def _contains(self, index: int, generation: int | None) -> bool:
        return self.memory.contains(index, generation) or self.disk.contains(index, generation)

    def _io_counters(self) -> IoCounters:
        """Both tiers."""
        return self.memory.io_counters() + self.disk.io_counters()

    def _stats(self) -> StoreStats:
        """Both tiers together; a put that RAM could not take but disk did is not 'rejected'."""
        ram, disk = self.memory.stats(), self.disk.stats()
        return StoreStats(
            entries=ram.entries + disk.entries,
            bytes_used=ram.bytes_used + disk.bytes_used,
            budget_bytes=(
                None
                if disk.budget_bytes is None or ram.budget_bytes is None
                else ram.budget_bytes + disk.budget_bytes
            ),
            puts=ram.puts + disk.puts,
            rejected_puts=disk.rejected_puts,
            failed_puts=ram.failed_puts + disk.failed_puts,
            invalid_reads=ram.invalid_reads + disk.invalid_reads,
        )

    def tier_bytes(self) -> tuple[int, int]:
        """``(RAM bytes, disk bytes)`` of the current entries."""
        return self.memory.stats().bytes_used, self.disk.stats().bytes_used

    def _handle(self) -> dict[str, str]:
        return {**self.memory.handle(), **self.disk.handle()}

    def _ram_bytes(self) -> int:
        return self.memory.ram_bytes()

    def _close(self) -> None:
        """Close both tiers: RAM entries are released, disk entries stay on disk."""
        try:
            self.memory.close()
        finally:
            self.disk.close()

    def __repr__(self) -> str:
        return f"TieredStore(memory={self.memory!r}, disk={self.disk!r})"


def _create(options: StoreOptions) -> TieredStore:
    assert options.directory is not None and options.num_samples is not None
    extra = dict(options.extra)
    disk_budget = extra.pop("disk_budget_bytes", None)
    if extra:
        raise TypeError(f"a 'tiered' cache store takes no {', '.join(sorted(extra))}")
    if options.budget_bytes is None:
        raise ValueError("a 'tiered' cache store needs budget_bytes, the RAM tier's budget")
    disk = DiskStore(
        options.directory,
        num_samples=options.num_samples,
        fingerprint=options.fingerprint,
        budget_bytes=disk_budget,
        drop_after_read=True,
        **options.pickle_keyword(),
    )
    try:
        return TieredStore(
            SharedMemoryStore(options.budget_bytes, **options.pickle_keyword()), disk
        )
    except BaseException:
        disk.close()
        raise


def _attach(options: StoreOptions, handle: Mapping[str, str]) -> TieredStore:
    assert options.directory is not None and options.num_samples is not None
    memory = handle_field(handle, "memory", "tiered")
    disk = DiskStore.attach(
        options.directory,
        num_samples=options.num_samples,
        fingerprint=options.fingerprint,
        run_id=bytes.fromhex(handle_field(handle, "disk_run_id", "tiered")),
        budget_bytes=options.extra.get("disk_budget_bytes"),
        drop_after_read=True,
        **options.pickle_keyword(),
    )
    try:
        return TieredStore(SharedMemoryStore.attach(memory), disk)
    except BaseException:
        disk.close()
        raise


register_store(
    StoreSpec(
        name="tiered",
        store_class=TieredStore,
        create=_create,
        attach=_attach,
        needs_directory=True,
        needs_num_samples=True,
        persistent=True,
        budget="the RAM tier's budget (required): the entries that fit stay in shared memory, "
        "the rest go to disk, which has no budget unless extra={'disk_budget_bytes': n}",
        summary="a fixed resident subset in shared memory in front of a disk store",
    )
)
