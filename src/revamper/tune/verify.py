"""Check a refurbishing prediction with a short real run, and derive a correction for all of them.

Profiling times every step alone, on one thread, with the CPU's caches to itself. Inside a
refurbishing loader the same work costs more: each recomputed sample is decoded and cropped
between cache reads that stream whole entries through the CPU's caches, cache writes replace
entries written epochs earlier (cold memory), and two workers share the caches. Measured on this
project's machine, the recomputation path costs 10-20 % more there than in isolation, while
standard loading matches its profile. That is not noise, so predictions correct for it.

:func:`measure_refurbishing` runs a real :class:`~revamper.loader.RevamperLoader` on a small
subset of the data set, with the planned workers and batch size, at one (split, r), for three
epochs, and returns the per-sample stage costs the loader's own timers measured in the last one
(epoch 1 still pays for first-time allocations in the workers; later epochs do not). The ratio of
its refurbishing cost to the profile's prediction for the same configuration is then applied to
the stage costs of every cached configuration.

The same run also shows how much of the cores' time a real loader turns into samples: its last
epoch's wall time against what the throughput model predicts from the costs the run itself
measured. A loader loses a few per cent at every epoch's start and end and when a worker waits
for the main process; :attr:`CheckRun.efficiency` (measured here at 0.92-0.98) scales every
prediction.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from torch.utils.data import Subset, default_collate

from revamper.costmodel import StageCosts
from revamper.loader.layout import Transform
from revamper.tune.sampling import isolated_rng

logger = logging.getLogger(__name__)

EPOCHS = 3
"""Epochs of the check run; the last one is measured."""

MIN_EFFICIENCY = 0.7
"""Lower bound on the measured efficiency (below it, something else was running)."""


@dataclasses.dataclass(frozen=True)
class CheckRun:
    """What the check run measured in its last epoch.

    Attributes:
        costs: Per-sample stage costs from the loader's own timers (``collate`` is the collate
            function's own time).
        wall_seconds: The epoch's wall time.
        samples: Samples in the epoch.
    """

    costs: StageCosts
    wall_seconds: float
    samples: int


def measure_refurbishing(
    dataset: Any,
    partial: Transform,
    final: Transform,
    *,
    reuse_factor: int,
    batch_size: int,
    num_workers: int,
    batches_per_worker: int = 4,
    whole_sample: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int = 0,
    multiprocessing_context: Any = None,
) -> CheckRun | None:
    """Run refurbishing for a few epochs on a subset and return its measured stage costs.

    Args:
        dataset: The data set (a random subset of it is read).
        partial: The cached part.
        final: The part re-run on every use.
        reuse_factor: ``r``, at least 2.
        batch_size: The planned batch size.
        num_workers: The planned number of worker processes.
        batches_per_worker: Size of the subset, in batches per worker (or for the main process).
        whole_sample: As the loader's ``whole_sample``.
        collate_fn: The planned collate function.
        seed: Seed of the subset and of the loader.
        multiprocessing_context: As the loader's.

    Returns:
        The last epoch's costs and wall time, or ``None`` (with a logged warning) if the run
        failed.
    """
    from revamper.loader.loader import RevamperLoader

    if reuse_factor < 2:
        raise ValueError(f"a refurbishing check needs reuse_factor >= 2, got {reuse_factor}")
    count = max(batches_per_worker, 1) * max(num_workers, 1) * batch_size
    count = max(count, 2 * reuse_factor)
    rng = np.random.default_rng(seed)
    repeats = -(-count // len(dataset))
    order = np.concatenate([rng.permutation(len(dataset)) for _ in range(repeats)])[:count]
    try:
        with (
            isolated_rng(seed),
            RevamperLoader(
                Subset(dataset, [int(i) for i in order]),
                batch_size=batch_size,
                shuffle=True,
                partial_transform=partial,
                final_transform=final,
                reuse_factor=reuse_factor,
                whole_sample=whole_sample,
                num_workers=num_workers,
                persistent_workers=num_workers > 0,
                collate_fn=collate_fn or default_collate,
                multiprocessing_context=multiprocessing_context,
                seed=seed,
                rank=0,  # this process's own measurement: never a collective under DDP
                world_size=1,
            ) as loader,
        ):
            for _ in range(EPOCHS):
                start = time.perf_counter()
                for _batch in loader:
                    pass
                wall = time.perf_counter() - start
            stats = loader.stats[EPOCHS - 1]
    except Exception as exc:
        logger.warning(
            "could not run the refurbishing check (%s: %s); predictions stay uncorrected",
            type(exc).__name__,
            exc,
        )
        return None
    return CheckRun(StageCosts.from_stats(stats), wall, stats.samples)


def stage_cost(costs: StageCosts, reuse_factor: int) -> float:
    """CPU seconds per sample of the stages alone (no collation) at ``reuse_factor``."""
    return StageCosts(
        load=costs.load,
        partial=costs.partial,
        final=costs.final,
        collate=0.0,
        get=costs.get,
        put=costs.put,
    ).refurbishing(reuse_factor)
