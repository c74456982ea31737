"""The ``torch`` scenario: a plain ``torch.utils.data.DataLoader``, the baseline of every ratio.

It runs the bench's *whole* pipeline (unfused, RandAugment included) composed into one
transform, over the same data set, with the same batch size, workers, persistent workers, seed
and collate (``default_collate``) as revamper's loaders, and none of revamper's machinery: no
plan, no tickets, no cache, torch's own sampler and worker seeding. It is what a user without
revamper writes, so "x torch" is the speed-up a user gets, while ``standard`` (revamper's loader
with no cache) measures revamper's own overhead against it.

To report where its time goes like the other scenarios, each worker times what it does with
``time.thread_time`` (three calls per sample, a few microseconds): reading the item (``load``),
the whole transform (reported as ``partial``, since nothing of it is cached or split) and the
collate; the batch carries those figures to the main process as a third element that the epoch
strips before the consumer sees the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from revamper.loader.stats import BatchStats, EpochStats
from revamper.pipelines import Pipeline

PLAIN_KINDS: tuple[str, ...] = ("torch",)
"""The bench kinds this module provides."""


class Composed:
    """The pipeline's steps applied in order: one transform, as ``transforms.Compose`` does."""

    def __init__(self, steps: Sequence[Callable[[Any], Any]]) -> None:
        self.steps = list(steps)

    def __call__(self, value: Any) -> Any:
        """Apply every step to ``value``."""
        for step in self.steps:
            value = step(value)
        return value


class TimedItems(Dataset[tuple[Any, Any, float, float]]):
    """``dataset`` with ``transform`` applied to each item's first element, timed.

    An item becomes ``(transformed, label, load seconds, transform seconds)`` (worker CPU
    seconds, ``time.thread_time``).
    """

    def __init__(self, dataset: Any, transform: Callable[[Any], Any]) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Any, float, float]:
        start = time.thread_time()
        value, label = self.dataset[index]
        loaded = time.thread_time()
        value = self.transform(value)
        return value, label, loaded - start, time.thread_time() - loaded


def timed_collate(items: list[tuple[Any, Any, float, float]]) -> tuple[Any, Any, BatchStats]:
    """``default_collate`` of the ``(value, label)`` pairs, plus the batch's figures."""
    start = time.thread_time()
    values, labels = default_collate([(value, label) for value, label, _, _ in items])
    stats = BatchStats(
        samples=len(items),
        planned_misses=len(items),
        cpu_load=sum(item[2] for item in items),
        cpu_partial=sum(item[3] for item in items),
    )
    stats.cpu_collate = time.thread_time() - start
    return values, labels, stats


class PlainTorchLoader:
    """A plain DataLoader with the face the bench harness uses: epochs, ``stats``, ``close``.

    Args:
        dataset: The data set (items ``(encoded image, class)``).
        pipeline: The pipeline; all its steps run, composed into one transform.
        batch_size: Samples per batch.
        num_workers: Worker processes.
        seed: Seed of the shuffle (torch's generator) and so of torch's worker seeds.
        persistent_workers: Keep the workers across epochs.
        shuffle: Shuffle each epoch (as the bench's loaders do).
    """

    store = None  # no cache

    def __init__(
        self,
        dataset: Any,
        pipeline: Pipeline,
        *,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        persistent_workers: bool = False,
        shuffle: bool = True,
    ) -> None:
        transform = Composed([step for _, step in pipeline.steps])
        self._epoch = 0
        self.loader: DataLoader[Any] | None = DataLoader(
            TimedItems(dataset, transform),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            collate_fn=timed_collate,
            persistent_workers=persistent_workers and num_workers > 0,
            generator=torch.Generator().manual_seed(seed),
        )

    def __iter__(self) -> PlainEpoch:
        """One epoch."""
        if self.loader is None:
            raise RuntimeError("the loader is closed")
        epoch = PlainEpoch(iter(self.loader), self._epoch)
        self._epoch += 1
        return epoch

    def __len__(self) -> int:
        return 0 if self.loader is None else len(self.loader)

    def close(self) -> None:
        """Stop the workers (persistent ones included)."""
        loader, self.loader = self.loader, None
        iterator = getattr(loader, "_iterator", None)
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if callable(shutdown):
            shutdown()

    def __enter__(self) -> PlainTorchLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlainEpoch:
    """One epoch of a :class:`PlainTorchLoader`: yields ``(images, labels)``, fills ``stats``."""

    def __init__(self, batches: Iterator[tuple[Any, Any, BatchStats]], epoch: int) -> None:
        self.stats = EpochStats(epoch=epoch)
        self._batches = batches
        self._start = time.perf_counter()

    def __iter__(self) -> PlainEpoch:
        return self

    def __next__(self) -> tuple[Any, Any]:
        """The next batch; at the end, the epoch's wall time goes into ``stats``."""
        try:
            images, labels, batch = next(self._batches)
        except StopIteration:
            self.stats.wall_seconds = time.perf_counter() - self._start
            self.stats.planned_batches = self.stats.batches
            raise
        self.stats.record_batch(batch)
        return images, labels
