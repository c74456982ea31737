"""Executes planned batches inside a worker: hit -> read the cache; miss -> load, partial, write.

:class:`RefurbishingDataset` is what torch's ``DataLoader`` sees. Its ``__getitems__`` receives a
whole :class:`~revamper.loader.tickets.BatchTicket`, so cache reads can be batched and each batch's
figures measured in one place. :class:`CollateWithStats` then collates the samples with the user's
``collate_fn`` and returns ``(batch, stats, note, (epoch, number))``; the loader unpacks that in
the main process (and checks the epoch).

A cache entry holds the *partially augmented sample*: the data set item with the partial
transform applied to its input (or to the whole item, with ``whole_sample``, or to the fields
named by ``transform_keys``; see :mod:`revamper.loader.layout`). Targets and other fields are
cached with it, so a hit never touches the data set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch.utils.data

from revamper.errors import SampleError
from revamper.loader.augment_rng import seeded_augmentation
from revamper.loader.dataset_reads import batched_reader, has_own_getitem, read_item, rows
from revamper.loader.layout import SampleLayout, Transform, TransformKeys, identity
from revamper.loader.stats import BatchStats
from revamper.loader.tickets import BatchTicket
from revamper.store.base import MISS, CacheStore

__all__ = ["CollateWithStats", "FetchedBatch", "RefurbishingDataset"]

_now = time.thread_time
_wall = time.perf_counter  # stages also count wall time: waits (I/O, other processes) too


class FetchedBatch:
    """Samples of one batch and their figures, handed from ``__getitems__`` to the collate."""

    __slots__ = ("epoch", "note", "number", "samples", "stats")

    def __init__(
        self,
        epoch: int,
        number: int,
        samples: list[Any],
        stats: BatchStats,
        note: str | None = None,
    ) -> None:
        self.epoch = epoch
        self.number = number
        self.samples = samples
        self.stats = stats
        self.note = note


class RefurbishingDataset(torch.utils.data.Dataset[Any]):
    """Wraps the user's data set and executes the plan's tickets.

    Args:
        dataset: The user's map-style data set.
        store: The cache, or ``None`` to cache nothing (every sample is computed).
        partial_transform: The expensive first part of the augmentation (cached), or ``None``.
        final_transform: The cheap last part (re-run on every use), or ``None``.
        whole_sample: Apply the transforms to whole items instead of their first element.
        transform_keys: The fields of mapping items the transforms apply to (see
            :class:`~revamper.loader.layout.SampleLayout`).
    """

    def __init__(
        self,
        dataset: Any,
        store: CacheStore | None,
        partial_transform: Transform | None,
        final_transform: Transform | None,
        whole_sample: bool,
        transform_keys: TransformKeys | None = None,
    ) -> None:
        self.dataset = dataset
        self.store = store
        self.partial_transform = partial_transform or identity
        self.final_transform = final_transform or identity
        self.layout = SampleLayout(whole_sample, transform_keys)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        """Compute one sample through the whole pipeline, bypassing the cache."""
        stats = BatchStats()
        item = self._load_one(index, -1, stats)
        value = self._compute(index, item, -1, 0, stats, cache=False)
        return self._final(index, -1, value, stats)

    def __getitems__(self, ticket: BatchTicket) -> FetchedBatch:
        """Produce the samples of one planned batch (torch's fetcher calls this).

        The transforms draw from generators seeded for this batch (see
        :mod:`~revamper.loader.augment_rng`).
        """
        with seeded_augmentation(ticket.augment_seed):
            return self._execute(ticket)

    def _execute(self, ticket: BatchTicket) -> FetchedBatch:
        began = _wall()
        stats = BatchStats()
        io_before = self.store.io_counters() if self.store is not None else None
        indices: list[int] = ticket.indices.tolist()
        planned_miss: list[bool] = ticket.planned_miss.tolist()
        generations: list[int] = ticket.generations.tolist()
        worth_caching: list[bool] = ticket.worth_caching.tolist()
        epoch = ticket.epoch
        cached = self._read_hits(indices, planned_miss, generations, stats)
        many = batched_reader(self.dataset)
        loaded: Iterator[Any] | None = None
        if many is not None:  # one call for the batch's misses, as torch's fetcher makes
            missing = [indices[k] for k, value in enumerate(cached) if value is MISS]
            loaded = iter(self._load_many(many, missing, epoch, stats))
        samples = []
        for index, miss, generation, keep, value in zip(
            indices, planned_miss, generations, worth_caching, cached, strict=True
        ):
            if value is MISS:
                if miss:
                    stats.planned_misses += 1
                else:
                    stats.unplanned_misses += 1
                # Without __getitems__, one item at a time: only one raw item is alive at once.
                item = next(loaded) if loaded is not None else self._load_one(index, epoch, stats)
                value = self._compute(index, item, epoch, generation, stats, cache=keep)
            else:
                stats.hits += 1
            samples.append(self._final(index, epoch, value, stats))
        stats.samples = len(samples)
        if self.store is not None and io_before is not None:
            moved = self.store.io_counters() - io_before
            stats.bytes_read_memory = moved.memory_read
            stats.bytes_read_disk = moved.disk_read
            stats.bytes_written_disk = moved.disk_written
        stats.wall_batch += _wall() - began
        return FetchedBatch(ticket.epoch, ticket.batch, samples, stats, self.layout.take_note())

    def _read_hits(
        self,
        indices: Sequence[int],
        planned_miss: Sequence[bool],
        generations: Sequence[int],
        stats: BatchStats,
    ) -> list[Any]:
        values: list[Any] = [MISS] * len(indices)
        wanted = [k for k, miss in enumerate(planned_miss) if not miss]
        if self.store is None or not wanted:
            return values
        start, began = _now(), _wall()
        got = self.store.get_many([indices[k] for k in wanted], [generations[k] for k in wanted])
        stats.cpu_cache_read += _now() - start
        stats.wall_read += _wall() - began
        stats.cache_reads += len(wanted)
        for k, value in zip(wanted, got, strict=True):
            values[k] = value
        return values

    def _load_many(
        self, many: Callable[[list[int]], Any], indices: list[int], epoch: int, stats: BatchStats
    ) -> list[Any]:
        """The items for ``indices`` from one ``__getitems__`` call.

        If that call fails and the data set has a ``__getitem__`` of its own, the items are
        read one by one to name the sample that fails; the batch's error is raised if none does.
        """
        if not indices:
            return []
        start, began = _now(), _wall()
        try:
            returned = many(list(indices))
        except Exception as exc:
            if has_own_getitem(self.dataset):
                self._find_failing_sample(indices, epoch)
            raise _load_error(indices, epoch, exc) from exc
        try:
            items = rows(returned, len(indices))
        except TypeError as exc:  # its form, not a sample: no item-by-item reading
            raise _load_error(indices, epoch, exc) from exc
        stats.cpu_load += _now() - start
        stats.wall_compute += _wall() - began
        return items

    def _find_failing_sample(self, indices: list[int], epoch: int) -> None:
        """Read ``indices`` one by one; raise for the first that fails on its own."""
        for index in indices:
            try:
                self.dataset[index]
            except NotImplementedError:
                return  # __getitem__ is not meant to be used: the batch's error stands
            except Exception as exc:
                raise _sample_error(index, epoch, "load", exc) from exc

    def _load_one(self, index: int, epoch: int, stats: BatchStats) -> Any:
        start, began = _now(), _wall()
        try:
            item = read_item(self.dataset, index)
        except Exception as exc:
            raise _sample_error(index, epoch, "load", exc) from exc
        stats.cpu_load += _now() - start
        stats.wall_compute += _wall() - began
        return item

    def _compute(
        self,
        index: int,
        item: Any,
        epoch: int,
        generation: int,
        stats: BatchStats,
        *,
        cache: bool = True,
    ) -> Any:
        loaded, began = _now(), _wall()
        try:
            value = self.layout.apply(index, item, self.partial_transform)
        except Exception as exc:
            raise _sample_error(index, epoch, "partial_transform", exc) from exc
        done = _now()
        stats.cpu_partial += done - loaded
        if cache and self.store is not None:
            try:
                stored = self.store.put(index, generation, value)
            except Exception as exc:
                raise _sample_error(index, epoch, "cache_write", exc) from exc
            if not stored:
                stats.uncached += 1
            stats.cpu_cache_write += _now() - done
            stats.cache_writes += 1
        stats.wall_compute += _wall() - began
        return value

    def _final(self, index: int, epoch: int, value: Any, stats: BatchStats) -> Any:
        start = _now()
        try:
            out = self.layout.apply(index, value, self.final_transform)
        except Exception as exc:
            raise _sample_error(index, epoch, "final_transform", exc) from exc
        stats.cpu_final += _now() - start
        return out


def _load_error(indices: Sequence[int], epoch: int, exc: BaseException) -> SampleError:
    """The error of a batched read of ``indices``.

    One index is named as a sample, so that its index survives the trip from a worker (the
    main process recovers it from the message).
    """
    if len(indices) == 1:
        return _sample_error(indices[0], epoch, "load", exc)
    return SampleError(
        f"samples {_shown(indices)} failed in stage 'load' (epoch {epoch}): "
        f"{type(exc).__name__}: {exc}",
        stage="load",
    )


def _shown(indices: Sequence[int]) -> str:
    head = ", ".join(map(str, indices[:8]))
    return head + (f", ... ({len(indices)} in all)" if len(indices) > 8 else "")


def _sample_error(index: int, epoch: int, stage: str, exc: BaseException) -> SampleError:
    return SampleError(
        f"sample {index} failed in stage '{stage}' (epoch {epoch}): {type(exc).__name__}: {exc}",
        index=index,
        stage=stage,
    )


class CollateWithStats:
    """Collates a :class:`FetchedBatch` with the user's function: ``(batch, stats, note, at)``.

    ``note`` is what the layout found worth a warning in the main process (a torchvision
    ``tv_tensor`` passed through untouched), or ``None``; ``at`` is ``(epoch, batch number)``,
    which the main process checks against the epoch it delivers.
    """

    def __init__(self, collate_fn: Callable[[list[Any]], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(
        self, fetched: FetchedBatch
    ) -> tuple[Any, BatchStats, str | None, tuple[int, int]]:
        """Collate ``fetched.samples``; errors become a :class:`SampleError` naming the batch."""
        start, began = _now(), _wall()
        try:
            batch = self.collate_fn(fetched.samples)
        except Exception as exc:
            raise SampleError(
                f"batch {fetched.number} failed in stage 'collate' (epoch {fetched.epoch}): "
                f"{type(exc).__name__}: {exc}",
                stage="collate",
            ) from exc
        fetched.stats.cpu_collate += _now() - start
        fetched.stats.wall_batch += _wall() - began
        fetched.stats.finished_at = time.monotonic()
        return batch, fetched.stats, fetched.note, (fetched.epoch, fetched.number)
