"""RevamperLoader: data refurbishing as a drop-in replacement for torch's ``DataLoader``."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

from revamper.distributed import CacheScope, DistributedSetup, resolve_setup
from revamper.loader.arguments import check_arguments
from revamper.loader.batch_execution import RefurbishingDataset
from revamper.loader.config import LoaderConfig
from revamper.loader.dataloader_attributes import DataLoaderAttributes, DataLoaderSettings
from revamper.loader.epoch import EpochIterator, EpochSource, EpochStart, WeakMethod
from revamper.loader.layout import Transform, check_transform_keys
from revamper.loader.pipeline import choose_pipeline
from revamper.loader.reuse_policy import ReusePolicy, ReuseSpec
from revamper.loader.sampler import NextEpoch, PlanBatchSampler
from revamper.loader.seed_policy import SeedPolicy
from revamper.loader.shutdown import close_loader
from revamper.loader.state import IDENTITY_KEYS, check_reuse_kind, check_state, make_state
from revamper.loader.stats import LoaderStats
from revamper.loader.store_setup import CacheKind, is_persistent, make_store, persists
from revamper.loader.workers import build_dataloader
from revamper.plan import PlanConfig
from revamper.plan.limits import MAX_EPOCH, check_int
from revamper.store.base import CacheStore

logger = logging.getLogger(__name__)


def _outlives_run(cache: object) -> bool:
    """Whether the cache ``cache`` asks for keeps its entries after this run."""
    return is_persistent(cache) if isinstance(cache, CacheStore) else persists(cache)


class RevamperLoader(DataLoaderAttributes):
    """A DataLoader that caches partially augmented samples and reuses each ``reuse_factor`` times.

    Each sample's item goes through ``partial_transform`` once, is cached, and serves the next
    ``reuse_factor - 1`` epochs from the cache; ``final_transform`` runs on every use with fresh
    randomness. Balanced eviction recomputes one ``1/reuse_factor`` share of the data set every
    epoch, and the cache-aware shuffle gives every batch the same share of recomputed samples,
    so every epoch after the first costs the same. Epoch 0 computes everything.

    Each iteration over the loader is one epoch (the counter lives in this process;
    :meth:`set_epoch` sets it). As with ``DataLoader``, the epoch starts at the iterator's first
    batch: an iterator made and dropped before it (a framework checking that the loader is
    iterable) uses up no epoch. Every sample appears exactly once per epoch, in a shuffled order
    when ``shuffle``.

    **Distributed training.** When ``torch.distributed`` is initialised (or ``rank`` and
    ``world_size`` are given), each rank gets its share of every epoch, like
    ``DistributedSampler``: ceil(N / world_size) samples per rank (a few samples repeated so
    that every rank gets as many), or floor(N / world_size) with ``drop_last`` (a few left out);
    every rank runs ``len(loader)`` batches. The ranks of a machine share one cache
    (``cache_scope="machine"``): its first rank creates it, the others attach to it. At
    construction the ranks check, in one all-gather, that they agree on their arguments; so
    every rank must construct the loader (it is a collective). See :mod:`revamper.distributed`.

    Args:
        dataset: A map-style data set (``__getitem__`` and ``__len__``). Its items are a single
            input, a tuple/list ``(input, target, ...)``, or a mapping (a dict, e.g. a Hugging
            Face ``datasets`` row; name its input fields with ``transform_keys``).
        batch_size: Samples per batch.
        shuffle: Shuffle every epoch (with the cache-aware shuffle). ``False`` keeps sequential
            order, and batches are then not balanced in their share of recomputed samples.
        partial_transform: The expensive first part of the augmentation; its output is cached.
            ``None`` caches the item as loaded.
        final_transform: The cheap last part, re-run with fresh randomness on every use.
        reuse_factor: Uses of each cached entry before it is recomputed (``r``). 1 caches nothing
            and behaves like a plain DataLoader. ``"auto"``: the loader chooses every epoch's r
            (from epoch 1 on) from what the epoch before measured: the smallest r at which the
            consumer does not wait for data, 1 when the loader keeps up without reuse, at most
            ``max_reuse_factor`` (each change is logged with its reason, and
            ``loader.stats[e].reuse_factor`` says what epoch e ran with). A
            :class:`~revamper.loader.reuse_control.ReuseControl` is ``"auto"`` with its own
            settings. See :mod:`revamper.loader.reuse_control`.
        max_reuse_factor: With ``"auto"``: the largest r it may choose (default 4, the top of
            the paper's range); every entry that some r up to it could read is cached. With an
            int r: ``None`` (the default: r).
        cache_bytes: Memory budget for the cache. With the memory cache, entries that do not fit
            are not cached and are recomputed when used (counted as unplanned misses); with the
            disk cache, a fixed subset of entries that fits stays in RAM and the rest is read
            from disk. ``None`` means no budget.
        cache: ``"memory"`` (a shared-memory store owned by this loader), ``"disk"`` (a
            persistent store in ``cache_dir``, reused by a later run with the same data, seed,
            reuse factor and partial transform), another kind registered in
            :mod:`revamper.store.registry` (``store_kinds()``), or a
            :class:`~revamper.store.CacheStore` you created and close yourself.
        cache_dir: With ``cache="disk"``: an existing, writable directory on local disk.
        cache_key: With ``cache="disk"``: names what the partial transform computes, for when
            its description is not enough to tell caches apart (default: the transform's
            ``repr``, or the module and name of a function).
        allow_pickle: Whether a value the cache's codec cannot encode exactly may be pickled
            into the cache, and a pickle read back from it (the codec encodes PIL images, numpy
            arrays, tensors and ``tv_tensors``, bytes, scalars, strings, and tuples, lists and
            dicts of them). Unpickling runs code, and a cache directory is input that another
            user may have written to; so with ``False`` such a value is a
            :class:`~revamper.SampleError` at stage ``cache_write`` naming its type, and a
            pickle found in the cache is a miss. ``None`` (the default): each store's own
            default, ``True`` for the memory cache (a private, owner-checked directory that
            lives only as long as the run), ``False`` for a disk cache (and so for a tiered
            one). Pass ``True`` to cache such values on disk, in a directory only you can write
            to. With your own ``cache`` store, set it on the store.
        rank: This rank under distributed training; with ``world_size``. ``None`` (both): from
            the initialised ``torch.distributed`` process group, or not distributed. Pass
            ``rank=0, world_size=1`` for a loader that one rank uses alone (no collective).
        world_size: The number of ranks; see ``rank``.
        local_world_size: Ranks per machine, numbered contiguously (global rank = machine *
            local_world_size + local rank, as torchrun numbers them). ``None``: torchrun's
            ``LOCAL_WORLD_SIZE``, else 1.
        cache_scope: ``"machine"``: the ranks of a machine share one cache (one copy of each
            entry in memory, and each machine shuffles its part of the data set across its
            ranks); ``cache_bytes`` is then the machine's budget. ``"rank"``: a private cache per
            rank (the paper's set-up), each with its own ``cache_bytes``; a disk cache then lives
            in ``cache_dir/rank-<rank>``. A machine-wide cache needs the process group (or your
            own shared ``cache`` store).
        whole_sample: Apply the transforms to the whole item instead of its first element
            (for torchvision v2 transforms on samples with boxes or masks, or dict items).
        transform_keys: For mapping items: the key (a str) or keys (a sequence of str) of the
            fields the transforms apply to, each field on its own (e.g. ``"image"``, or
            ``("image", "depth")``); the other fields pass through and are cached with them. A
            named key missing from an item, or an item that is not a mapping, is a
            :class:`~revamper.SampleError` naming the sample. Without it, the transforms apply
            to an item, or to the first element of a tuple/list; a mapping item then needs
            ``transform_keys`` or ``whole_sample`` unless there is no transform (it is cached
            and collated as it is, like ``DataLoader``'s dicts).
        balance_misses: The cache-aware shuffle; ``False`` gives a plain shuffle (for comparison).
        seed: Seed of the sample order and the eviction plan; the same seed reproduces both
            exactly. ``None`` draws one from ``generator`` or torch's global RNG (rank 0's,
            under distributed training; without a process group a seed is then required),
            except that with ``cache="disk"`` the seed of a matching cache already in
            ``cache_dir`` is reused, so that a restart keeps the cache.
        num_workers: As DataLoader's.
        collate_fn: As DataLoader's (default: ``torch.utils.data.default_collate``).
        pin_memory: As DataLoader's.
        drop_last: As DataLoader's. The dropped samples are chosen among those whose cache entry
            is not needed (see :mod:`revamper.plan`).
        timeout: As DataLoader's.
        worker_init_fn: As DataLoader's: in it (and in the data set's code),
            ``torch.utils.data.get_worker_info().dataset`` is the worker's copy of ``dataset``.
        multiprocessing_context: As DataLoader's.
        generator: As DataLoader's (seeds the workers' RNGs); with ``seed`` and no generator,
            one seeded with ``seed`` is used (with a seed derived from ``seed`` and the rank,
            under distributed training, so that ranks draw different augmentations).
        prefetch_factor: As DataLoader's.
        persistent_workers: As DataLoader's.
        pin_memory_device: As DataLoader's.
        prefetch_next_epoch: With persistent workers: once an epoch's last batches are
            dispatched, go on with the next epoch's, so that the workers build its first
            batches while the consumer takes the last ones (its first batch is then ready,
            where a DataLoader's consumer waits while one worker builds it). Only where that
            cannot change what any batch reads: the next epoch's first batches must not touch a
            cache entry that a batch still in flight writes, or write one it reads, so this
            happens with r = 1 (nothing cached) and around epochs at r = 1, rarely otherwise,
            and never with a cache other ranks share or your own store. The next epoch is the
            one the loader would start then (with ``"auto"``, its r is chosen then, from at
            least half of the running epoch); a :meth:`set_epoch` or :meth:`load_state_dict` to
            another drops that work, and :meth:`close` waits for what is out. ``False``: every
            epoch starts at its first batch, as in torch.

    Raises:
        TypeError: For an argument of the wrong type (named in the message).
        ValueError: For an argument out of range, or an empty data set.
        DistributedSetupError: On every rank, if the ranks disagree on an argument (the message
            names it and the ranks), or a rank failed to create or attach the shared cache.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        *,
        partial_transform: Transform | None = None,
        final_transform: Transform | None = None,
        reuse_factor: ReuseSpec = 3,
        max_reuse_factor: int | None = None,
        cache_bytes: int | None = None,
        cache: CacheKind | CacheStore = "memory",
        cache_dir: str | os.PathLike[str] | None = None,
        cache_key: str | None = None,
        allow_pickle: bool | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        local_world_size: int | None = None,
        cache_scope: CacheScope = "machine",
        whole_sample: bool = False,
        transform_keys: str | Sequence[str] | None = None,
        balance_misses: bool = True,
        seed: int | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: torch.Generator | None = None,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        prefetch_next_epoch: bool = True,
    ) -> None:
        num_samples = check_arguments(
            dataset,
            batch_size=batch_size,
            num_workers=num_workers,
            cache_bytes=cache_bytes,
            seed=seed,
            partial_transform=partial_transform,
            final_transform=final_transform,
            collate_fn=collate_fn,
            worker_init_fn=worker_init_fn,
            generator=generator,
            allow_pickle=allow_pickle,
            cache_key=cache_key,
        )
        keys = check_transform_keys(transform_keys, bool(whole_sample))
        setup = resolve_setup(rank, world_size, local_world_size, cache_scope)
        self._reuse = ReusePolicy(
            reuse_factor, max_reuse_factor, setup=setup, num_workers=num_workers
        )
        identity = LoaderConfig(
            num_samples=num_samples,
            reuse_factor=self._reuse.initial,
            batch_size=batch_size,
            seed=seed,
            drop_last=bool(drop_last),
            shuffle=bool(shuffle),
            balance_misses=bool(balance_misses),
            setup=setup,
            whole_sample=bool(whole_sample),
            transform_keys=keys,
            partial=LoaderConfig.partial_identity(
                partial_transform, cache_key, persistent=_outlives_run(cache)
            ),
            cache=cache if isinstance(cache, str) else type(cache).__name__,
            cache_bytes=cache_bytes,
            cache_dir=cache_dir,
            allow_pickle=allow_pickle,
            max_reuse_factor=self._reuse.max_reuse_factor,
        )
        self._seeds = SeedPolicy(generator, given=seed is not None)
        choice = self._seeds.settle(identity, cache)
        self._identity = identity.with_seed(choice.seed)
        # Before the store: a layout the plan rejects must not leave a cache behind.
        self._config = self._identity.plan_config()
        self._store, self._owns_store = make_store(cache, self._identity)
        self._reuse.connect()  # with "auto" under torch.distributed: the ranks' exchange
        self._dataset = dataset
        self._stats = LoaderStats()
        self._sampler = PlanBatchSampler(self._config, self._store)
        self._epochs = self._connect(
            RefurbishingDataset(
                dataset, self._store, partial_transform, final_transform, bool(whole_sample), keys
            ),
            collate_fn=collate_fn,
            worker_init_fn=worker_init_fn,
            num_workers=num_workers,
            pin_memory=pin_memory,
            timeout=timeout,
            multiprocessing_context=multiprocessing_context,
            generator=choice.generator,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers,
            pin_memory_device=pin_memory_device,
        )
        dataloader = self._epochs.dataloader
        assert dataloader is not None  # just built
        # The overlap check sees this loader's tickets only: not with a cache that other
        # ranks' workers (or the user's other code) write to at the same time.
        private = self._store is None or (self._owns_store and setup.group_size == 1)
        if prefetch_next_epoch and private and self._epochs.overlaps:
            self._sampler.ahead = NextEpoch(
                WeakMethod(self, "_propose_next_epoch"),
                WeakMethod(self, "_accept_next_epoch"),
                in_flight=(dataloader.prefetch_factor or 0) * dataloader.num_workers,
            )
        self._settings = DataLoaderSettings.of(
            dataloader,
            batch_size=batch_size,
            drop_last=bool(drop_last),
            collate_fn=collate_fn or default_collate,
        )

    def _connect(self, executor: RefurbishingDataset, **options: Any) -> EpochSource:
        """The DataLoader that executes the plan (``options``: its own), as the epochs' source."""
        return EpochSource(
            build_dataloader(executor, self._sampler, **options),
            self._sampler,
            self._stats,
            self._store,
            WeakMethod(self, "_before_epoch"),
            # Between epochs the store's owner tidies it (a disk cache's dead segments); in a
            # shared cache only the leader does, so that the ranks do not repeat the work.
            maintains_store=not self._owns_store or self._identity.setup.is_leader,
        )

    def _before_epoch(self, epoch: int) -> EpochStart:
        """Fix ``epoch``'s r before it is planned (with "auto", choose it); return it.

        Under distributed training with ``"auto"``, a collective when the epoch is new.
        """
        if (now := len(self._dataset)) != self._identity.num_samples:
            raise RuntimeError(
                f"the data set has {now} samples now, {self._identity.num_samples} when this "
                "RevamperLoader was built (its plan and cache are made for that many): build a "
                "new loader after changing the data set"
            )
        self._reuse.prepare(epoch, self._stats.last)
        schedule = self._reuse.schedule
        if schedule != self._identity.reuse_schedule:
            self._set_identity(dataclasses.replace(self._identity, reuse_schedule=schedule))
        return EpochStart(self._config.reuse_factor_at(epoch), self._reuse.predicted_rate(epoch))

    def _propose_next_epoch(self) -> tuple[int, PlanConfig] | None:
        """The epoch that would start next, and its plan config, if both are known already.

        Called by the sampler as the running epoch's last batches are dispatched (see
        :mod:`revamper.loader.epoch_overlap`); with ``"auto"`` the r is what the epoch would be
        given now, from the measurements so far. Changes nothing.
        """
        cursor = self._sampler.cursor
        if cursor.next_batch or len(self._dataset) != self._identity.num_samples:
            return None
        schedule = self._reuse.peek(cursor.next_epoch, self._stats.last, self._ahead_at())
        if schedule is None:
            return None
        if schedule == self._identity.reuse_schedule:
            return cursor.next_epoch, self._config
        identity = dataclasses.replace(self._identity, reuse_schedule=schedule)
        return cursor.next_epoch, identity.plan_config()

    def _ahead_at(self) -> range:
        """The r at which the next epoch, chosen now, starts ahead (its first batch built).

        An epoch at r = 1 touches no cache entry, so it overlaps the running one at any r; and
        after a running epoch at r = 1 (epoch 1 on), which touches none either, so does every r.
        """
        running = self._sampler.cursor.current
        if running is None or running.epoch == 0 or self._config.reuse_factor_at(running.epoch) > 1:
            return range(1, 2)
        return range(1, self._reuse.bound + 1)

    def _accept_next_epoch(self, epoch: int, config: PlanConfig) -> bool:
        """Make the proposed ``epoch`` the one started ahead; ``False`` if it no longer holds.

        With ``"auto"`` this is where the epoch's r is chosen (and logged).
        """
        cursor = self._sampler.cursor
        if (cursor.next_epoch, cursor.next_batch) != (epoch, 0):
            return False
        if self._reuse.auto:
            self._reuse.prepare(epoch, self._stats.last, self._ahead_at())
            schedule = self._reuse.schedule
            if schedule != self._identity.reuse_schedule:
                self._set_identity(dataclasses.replace(self._identity, reuse_schedule=schedule))
        if self._config != config:
            return False
        self._epochs.started_ahead(epoch, config)
        return True

    def _set_identity(self, identity: LoaderConfig) -> None:
        """Make ``identity`` the run's (its plan config is the sampler's from the next epoch)."""
        self._identity = identity
        self._config = self._sampler.config = identity.plan_config()

    @classmethod
    def from_pipeline(
        cls,
        dataset: Any,
        transforms: Any,
        *,
        cache_bytes: int | None = None,
        min_diversity: float = 0.9,
        **loader_kwargs: Any,
    ) -> RevamperLoader:
        """Profile ``transforms``, choose the split and reuse factor, and build the loader.

        The choice is :func:`revamper.tune.recommend`'s: the fastest configuration whose
        predicted diversity stays at or above ``min_diversity`` of standard training's and whose
        cache fits in ``cache_bytes``. Under ``torch.distributed`` rank 0 measures and chooses
        and the other ranks take its choice (a collective: every rank must call this), so that
        all ranks agree.

        Args:
            dataset: As for the constructor.
            transforms: The full augmentation pipeline: a list of callables or a torchvision
                ``Compose`` (one opaque callable cannot be split).
            cache_bytes: Memory budget for the cache (also the constraint of the choice).
            min_diversity: Lowest acceptable diversity, as a fraction of standard training's.
            **loader_kwargs: Any other constructor argument except the transforms and
                ``reuse_factor``.
        """
        partial, final, reuse_factor = choose_pipeline(
            dataset, transforms, cache_bytes, min_diversity, loader_kwargs
        )
        return cls(
            dataset,
            partial_transform=partial,
            final_transform=final,
            reuse_factor=reuse_factor,
            cache_bytes=cache_bytes,
            **loader_kwargs,
        )

    # -- the DataLoader-like surface ------------------------------------------------------------
    def __iter__(self) -> EpochIterator:
        """Return the iterator of the next epoch (see :meth:`set_epoch`).

        The epoch starts at the iterator's first batch, not here: an iterator dropped before it
        yields a batch uses up no epoch and starts no worker process, and a :meth:`set_epoch`
        between ``iter()`` and the first ``next()`` applies to it.
        """
        return self._epochs.iterator(self)

    def __len__(self) -> int:
        """Batches per epoch (on this rank: every rank runs as many)."""
        return self._config.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Make the next epoch to start (at an iterator's first batch) ``epoch``, then ``epoch+1``.

        After :meth:`load_state_dict` restored a position in an epoch, setting that same epoch
        keeps the position (the usual loop calls ``set_epoch`` at the start of every epoch,
        resumed or not): the epoch yields the batches left, none if the state was taken after its
        last batch. Any other epoch starts at its first batch.
        """
        epoch = check_int("epoch", epoch, 0, MAX_EPOCH)
        self._reuse.check_epoch(epoch)
        self._sampler.cursor.set_epoch(epoch, len(self))

    def state_dict(self) -> dict[str, Any]:
        """Where training is, for :meth:`load_state_dict` to resume from (mid-epoch included).

        Once an epoch has started, the state points at its next batch: the batches already
        delivered are done, whatever the workers prefetched is not. After the epoch's last batch
        it says so (that epoch, ``batch == len(loader)``), as torchdata's ``StatefulDataLoader``
        does: a loader resumed from it first yields the zero batches left of that epoch, then
        the next epoch, so a loop over the epochs from ``state["epoch"]`` continues exactly as
        the uninterrupted run. Before any epoch started, or after :meth:`set_epoch`, it points
        at the start of the next epoch. The plan is a pure function of the loader's arguments,
        so the state is small: the position plus what must match on resume.
        """
        epoch, batch = self._sampler.cursor.position()
        state = make_state(self._identity.state_identity(IDENTITY_KEYS), epoch, batch)
        if self._reuse.auto:
            state["reuse_schedule"] = self._reuse.state()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next epoch run yields the rest of the state's epoch.

        The remaining batches are exactly those of the uninterrupted run (same samples, same
        miss plan). Cached entries that did not survive (a memory cache in a new process) are
        recomputed as unplanned misses; a disk cache keeps them.

        Every field is checked (type and range) before anything is used, and a refused state
        leaves the loader as it was.

        Raises:
            TypeError: If the state is not a mapping, or a field has the wrong type (the message
                names the key and the type allowed).
            ValueError: If the state comes from a loader with other data set length, reuse
                factor, batch size, seed, ``drop_last``, ``shuffle``, ``balance_misses`` or rank
                layout (world size, rank, ranks per cache), has unknown or missing keys, or a
                field out of range (named with its range, e.g. ``state['batch']`` beyond the
                epoch's length). Under distributed training each rank saves and loads its own
                state.

        A loader built with ``seed=None`` takes the state's seed (its own was drawn at random) if
        it has not run an epoch yet, except with a disk cache, whose entries belong to the seed
        it was made with: a disk cache reuses its seed by itself when ``seed`` is ``None``, and
        if the cache is gone (a new machine), pass ``seed=state["seed"]``. Under distributed
        training every rank must load its own state (the ranks do not check each other here).
        """
        point = check_state(
            state,
            self._identity.state_identity(IDENTITY_KEYS),
            len(self),
            lambda _seed: self._seeds.may_adopt(epochs_run=len(self._stats), store=self._store),
        )
        self._reuse.check_epoch(point.epoch)
        identity = self._identity
        if point.adopt_seed is not None:
            identity = identity.with_seed(point.adopt_seed)
        check_reuse_kind(point, auto=self._reuse.auto, reuse_factor=self._reuse.initial)
        if self._reuse.auto:
            identity = dataclasses.replace(identity, reuse_schedule=point.reuse_schedule)
            identity.plan_config()  # a schedule the plan rejects is refused here, changing nothing
        if point.adopt_seed is not None:
            logger.info(
                "load_state_dict: seed=None, so the loader takes the state's seed %d",
                point.adopt_seed,
            )
        self._reuse.load(point.reuse_schedule)
        self._set_identity(identity)
        self._sampler.cursor.seek(point.epoch, point.batch)

    @property
    def epoch(self) -> int:
        """The epoch the next iterator to start (at its first batch) will run."""
        return self._sampler.cursor.next_epoch

    @property
    def stats(self) -> LoaderStats:
        """Per-epoch counts and CPU times (see :class:`~revamper.loader.stats.EpochStats`)."""
        return self._stats

    @property
    def store(self) -> CacheStore | None:
        """The cache store, or ``None`` when nothing is cached (``reuse_factor`` 1)."""
        return self._store

    @property
    def dataset(self) -> Any:
        """The data set the loader reads."""
        return self._dataset

    @property
    def reuse_schedule(self) -> tuple[int, ...]:
        """r_1, r_2, ...: the reuse factors of epochs 1, 2, ... chosen so far (``"auto"``).

        Empty with a fixed ``reuse_factor`` (every epoch runs at it). Epoch 0 computes every
        sample; an epoch after the last value keeps it until the next choice.
        """
        return self._reuse.schedule

    @property
    def plan_config(self) -> PlanConfig:
        """The parameters of the epoch plans (seed included)."""
        return self._config

    @property
    def distributed(self) -> DistributedSetup:
        """This rank's place in distributed training and its cache group (see ``cache_scope``)."""
        return self._identity.setup

    @property
    def seed(self) -> int:
        """The seed of the sample order and eviction plan."""
        return self._identity.settled_seed

    def close(self) -> None:
        """Stop the worker processes and release the cache (if this loader created it).

        With a machine-wide cache, the machine's first rank owns the cache and removes it here;
        the other ranks only let go of it. Close every rank's loader when training is done (a
        rank still reading after its machine's first rank closed recomputes what it needs).
        """
        close_loader(self._epochs, self._store, owns_store=self._owns_store)

    def __enter__(self) -> RevamperLoader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self._config
        return (
            f"RevamperLoader(num_samples={c.num_samples}, batch_size={c.batch_size}, "
            f"reuse_factor={self._reuse.describe()}, shuffle={c.shuffle}, "
            f"next_epoch={self.epoch}, "
            f"store={self._store!r}, pid={os.getpid()})"
        )
