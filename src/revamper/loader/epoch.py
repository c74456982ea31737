"""One epoch's batch iterator: what ``iter(loader)`` returns.

Like a ``DataLoader`` iterator, it starts its epoch lazily: the epoch number is taken, and the
worker processes are started, when the first batch is asked for (or the statistics are). So an
iterator made and dropped before its first batch (Lightning makes one to check that the loader is
iterable) uses up no epoch and starts no worker, and ``loader.set_epoch(k)`` called between
``iter(loader)`` and the first ``next()`` applies to that iterator.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from revamper.loader.stats import BatchStats, EpochStats
from revamper.store.base import CacheStore

Delivery = tuple[Any, BatchStats, "str | None"]
"""What the DataLoader yields for one batch: the collated batch, its figures, a note to warn of."""


class EpochIterator(Iterator[Any]):
    """Iterates the batches of one epoch and accumulates its :class:`EpochStats`.

    Args:
        bind: Takes the loader's next epoch (advancing its counter) and returns that epoch's
            fresh statistics; called once, at the first batch.
        open_epoch: Starts delivering the bound epoch's batches (the workers start here).
        pending: How many batches the epoch would deliver if it started now.
        store: The cache (for the bytes it holds), or ``None``.
        warn: Called in this process with a worker's note (the loader warns once).
        release_on_error: Whether worker processes run the batches (see :meth:`__next__`).
    """

    def __init__(
        self,
        bind: Callable[[], EpochStats],
        open_epoch: Callable[[EpochStats], Iterator[Delivery]],
        pending: Callable[[], int],
        store: CacheStore | None,
        warn: Callable[[str], None],
        *,
        release_on_error: bool,
    ) -> None:
        self._bind = bind
        self._open = open_epoch
        self._pending = pending
        self._store = store
        self._warn = warn
        self._release_on_error = release_on_error
        self._stats: EpochStats | None = None
        self._batches: Iterator[Delivery] | None = None
        self._start = 0.0

    def __iter__(self) -> EpochIterator:
        return self

    def __len__(self) -> int:
        if self._stats is None:
            return self._pending()
        return self._stats.planned_batches - self._stats.batches

    @property
    def started(self) -> bool:
        """Whether the epoch is bound (its first batch, or its statistics, were asked for)."""
        return self._stats is not None

    @property
    def stats(self) -> EpochStats:
        """This epoch's figures so far.

        Asking for them before the first batch binds the epoch (as the first batch would), so
        that :attr:`EpochStats.epoch` is the epoch this iterator runs; no worker starts yet.
        """
        return self._bound()

    def _bound(self) -> EpochStats:
        if self._stats is None:
            self._stats = self._bind()
            self._start = time.perf_counter()
        return self._stats

    def __next__(self) -> Any:
        stats = self._bound()
        try:
            if self._batches is None:
                self._batches = self._open(stats)
            batch, batch_stats, note = next(self._batches)
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
        if note is not None:
            self._warn(note)
        stats.record_batch(batch_stats)
        stats.wall_seconds = time.perf_counter() - self._start
        if self._store is not None:
            stats.bytes_cached = self._store.stats().bytes_used
        return batch
