"""RevamperLoader: data refurbishing as a drop-in replacement for torch's ``DataLoader``."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Literal, cast

import torch
from torch.utils.data import DataLoader, IterableDataset, default_collate

from revamper.loader.executor import CollateWithStats, RefurbishingDataset, Transform
from revamper.loader.sampler import PlanBatchSampler
from revamper.loader.stats import BatchStats, EpochStats, LoaderStats
from revamper.plan import PlanConfig
from revamper.store.base import CacheStore
from revamper.store.memory import SharedMemoryStore

CacheKind = Literal["memory"]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_transform(name: str, value: object) -> Transform | None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__} {value!r}")
    return value


def _draw_seed(generator: torch.Generator | None) -> int:
    # Like torch's RandomSampler: without an explicit seed, take one from the given generator or
    # torch's global RNG, so torch.manual_seed() makes runs repeatable.
    return int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())


class RevamperLoader:
    """A DataLoader that caches partially augmented samples and reuses each ``reuse_factor`` times.

    Each sample's item goes through ``partial_transform`` once, is cached, and serves the next
    ``reuse_factor - 1`` epochs from the cache; ``final_transform`` runs on every use with fresh
    randomness. Balanced eviction recomputes one ``1/reuse_factor`` share of the data set every
    epoch, and the cache-aware shuffle gives every batch the same share of recomputed samples,
    so every epoch after the first costs the same. Epoch 0 computes everything.

    Each ``iter(loader)`` is one epoch (the counter lives in this process; :meth:`set_epoch`
    sets it). Every sample appears exactly once per epoch, in a shuffled order when ``shuffle``.

    Args:
        dataset: A map-style data set (``__getitem__`` and ``__len__``). Its items are a single
            input or a tuple/list ``(input, target, ...)``.
        batch_size: Samples per batch.
        shuffle: Shuffle every epoch (with the cache-aware shuffle). ``False`` keeps sequential
            order, and batches are then not balanced in their share of recomputed samples.
        partial_transform: The expensive first part of the augmentation; its output is cached.
            ``None`` caches the item as loaded.
        final_transform: The cheap last part, re-run with fresh randomness on every use.
        reuse_factor: Uses of each cached entry before it is recomputed (``r``). 1 caches nothing
            and behaves like a plain DataLoader.
        cache_bytes: Memory budget for the cache. Entries that do not fit are not cached and are
            recomputed when used (counted as unplanned misses); ``None`` means no budget.
        cache: ``"memory"`` (a shared-memory store owned by this loader) or a
            :class:`~revamper.store.CacheStore` you created and close yourself.
        whole_sample: Apply the transforms to the whole item instead of its first element
            (for torchvision v2 transforms on samples with boxes or masks, or dict items).
        balance_misses: The cache-aware shuffle; ``False`` gives a plain shuffle (for comparison).
        seed: Seed of the sample order and the eviction plan; the same seed reproduces both
            exactly. ``None`` draws one from ``generator`` or torch's global RNG.
        num_workers: As DataLoader's.
        collate_fn: As DataLoader's (default: ``torch.utils.data.default_collate``).
        pin_memory: As DataLoader's.
        drop_last: As DataLoader's. The dropped samples are chosen among those whose cache entry
            is not needed (see :mod:`revamper.plan`).
        timeout: As DataLoader's.
        worker_init_fn: As DataLoader's.
        multiprocessing_context: As DataLoader's.
        generator: As DataLoader's (seeds the workers' RNGs); with ``seed`` and no generator,
            one seeded with ``seed`` is used.
        prefetch_factor: As DataLoader's.
        persistent_workers: As DataLoader's.
        pin_memory_device: As DataLoader's.

    Raises:
        TypeError: For an argument of the wrong type (named in the message).
        ValueError: For an argument out of range, or an empty data set.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        *,
        partial_transform: Transform | None = None,
        final_transform: Transform | None = None,
        reuse_factor: int = 3,
        cache_bytes: int | None = None,
        cache: CacheKind | CacheStore = "memory",
        whole_sample: bool = False,
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
    ) -> None:
        num_samples = self._check_dataset(dataset)
        _check_int("batch_size", batch_size, 1)
        _check_int("reuse_factor", reuse_factor, 1)
        _check_int("num_workers", num_workers, 0)
        partial_transform = _check_transform("partial_transform", partial_transform)
        final_transform = _check_transform("final_transform", final_transform)
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable or None, got {collate_fn!r}")
        if cache_bytes is not None:
            _check_int("cache_bytes", cache_bytes, 0)
        if seed is not None:
            _check_int("seed", seed, 0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {generator!r}")

        self._owns_store = False
        self._store = self._make_store(cache, cache_bytes, reuse_factor)
        if seed is None:
            seed = _draw_seed(generator)
        elif generator is None:
            generator = torch.Generator()
            generator.manual_seed(seed)
        self._seed = seed
        self._dataset = dataset
        self._config = PlanConfig(
            num_samples=num_samples,
            reuse_factor=reuse_factor,
            batch_size=batch_size,
            seed=seed,
            drop_last=bool(drop_last),
            shuffle=bool(shuffle),
            balance_misses=bool(balance_misses),
        )
        self._sampler = PlanBatchSampler(self._config)
        executor = RefurbishingDataset(
            dataset, self._store, partial_transform, final_transform, bool(whole_sample)
        )
        self._dataloader: DataLoader[Any] | None = DataLoader(
            executor,
            batch_sampler=self._sampler,  # type: ignore[arg-type]
            num_workers=num_workers,
            collate_fn=cast(Any, CollateWithStats(collate_fn or default_collate)),
            pin_memory=pin_memory,
            timeout=timeout,
            worker_init_fn=worker_init_fn,
            multiprocessing_context=multiprocessing_context,
            generator=generator,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers,
            pin_memory_device=pin_memory_device,
        )
        self._next_epoch = 0
        self._stats = LoaderStats()

    @staticmethod
    def _check_dataset(dataset: Any) -> int:
        if isinstance(dataset, IterableDataset):
            raise TypeError(
                "RevamperLoader needs a map-style dataset (with __getitem__ and __len__); "
                f"got the IterableDataset {type(dataset).__name__}"
            )
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                "dataset must be a map-style dataset with __getitem__ and __len__, got "
                f"{type(dataset).__name__}"
            )
        size = len(dataset)
        if size == 0:
            raise ValueError("dataset is empty: RevamperLoader needs at least one sample")
        return size

    def _make_store(
        self, cache: CacheKind | CacheStore, cache_bytes: int | None, reuse_factor: int
    ) -> CacheStore | None:
        if isinstance(cache, CacheStore):
            if cache_bytes is not None:
                raise ValueError(
                    "cache_bytes applies to the store the loader creates; you passed a store "
                    "instance, so give the budget to that store instead"
                )
            return cache
        if cache != "memory":
            raise ValueError(f"cache must be 'memory' or a CacheStore instance, got {cache!r}")
        if reuse_factor == 1:
            return None  # every sample is recomputed every epoch: a cache would only cost
        self._owns_store = True
        return SharedMemoryStore(cache_bytes)

    # -- the DataLoader-like surface ------------------------------------------------------------
    def __iter__(self) -> EpochIterator:
        """Start the next epoch (see :meth:`set_epoch`) and return its batch iterator."""
        if self._dataloader is None:
            raise RuntimeError("this RevamperLoader is closed")
        epoch = self._next_epoch
        self._next_epoch = epoch + 1
        self._sampler.epoch = epoch
        self._sampler.first_batch = 0
        stats = self._stats._start(epoch, len(self))
        return EpochIterator(
            iter(self._dataloader),
            stats,
            self._store,
            release_on_error=self._dataloader.num_workers > 0,
        )

    def __len__(self) -> int:
        """Batches per epoch."""
        return self._config.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(loader)`` run epoch ``epoch`` (then ``epoch + 1``, ...)."""
        self._next_epoch = _check_int("epoch", epoch, 0)

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter(loader)`` will run."""
        return self._next_epoch

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
    def plan_config(self) -> PlanConfig:
        """The parameters of the epoch plans (seed included)."""
        return self._config

    @property
    def seed(self) -> int:
        """The seed of the sample order and eviction plan."""
        return self._seed

    def close(self) -> None:
        """Stop the worker processes and release the cache (if this loader created it)."""
        self._dataloader = None  # drops the persistent workers' iterator with it
        if self._store is not None and self._owns_store:
            self._store.close()

    def __enter__(self) -> RevamperLoader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self._config
        return (
            f"RevamperLoader(num_samples={c.num_samples}, batch_size={c.batch_size}, "
            f"reuse_factor={c.reuse_factor}, shuffle={c.shuffle}, next_epoch={self._next_epoch}, "
            f"store={self._store!r}, pid={os.getpid()})"
        )


class EpochIterator(Iterator[Any]):
    """Iterates the batches of one epoch and accumulates its :class:`EpochStats`."""

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
