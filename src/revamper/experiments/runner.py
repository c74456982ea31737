"""Runs every arm with every seed, interleaved, under fixed CPU settings.

The order is seed-major (all arms with seed 0, then all with seed 1, ...), so a slow phase of a
shared machine spreads over every arm instead of falling on one. Two CPU settings matter on a
small machine and are fixed for every arm: the loader's worker processes (each runs with one
torch thread, as torch's DataLoader sets it) and the torch threads of the training step in the
main process. The default, one worker and one training thread, gives each of two cores one job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from revamper.experiments.arms import Arm
from revamper.experiments.augment import StepCost, augmentation, measure_step_costs
from revamper.experiments.digits import SPLIT_SEED, TEST_SIZE, TRAIN_SIZE, DigitSplit
from revamper.experiments.model import Recipe
from revamper.experiments.train import EpochResult, RunResult, TrainSettings, train_arm

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ExperimentOptions:
    """Everything that defines a run of the experiment.

    Attributes:
        arms: The arms, in report order.
        seeds: Seeds per arm (seeds ``first_seed`` to ``first_seed + seeds - 1``).
        epochs: Training epochs of every run.
        num_workers: Loader worker processes.
        torch_threads: Torch threads of the training step (main process).
        train_size: Training samples taken from the 5,000 digits.
        test_size: Test samples.
        split_seed: Seed of the stratified split.
        first_seed: First training seed.
        recipe: Model, optimiser and schedule.
    """

    arms: tuple[Arm, ...]
    seeds: int = 5
    epochs: int = 12
    num_workers: int = 1
    torch_threads: int = 1
    train_size: int = TRAIN_SIZE
    test_size: int = TEST_SIZE
    split_seed: int = SPLIT_SEED
    first_seed: int = 0
    recipe: Recipe = dataclasses.field(default_factory=Recipe)

    @property
    def seed_values(self) -> list[int]:
        """The training seeds."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out = dataclasses.asdict(self)
        out["arms"] = [arm.name for arm in self.arms]
        out["seed_values"] = self.seed_values
        return out


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Set torch's intra-op threads for the duration of the block, then restore them."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def step_costs(split: DigitSplit, samples: int = 300, threads: int = 1) -> list[StepCost]:
    """Per-step CPU cost of the full pipeline on training digits, with ``threads`` threads."""
    images = [split.train[k][0] for k in range(min(samples, len(split.train)))]
    with torch_threads(threads):
        return measure_step_costs(augmentation("full"), images)


def run_experiment(
    options: ExperimentOptions,
    split: DigitSplit,
    on_epoch: Callable[[Arm, int, EpochResult], None] | None = None,
    on_run: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Train every arm with every seed (seed-major order) and return the runs in that order.

    Args:
        options: What to run.
        split: The data.
        on_epoch: Called after every epoch with the arm, the seed and the epoch's result.
        on_run: Called after every run.
    """
    settings = TrainSettings(
        epochs=options.epochs, recipe=options.recipe, num_workers=options.num_workers
    )
    runs: list[RunResult] = []
    with torch_threads(options.torch_threads):
        for seed in options.seed_values:
            for arm in options.arms:

                def forward(result: EpochResult, arm: Arm = arm, seed: int = seed) -> None:
                    if on_epoch is not None:
                        on_epoch(arm, seed, result)

                run = train_arm(arm, seed, split, settings, forward)
                logger.info(
                    "%s seed %d: test accuracy %.4f, %.1f s", arm.name, seed,
                    run.test_accuracy, run.train_seconds,
                )  # fmt: skip
                runs.append(run)
                if on_run is not None:
                    on_run(run)
    return runs


def environment(options: ExperimentOptions) -> dict[str, Any]:
    """What the results depend on: machine, versions, and the CPU settings actually used."""
    import multiprocessing
    import platform

    import numpy
    import torchvision

    import revamper

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    from importlib.metadata import PackageNotFoundError, version

    try:
        mlxtend_version: str | None = version("mlxtend")
    except PackageNotFoundError:
        mlxtend_version = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "mlxtend": mlxtend_version,
        "revamper": revamper.__version__,
        "start_method": multiprocessing.get_context().get_start_method(),
        "num_workers": options.num_workers,
        "torch_threads_training": options.torch_threads,
        "torch_threads_workers": 1,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
