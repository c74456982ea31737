"""One epoch's batch iterator: what ``iter(loader)`` returns."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from typing import Any

from revamper.loader.stats import BatchStats, EpochStats
from revamper.store.base import CacheStore


class EpochIterator(Iterator[Any]):
    """Iterates the batches of one epoch and accumulates its :class:`EpochStats`.

    Args:
        batches: The DataLoader's iterator of ``(batch, stats)`` pairs.
        stats: This epoch's statistics, filled as batches arrive.
        store: The cache (for the bytes it holds), or ``None``.
        release_on_error: Whether worker processes run the batches (see :meth:`__next__`).
    """

    def __init__(
        self,
        batches: Iterator[tuple[Any, BatchStats]],
        stats: EpochStats,
        store: CacheStore | None,
        *,
        release_on_error: bool,
    ) -> None:
        self._batches = batches
        self._stats = stats
        self._store = store
        self._release_on_error = release_on_error
        self._start = time.perf_counter()

    def __iter__(self) -> EpochIterator:
        return self

    def __len__(self) -> int:
        return self._stats.planned_batches - self._stats.batches

    @property
    def stats(self) -> EpochStats:
        """This epoch's figures so far."""
        return self._stats

    def __next__(self) -> Any:
        try:
            batch, batch_stats = next(self._batches)
        except StopIteration:
            raise
        except BaseException as exc:
            if self._release_on_error:
                # torch re-raises a worker's exception from a frame that holds it, a cycle that
                # pins the whole worker pool until a (slow) cyclic garbage collection. Those
                # frames are torch internals (the worker's traceback is in the message), so
                # clearing their locals lets the pool go as soon as the exception does.
                traceback.clear_frames(exc.__traceback__)
            raise
        stats = self._stats
        stats.record_batch(batch_stats)
        stats.wall_seconds = time.perf_counter() - self._start
        if self._store is not None:
            stats.bytes_cached = self._store.stats().bytes_used
        return batch
