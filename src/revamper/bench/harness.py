"""Runs benchmark scenarios side by side, interleaved, and records what each epoch did.

Every repeat runs every scenario once (A B C A B C ...), each with a fresh loader, its own worker
processes and its own cache, for the same number of epochs; ratios are then taken within a repeat
so that they hold when the machine's speed drifts. The consumer stands in for a training step:
it asks for the next batch (timing how long it waits) and then spends ``step_ms`` on the batch
(sleeping, as a host thread does while the accelerator runs).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from revamper.bench.procfs import PeakMemorySampler, tree_read_bytes
from revamper.bench.scenarios import Scenario
from revamper.pipelines import Pipeline
from revamper.store import store_spec

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """How each scenario is run.

    Attributes:
        epochs: Epochs per scenario run (epoch 0 plus ``epochs - 1`` steady-state ones).
        repeats: Interleaved repetitions of every scenario.
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes.
        step_ms: Milliseconds the consumer spends per batch (a simulated accelerator step).
        seed: Seed of every loader (same order and plan in every repeat).
        split: Steps of the pipeline in the cached part (``None``: the pipeline's default).
        persistent_workers: Keep the workers across epochs (as training usually does).
        cache_bytes: Memory budget of the cache (``None``: none); with the disk cache, the RAM
            tier's size.
        cache: The store kind of scenarios that name none (:func:`~revamper.store.store_kinds`).
        cache_dir: Where caches that need a directory are made (a fresh folder per run, removed
            after it); ``None``: the system's temporary directory.
    """

    epochs: int = 4
    repeats: int = 3
    batch_size: int = 64
    num_workers: int = 2
    step_ms: float = 0.0
    seed: int = 0
    split: int | None = None
    persistent_workers: bool = True
    cache_bytes: int | None = None
    cache: str = "memory"
    cache_dir: str | None = None

    def loader_kwargs(self) -> dict[str, Any]:
        """The loader arguments these options imply."""
        kwargs: dict[str, Any] = {
            "batch_size": self.batch_size,
            "shuffle": True,
            "num_workers": self.num_workers,
            "seed": self.seed,
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
        }
        if self.cache_bytes is not None:
            kwargs["cache_bytes"] = self.cache_bytes
        return kwargs


@dataclasses.dataclass
class EpochRecord:
    """What one epoch of one scenario run measured.

    Attributes:
        scenario: Scenario name.
        repeat: Repetition number.
        epoch: Epoch number within the run.
        samples: Samples delivered.
        wall_seconds: From ``iter(loader)`` to the end of the last step.
        waits: Seconds the consumer waited for each batch.
        stats: The loader's :class:`~revamper.loader.stats.EpochStats` as a dict.
        block_read_bytes: Bytes the block device delivered to the loader's processes during
            the epoch (``None`` where ``/proc`` cannot tell).
    """

    scenario: str
    repeat: int
    epoch: int
    samples: int
    wall_seconds: float
    waits: list[float]
    stats: dict[str, Any]
    block_read_bytes: int | None = None

    @property
    def samples_per_second(self) -> float:
        """Delivered samples per wall-clock second."""
        return self.samples / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def stall_seconds(self) -> float:
        """Total time the consumer waited for data."""
        return sum(self.waits)


@dataclasses.dataclass
class RunRecord:
    """One run of one scenario: its epochs and the memory it used.

    Attributes:
        scenario: Scenario name.
        repeat: Repetition number.
        epochs: The run's epochs in order.
        peak_memory_bytes: Peak PSS of the process tree plus the cache's bytes at that point
            (``None`` where it cannot be read).
        cache_bytes: Bytes in the cache at the end of the run.
        ram_bytes: Of those, bytes in RAM (all of them for a memory cache).
        entries: Entries in the cache at the end of the run.
    """

    scenario: str
    repeat: int
    epochs: list[EpochRecord]
    peak_memory_bytes: int | None
    cache_bytes: int
    ram_bytes: int = 0
    entries: int = 0


def run_epoch(loader: Any, scenario: str, repeat: int, step_seconds: float) -> EpochRecord:
    """Consume one epoch of ``loader`` like a training loop and measure it."""
    waits: list[float] = []
    samples = 0
    reads_before = tree_read_bytes()
    start = time.perf_counter()
    iterator = iter(loader)
    epoch = iterator.stats.epoch
    while True:
        asked = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        waits.append(time.perf_counter() - asked)
        samples += _batch_len(batch)
        if step_seconds > 0:
            time.sleep(step_seconds)
    wall = time.perf_counter() - start
    reads_after = tree_read_bytes()
    block = None if reads_before is None or reads_after is None else reads_after - reads_before
    return EpochRecord(
        scenario=scenario,
        repeat=repeat,
        epoch=epoch,
        samples=samples,
        wall_seconds=wall,
        waits=waits,
        stats=iterator.stats.as_dict(),
        block_read_bytes=block,
    )


def _batch_len(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return len(first)


def run_scenario(
    scenario: Scenario,
    dataset: Any,
    pipeline: Pipeline,
    options: BenchOptions,
    repeat: int,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> RunRecord:
    """Run ``options.epochs`` epochs of one scenario with a fresh loader (and a fresh cache)."""
    kwargs = options.loader_kwargs()
    cache_dir = None
    cache = scenario.cache or options.cache
    if scenario.caches and store_spec(cache).needs_directory:
        cache_dir = tempfile.mkdtemp(prefix="revamper-bench-", dir=options.cache_dir)
        kwargs.update(cache=cache, cache_dir=cache_dir)
    loader = scenario.make_loader(dataset, pipeline, options.split, **kwargs)
    epochs: list[EpochRecord] = []
    try:
        with PeakMemorySampler() as memory:
            for _ in range(options.epochs):
                record = run_epoch(loader, scenario.name, repeat, options.step_ms / 1000)
                epochs.append(record)
                if on_epoch is not None:
                    on_epoch(record)
        store = loader.store
        stats = store.stats() if store is not None else None
        cache_bytes = stats.bytes_used if stats is not None else 0
        entries = stats.entries if stats is not None else 0
        ram_bytes = store.ram_bytes() if store is not None else 0
    finally:
        loader.close()
        if cache_dir is not None:
            shutil.rmtree(cache_dir, ignore_errors=True)
    # Disk-tier entries are in no process's memory; RAM-tier (tmpfs) entries must be added.
    peak = None if memory.peak_bytes is None else memory.peak_bytes + ram_bytes
    return RunRecord(scenario.name, repeat, epochs, peak, cache_bytes, ram_bytes, entries)


def warm_up(dataset: Any) -> float:
    """Read every item once, so no scenario pays for a cold page cache; returns the seconds."""
    start = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    return time.perf_counter() - start


def run_benchmark(
    scenarios: Sequence[Scenario],
    dataset: Any,
    pipeline: Pipeline,
    options: BenchOptions,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> list[RunRecord]:
    """Run every scenario ``options.repeats`` times, interleaved (A B C A B C ...).

    Every item is read once first (:func:`warm_up`): otherwise the first scenario alone would
    read the data from disk.
    """
    logger.info("warm-up: read %d items in %.1f s", len(dataset), warm_up(dataset))
    runs: list[RunRecord] = []
    for repeat in range(options.repeats):
        for scenario in scenarios:
            runs.append(run_scenario(scenario, dataset, pipeline, options, repeat, on_epoch))
    return runs


def environment() -> dict[str, Any]:
    """What the results depend on: machine, library versions, start method."""
    import multiprocessing
    import platform

    import numpy
    import PIL
    import torch
    import torchvision

    import revamper

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "revamper": revamper.__version__,
        "start_method": multiprocessing.get_context().get_start_method(),
        "torch_threads": torch.get_num_threads(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **_optional_versions(),
    }


def _optional_versions() -> dict[str, str | None]:
    """Versions of the peers and JPEG libraries a run may use (``None``: not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("ffcv", "nvidia-dali-cuda120", "simplejpeg"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
