"""One epoch's batches: :class:`EpochSource` starts them, :class:`EpochIterator` delivers them.

Like a ``DataLoader`` iterator, it starts its epoch lazily: the epoch number is taken, and the
worker processes are started, when the first batch is asked for (or the statistics are). So an
iterator made and dropped before its first batch (Lightning makes one to check that the loader is
iterable) uses up no epoch and starts no worker, and ``loader.set_epoch(k)`` called between
``iter(loader)`` and the first ``next()`` applies to that iterator.
"""

from __future__ import annotations

import logging
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, cast

from torch.utils.data import DataLoader

from revamper.loader.cursor import EpochRun
from revamper.loader.sampler import PlanBatchSampler
from revamper.loader.shutdown import release_worker_frames
from revamper.loader.stats import BatchStats, EpochStats, LoaderStats
from revamper.loader.worker_start import start_epoch_workers
from revamper.plan import PlanConfig
from revamper.store.base import CacheStore

logger = logging.getLogger(__name__)

Delivery = tuple[Any, BatchStats, "str | None", tuple[int, int]]
"""What the DataLoader yields for one batch: the collated batch, its figures, a note to warn of,
and the ``(epoch, batch number)`` of its ticket."""

Bound = tuple[EpochStats, EpochRun]
"""A started epoch: its statistics, and its place on the cursor (advanced batch by batch)."""


def _starved(finished_at: float, waited: float) -> float | None:
    """Of a wait of ``waited`` seconds that just ended, the part before the batch left its worker.

    ``finished_at`` is the worker's ``time.monotonic()`` as it sent the batch; the monotonic
    clock is the machine's, shared by every process on it. ``None`` when unknown.
    """
    if finished_at <= 0:
        return None
    entered = time.monotonic() - waited
    return min(waited, max(0.0, finished_at - entered))


class EpochStart(NamedTuple):
    """What the loader fixed for an epoch just before it starts (see ``before_epoch``)."""

    reuse_factor: int
    """The r the epoch runs with."""
    predicted_rate: float | None
    """The production rate predicted for it (samples/s), or ``None``."""


class WeakMethod:
    """A method of ``owner`` called without holding ``owner``: no reference cycle through it.

    The loader holds its :class:`EpochSource`, which calls back into the loader; with a bound
    method that is a cycle, and the loader, its worker processes and its cache would outlive
    ``del loader`` until the cycle collector happens to run. Unlike ``weakref.WeakMethod``
    it copies and pickles along with its owner (``copy.deepcopy(loader)``, which Lightning's
    ``save_hyperparameters`` does to a loader passed to a module).

    Args:
        owner: The object whose method it calls.
        name: The method's name.
    """

    def __init__(self, owner: object, name: str) -> None:
        self._owner = weakref.ref(owner)
        self._name = name

    def __call__(self, *args: Any) -> Any:
        """Call the method with ``args`` (a ``RuntimeError`` once the owner is gone)."""
        owner = self._owner()
        if owner is None:
            raise RuntimeError("the RevamperLoader this belongs to is gone")
        return getattr(owner, self._name)(*args)

    def __reduce__(self) -> tuple[Any, ...]:
        return (WeakMethod, (self._owner(), self._name))


class EpochSource:
    """Starts a loader's epochs on its ``DataLoader``, in the main process.

    Args:
        dataloader: The DataLoader that executes the plan (``(batch, stats, note)`` batches).
        sampler: Its batch sampler (it owns the epoch cursor).
        stats: The loader's per-epoch statistics, where each started epoch gets its entry.
        store: The cache, or ``None``.
        before_epoch: Called with the number of the epoch about to start, before anything
            else (the loader fixes its r there, and updates the sampler's plan config): a
            :class:`WeakMethod` of the loader, which holds this source (see there).
        maintains_store: Whether this process tidies the store between epochs (its owner, or
            the leader of the ranks sharing it).
    """

    def __init__(
        self,
        dataloader: DataLoader[Any],
        sampler: PlanBatchSampler,
        stats: LoaderStats,
        store: CacheStore | None,
        before_epoch: Callable[[int], EpochStart],
        *,
        maintains_store: bool,
    ) -> None:
        self.dataloader: DataLoader[Any] | None = dataloader
        self._sampler = sampler
        self._stats = stats
        self.store = store
        self._before_epoch = before_epoch
        self._maintains_store = maintains_store
        self._warned = False
        self.opened = 0
        """Epochs opened on the DataLoader so far (see :class:`SharedBatches`)."""
        self.drained = 0
        """The latest ``opened`` whose epoch delivered all its batches."""
        self.broken = 0
        """The latest ``opened`` whose epoch saw an error from the DataLoader's iterator (its
        place in the tickets is then unknown: the next epoch resets it)."""
        self.epochs_started_ahead = 0
        """Epochs that took their batches from the iterator of the epoch before."""
        self._stream: Iterator[Delivery] | None = None  # the persistent workers' iterator
        self._ahead: tuple[int, PlanConfig] | None = None

    @property
    def overlaps(self) -> bool:
        """Whether this DataLoader can go on into the next epoch (persistent workers)."""
        dataloader = self.dataloader
        return (
            dataloader is not None
            and dataloader.persistent_workers
            and (dataloader.num_workers > 0)
        )

    def started_ahead(self, epoch: int, config: PlanConfig) -> None:
        """The running epoch's iterator has gone on into ``epoch``, planned with ``config``."""
        self._ahead = (epoch, config)

    def close(self) -> None:
        """Drop the DataLoader (and with it the persistent workers' iterator)."""
        try:
            self._finish_ahead()
        finally:
            self.dataloader = None
            self._stream = None
            self._ahead = None

    def _finish_ahead(self) -> None:
        """Take in the batches of an epoch started ahead that will not run, before a close.

        torch stops its workers whatever they are doing. After a training loop's last epoch
        the workers are building the first batches of an epoch that will never run (at most
        ``prefetch_factor * num_workers``), so the tickets stop here and the batches out are
        received: the workers are idle when torch stops them, as after an epoch without
        overlap. (A loader dropped without :meth:`close` leaves that to torch.)
        """
        stream, ahead, going_on = self._stream, self._ahead, self._sampler.ahead
        self._ahead = None
        finished = self.drained == self.opened and self.broken != self.opened
        if stream is None or ahead is None or going_on is None or not finished:
            return
        self._sampler.halted = True
        for _ in range(going_on.in_flight):
            try:
                next(stream)
            except StopIteration:  # nothing more out
                return
            except Exception:  # a failing sample of an epoch that will not run: nobody's concern
                logger.debug("closing: a batch started ahead failed", exc_info=True)
                return

    def _check_open(self) -> DataLoader[Any]:
        if self.dataloader is None:
            raise RuntimeError("this RevamperLoader is closed")
        return self.dataloader

    def iterator(self, owner: object = None) -> EpochIterator:
        """A new, unstarted iterator of the next epoch, keeping ``owner`` (the loader) alive."""
        dataloader = self._check_open()
        return EpochIterator(
            self.bind,
            self.open,
            self.pending,
            self.store,
            self.warn_once,
            release_on_error=dataloader.num_workers > 0,
            owner=owner,
        )

    def pending(self) -> int:
        """Batches the next epoch delivers (fewer than an epoch's when it resumes)."""
        return self._sampler.config.num_batches - self._sampler.cursor.next_batch

    def bind(self) -> Bound:
        """Take the next epoch (the cursor moves on) and start its statistics."""
        self._check_open()
        cursor = self._sampler.cursor
        start = self._before_epoch(cursor.next_epoch)
        if self.store is not None and self._maintains_store:
            self.store.on_epoch_start(cursor.next_epoch)
        run = cursor.begin()
        num_batches = self._sampler.config.num_batches
        stats = self._stats._start(run.epoch, num_batches - run.first_batch)
        stats.first_batch = run.first_batch
        stats.reuse_factor, stats.predicted_rate = start
        return stats, run

    def open(self, stats: EpochStats, run: EpochRun) -> Iterator[Delivery]:
        """Start delivering the batches of the bound epoch ``stats.epoch`` (workers start here)."""
        dataloader = self._check_open()
        if stats.planned_batches == 0:
            return iter(())  # nothing left of the epoch: no worker needs to start
        ahead, self._ahead = self._ahead, None
        if (
            self._stream is not None
            and ahead == (run.epoch, self._sampler.config)
            and run.first_batch == 0
            and self.drained == self.opened
            and self.broken != self.opened
        ):
            # The last epoch's iterator went on into this one (its first batches are built or
            # being built): take its batches from there.
            batches = self._stream
            self.epochs_started_ahead += 1
        else:
            # The sampler is shared by every iterator: point it at this epoch just before the
            # DataLoader's iterator reads it (its creation computes the epoch's plan). With
            # persistent workers this resets torch's one iterator, dropping whatever a
            # previous epoch's iterator had started of a next epoch.
            self._sampler.start(run)
            log = getattr(dataloader.worker_init_fn, "start_log", None)
            batches = cast(Iterator[Delivery], start_epoch_workers(dataloader, log))
        self.opened += 1
        if self.overlaps:
            self._stream = batches
            return SharedBatches(batches, self, self.opened, run.epoch, stats.planned_batches)
        return batches

    def warn_once(self, note: str) -> None:
        """Warn of what a worker noted about the samples (a field the transforms do not see)."""
        if not self._warned:
            self._warned = True
            warnings.warn(note, UserWarning, stacklevel=3)


class SharedBatches(Iterator[Delivery]):
    """The DataLoader's iterator as one epoch sees it, refused once a later epoch took it over.

    With persistent workers ``iter(dataloader)`` resets and returns the DataLoader's one
    iterator (torch keeps a single one), so the iterator of an epoch still running would go on
    yielding the next epoch's batches and count them, and the resume position, as its own.

    An epoch that delivered all its batches stops (``StopIteration``) without touching the
    shared iterator again, which may be a newer epoch's by then, or may already go on into the
    next epoch (see :mod:`revamper.loader.epoch_overlap`): then the next epoch takes its
    batches from it instead of resetting it.

    Every batch says which epoch's ticket it was built for. After an error from the iterator
    (a failing sample: torch has moved past that batch; a timeout: it has not) the count of
    batches left may be one too many, so a batch of a later epoch then ends this one, and the
    next epoch resets the iterator. A batch of another epoch without such an error is a bug,
    and raises.

    Args:
        batches: The DataLoader's iterator, as opened for this epoch.
        source: The source that opened it.
        opened: ``source.opened`` when it did.
        epoch: The epoch.
        planned: Batches the epoch delivers.
    """

    def __init__(
        self,
        batches: Iterator[Delivery],
        source: EpochSource,
        opened: int,
        epoch: int,
        planned: int,
    ) -> None:
        self._batches = batches
        self._source = source
        self._opened = opened
        self._epoch = epoch
        self._left = planned

    def __next__(self) -> Delivery:
        if self._left <= 0:
            raise StopIteration
        if self._source.opened != self._opened:
            raise RuntimeError(
                "another iterator of this RevamperLoader has started an epoch since this one "
                "did; with persistent_workers=True the epochs share the DataLoader's one "
                "iterator (as in torch), so this one cannot go on. Finish or drop an epoch's "
                "iterator before starting the next."
            )
        try:
            batch = next(self._batches)
        except StopIteration:
            self._left = 0
            raise
        except BaseException:
            self._source.broken = self._opened
            raise
        epoch = batch[3][0]
        if epoch != self._epoch:
            if epoch > self._epoch and self._source.broken == self._opened:
                self._left = 0  # the batch that failed was one of ours: the epoch is over
                raise StopIteration
            self._source.broken = self._opened
            raise RuntimeError(
                f"a batch of epoch {epoch} reached the iterator of epoch {self._epoch}: this "
                "is a bug in revamper; please report it (the next epoch starts afresh)"
            )
        self._left -= 1
        if self._left == 0:
            self._source.drained = self._opened
        return batch


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
        owner: Kept alive as long as the iterator (``next(iter(RevamperLoader(...)))`` needs
            its loader, which holds its epochs' source only weakly).
    """

    def __init__(
        self,
        bind: Callable[[], Bound],
        open_epoch: Callable[[EpochStats, EpochRun], Iterator[Delivery]],
        pending: Callable[[], int],
        store: CacheStore | None,
        warn: Callable[[str], None],
        *,
        release_on_error: bool,
        owner: object = None,
    ) -> None:
        self._owner = owner
        self._bind = bind
        self._open = open_epoch
        self._pending = pending
        self._store = store
        self._warn = warn
        self._release_on_error = release_on_error
        self._stats: EpochStats | None = None
        self._run: EpochRun | None = None
        self._batches: Iterator[Delivery] | None = None
        self._start = 0.0
        self._returned: float | None = None  # when the last batch left __next__

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
            self._stats, self._run = self._bind()
            self._start = time.perf_counter()
        return self._stats

    def __next__(self) -> Any:
        """The next batch; the time spent here is the consumer's wait, between calls its step."""
        entered = time.perf_counter()
        stats = self._bound()
        if self._returned is not None:
            stats.record_step(entered - self._returned)
            self._returned = None
        try:
            if self._batches is None:
                assert self._run is not None  # bound with the stats
                self._start = entered  # the clock starts here, if stats bound the epoch earlier
                self._batches = self._open(stats, self._run)
            batch, batch_stats, note, (epoch, _) = next(self._batches)
        except StopIteration:
            raise
        except BaseException as exc:
            if self._release_on_error:
                release_worker_frames(exc)
            raise
        if epoch != stats.epoch:
            raise RuntimeError(
                f"a batch of epoch {epoch} reached the iterator of epoch {stats.epoch}: this "
                "is a bug in revamper; please report it"
            )
        if note is not None:
            self._warn(note)
        stats.record_batch(batch_stats)
        if self._run is not None:
            self._run.advance()  # the cursor's position: this batch is delivered
        if self._store is not None:
            stats.bytes_cached = self._store.stats().bytes_used
        self._returned = time.perf_counter()
        stats.wall_seconds = self._returned - self._start
        stats.record_wait(
            self._returned - entered,
            first=stats.batches == 1,
            starved=_starved(batch_stats.finished_at, self._returned - entered),
        )
        return batch
