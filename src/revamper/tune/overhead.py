"""What the DataLoader machinery costs per sample beyond the transforms, measured on this machine.

A loader spends CPU time that no transform accounts for: collating the batch (into shared memory
in a worker), pickling it and passing it to the main process, the worker loop and the loader's
own bookkeeping in the worker; and, in the main process, receiving and rebuilding every batch.
DESIGN section 3 calls this ``c_out`` (about 0.8 ms per sample for the loaders it compares); with
a cheap pipeline it is a large share of the total, so predictions must include it.

:func:`calibrate_overhead` measures it with a short real run: a
:class:`~revamper.loader.RevamperLoader` with the planned workers and batch size runs the whole
pipeline (no cache) on a few batches. The collate function stamps every batch with its worker's
process CPU time (``time.process_time``: all of the worker's threads, the one that pickles batches
included); between a worker's first and last batch, that clock minus the loader's own timers of
loading and transforming is the machinery's cost in the worker (each worker's first batch, which
pays for its start, is left out). The main process's CPU time between later batches is its share.
Both are CPU times, so a short run gives stable figures, and they do not depend on where the
pipeline is split (the loader hands over the same finished samples either way).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Subset, default_collate

from revamper.tune.sampling import isolated_rng

logger = logging.getLogger(__name__)

FALLBACK_WORKER_S = 0.6e-3
"""Worker-side machinery cost per sample assumed when calibration fails (about DESIGN's figure)."""
FALLBACK_MAIN_S = 0.1e-3
"""Main-process cost per sample assumed when calibration fails."""


@dataclasses.dataclass(frozen=True)
class Overhead:
    """The loader machinery's CPU cost per sample.

    Attributes:
        worker: CPU seconds per sample in each worker beyond the transforms: collation,
            hand-off to the main process, bookkeeping. 0 without workers.
        main: CPU seconds per sample in the main process: receiving and rebuilding batches
            (with no workers: the whole machinery, collation included).
        num_workers: The worker count it was measured with.
        batch_size: The batch size it was measured with.
        measured: ``False`` when calibration failed and fixed figures were assumed.
    """

    worker: float
    main: float
    num_workers: int = 0
    batch_size: int = 1
    measured: bool = True


class _StampCollate:
    """Collates with the user's function, then stamps the batch with its process and CPU time.

    Module level, so that it pickles into spawned workers.
    """

    def __init__(self, collate_fn: Callable[[list[Any]], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: list[Any]) -> tuple[Any, int, float, int]:
        batch = self.collate_fn(samples)
        return batch, os.getpid(), time.process_time(), len(samples)


@dataclasses.dataclass(frozen=True)
class _Batch:
    pid: int
    worker_cpu: float  # the worker's process CPU time after collating this batch
    size: int
    main_cpu: float  # the main process's CPU time when it arrived
    stage_cpu: float  # the loader's own timers for this batch's load and transforms


def calibrate_overhead(
    dataset: Any,
    transform: Callable[[Any], Any],
    *,
    batch_size: int,
    num_workers: int,
    whole_sample: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    batches_per_worker: int = 6,
    seed: int = 0,
    multiprocessing_context: Any = None,
) -> Overhead:
    """Run the whole pipeline through a real loader for a few batches and measure its overhead.

    Args:
        dataset: The data set (a random subset of it is read).
        transform: The whole pipeline as one callable.
        batch_size: The planned batch size.
        num_workers: The planned number of worker processes (0: all in the main process).
        whole_sample: Apply ``transform`` to whole items (as the loader's ``whole_sample``).
        collate_fn: The planned collate function (default: torch's ``default_collate``).
        batches_per_worker: Batches each worker (or the main process) makes; the first is
            left out of the figures. At least 3.
        seed: Seed of the subset and of the loader.
        multiprocessing_context: As the loader's.

    Returns:
        The measured overhead; if the run fails, a warning and the fallback figures.
    """
    from revamper.loader.loader import RevamperLoader

    per_worker = max(batches_per_worker, 3)
    count = per_worker * max(num_workers, 1) * batch_size
    rng = np.random.default_rng(seed)
    repeats = -(-count // len(dataset))
    order = np.concatenate([rng.permutation(len(dataset)) for _ in range(repeats)])[:count]
    subset = Subset(dataset, [int(i) for i in order])
    try:
        with (
            isolated_rng(seed),
            RevamperLoader(
                subset,
                batch_size=batch_size,
                reuse_factor=1,
                final_transform=transform,
                whole_sample=whole_sample,
                num_workers=num_workers,
                collate_fn=_StampCollate(collate_fn or default_collate),
                multiprocessing_context=multiprocessing_context,
                seed=seed,
                rank=0,  # this process's own measurement: never a collective under DDP
                world_size=1,
            ) as loader,
        ):
            arrivals = []
            iterator = iter(loader)
            for _batch, pid, cpu, size in iterator:
                arrivals.append((int(pid), float(cpu), int(size), time.process_time()))
            stats = iterator.stats
    except Exception as exc:
        logger.warning(
            "could not calibrate the loader's overhead (%s: %s); assuming %.2f ms per sample",
            type(exc).__name__,
            exc,
            (FALLBACK_WORKER_S + FALLBACK_MAIN_S) * 1e3,
        )
        return Overhead(FALLBACK_WORKER_S, FALLBACK_MAIN_S, num_workers, batch_size, False)
    collate_per_sample = stats.cpu_collate / max(stats.samples, 1)
    batches = [
        _Batch(pid, cpu, size, main, total - collate_per_sample * size)
        for (pid, cpu, size, main), total in zip(arrivals, stats.batch_cpu, strict=True)
    ]
    overhead = _from_batches(batches, num_workers, batch_size)
    logger.info(
        "loader overhead with %d workers, batch %d: %.3f ms/sample in workers, %.3f ms in the "
        "main process",
        num_workers,
        batch_size,
        overhead.worker * 1e3,
        overhead.main * 1e3,
    )
    return overhead


def _from_batches(batches: Sequence[_Batch], num_workers: int, batch_size: int) -> Overhead:
    """Per-sample figures from the batches in arrival order (see the module docstring)."""
    later = batches[2:]  # the main process's clock runs from the second arrival
    main_samples = sum(b.size for b in later)
    main_cpu = batches[-1].main_cpu - batches[1].main_cpu if len(batches) > 2 else 0.0
    if num_workers == 0:
        stage = sum(b.stage_cpu for b in later)
        main = max(main_cpu - stage, 0.0) / main_samples if main_samples else FALLBACK_MAIN_S
        return Overhead(0.0, main, 0, batch_size)
    main = main_cpu / main_samples if main_samples else FALLBACK_MAIN_S
    by_worker: dict[int, list[_Batch]] = {}
    for batch in batches:
        by_worker.setdefault(batch.pid, []).append(batch)
    extra, samples = 0.0, 0
    for made in by_worker.values():
        made.sort(key=lambda b: b.worker_cpu)
        if len(made) < 2:
            continue
        rest = made[1:]  # the clock runs from the end of the worker's first batch
        extra += made[-1].worker_cpu - made[0].worker_cpu - sum(b.stage_cpu for b in rest)
        samples += sum(b.size for b in rest)
    if not samples:
        return Overhead(FALLBACK_WORKER_S, main, num_workers, batch_size, False)
    return Overhead(max(extra, 0.0) / samples, main, num_workers, batch_size)
