"""The one contract every cache store implements.

A store maps a sample index to the *partially augmented sample* computed for it, tagged with the
*generation*: the epoch in which the plan says that entry was computed. A reader always states the
generation it expects, so an entry left over from an earlier cycle, an interrupted epoch or another
run is never served: it reads as a miss and the caller recomputes it (an *unplanned miss*).

Stores are shared by processes. The instance the loader creates is the *owner*: it allocates the
resources and releases them on :meth:`CacheStore.close` or garbage collection. Pickling a store (as
torch's DataLoader does when it starts worker processes) yields an *attached* instance that reads
and writes the same entries and never releases them.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any, Final

from revamper.store import codec


class _Missing:
    """Type of :data:`MISS`, what :meth:`CacheStore.get` returns when there is no valid entry."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISS"

    def __reduce__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


MISS: Final = _Missing()
"""Sentinel returned by :meth:`CacheStore.get` for an absent, stale or invalid entry."""


@dataclasses.dataclass(frozen=True)
class StoreStats:
    """A snapshot of a store's shared state, the same whichever process asks.

    Attributes:
        entries: Entries currently held.
        bytes_used: Bytes currently held (encoded size, headers included).
        capacity_bytes: The byte budget, or ``None`` for no budget.
        puts: Entries written since the store was created.
        rejected_puts: Entries not cached because they did not fit in the budget.
        failed_puts: Entries not cached because writing them failed (e.g. a full file system).
        invalid_reads: Entries found but rejected on read as damaged or foreign (wrong index,
            length or codec version, failed checksum). An entry of another generation is an
            ordinary miss and is not counted here.
    """

    entries: int
    bytes_used: int
    capacity_bytes: int | None
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


class CacheStore(abc.ABC):
    """A cache of partially augmented samples shared by the processes of one loader.

    Implementations must be safe for concurrent use by several processes under the loader's access
    pattern: any process may read any index, and within an epoch an index is written with one
    generation only, usually by one process; but distributed training repeats a few samples to
    give every rank as many, and at epoch 0 (nothing cached yet) two ranks may then compute and
    write the same index and generation at the same time. Both values are valid; a store must
    keep one of them whole and count the entry once. :meth:`get` must return data that the
    caller may mutate in place without changing the cached entry.

    Pickle policy: a value the codec cannot encode natively is pickled only if
    :attr:`allow_pickle` is true, and a stored pickle is only ever unpickled by a store whose
    :attr:`allow_pickle` is true (otherwise it reads as a miss), since unpickling runs code and a
    cache is input that another user may have planted. Concrete stores take an ``allow_pickle``
    constructor keyword and store it in ``self._allow_pickle``; the class default is ``False``.
    """

    _allow_pickle: bool = False

    @property
    def allow_pickle(self) -> bool:
        """Whether values the codec cannot encode natively may be pickled (and unpickled)."""
        return self._allow_pickle

    @abc.abstractmethod
    def get(self, index: int, generation: int) -> Any:
        """Return the entry for ``index`` computed in ``generation``, or :data:`MISS`.

        Args:
            index: Sample index in the data set.
            generation: The generation the caller expects (the epoch the entry was computed in).

        Returns:
            A private copy of the cached value, or :data:`MISS` if there is no entry, the entry has
            another generation, or it fails validation.
        """

    def get_many(self, indices: Sequence[int], generations: Sequence[int]) -> list[Any]:
        """Return :meth:`get` for each ``(index, generation)`` pair; stores may batch the reads."""
        if len(indices) != len(generations):
            raise ValueError(
                f"get_many: got {len(indices)} indices but {len(generations)} generations"
            )
        return [self.get(i, g) for i, g in zip(indices, generations, strict=True)]

    def put(self, index: int, generation: int, value: Any) -> bool:
        """Cache ``value`` for ``index``, replacing any earlier entry for that index.

        Args:
            index: Sample index in the data set.
            generation: The generation to tag the entry with.
            value: The partially augmented sample (anything the codec accepts).

        Returns:
            ``True`` if the entry is now cached; ``False`` if it was not (it did not fit in the
            budget, or writing it failed). A ``False`` never loses correctness: readers miss.

        Raises:
            PickleNotAllowedError: If ``value`` holds something the codec cannot encode natively
                and :attr:`allow_pickle` is false.
        """
        return self.put_encoded(
            index, generation, codec.encode(value, allow_pickle=self.allow_pickle)
        )

    @abc.abstractmethod
    def put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        """:meth:`put` for a value already encoded (a tiered store encodes once for two tiers)."""

    def prefetch(self, indices: Sequence[int], generations: Sequence[int]) -> None:
        """Hint that these entries will be read soon (a disk store starts reading them ahead).

        Called in the main process as the plan hands out batches; the default does nothing.
        """
        return None

    def on_epoch_start(self, epoch: int) -> None:
        """Maintenance between epochs, in the process that owns the store (default: nothing)."""
        return None

    def io_counters(self) -> IoCounters:
        """Bytes this instance (in this process) has read and written, by tier."""
        return IoCounters()

    @abc.abstractmethod
    def evict(self, index: int) -> None:
        """Drop the entry for ``index`` if there is one."""

    @abc.abstractmethod
    def contains(self, index: int, generation: int | None = None) -> bool:
        """Whether an entry for ``index`` exists (with ``generation``, if given)."""

    @abc.abstractmethod
    def stats(self) -> StoreStats:
        """A snapshot of the store's shared counters."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what this instance holds; the owner also releases the shared entries.

        Closing twice is harmless. Using a closed store raises :class:`RuntimeError`.
        """

    def __enter__(self) -> CacheStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
