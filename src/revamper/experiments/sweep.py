"""The sweep's grid: tasks x training-set sizes x arms x seeds, at equal optimisation steps.

Augmentation matters most when data are scarce relative to the training length, so the sweep
trains every training-set size for (about) the same number of optimisation steps: a smaller set
runs for more epochs, and so each sample is reused more often, which is where echoing's identical
repeats should cost accuracy and refurbishing's fresh final part should not. The plan is a pure
function of :class:`SweepOptions`; :mod:`~revamper.experiments.sweep_run` executes it.

Runs are ordered seed-major (every cell and arm with seed 0, then with seed 1, ...), so a sweep
stopped early still holds complete, paired seeds for every cell.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from revamper.experiments.arms import Arm, parse_arms
from revamper.experiments.model import Recipe

SWEEP_ARMS = "none,standard,echo:2,echo:4,echo:8,refurbish:2,refurbish:4,refurbish:8"
"""The sweep's arms unless told otherwise: both ways of caching at r = 2, 4 and 8."""


@dataclasses.dataclass(frozen=True)
class TaskGrid:
    """One task's part of the sweep.

    Attributes:
        task: ``digits`` or ``photos``.
        sizes: Training-set sizes (stratified subsets; a smaller one is part of a larger one).
        steps: Optimisation steps of every run (epochs = steps / batches per epoch, rounded).
        test_size: Held-out test samples (the same set for every size).
        num_images: Images in the photo set the split is drawn from (photos only).
    """

    task: str
    sizes: tuple[int, ...]
    steps: int
    test_size: int
    num_images: int = 0


@dataclasses.dataclass(frozen=True)
class SweepOptions:
    """Everything that defines a sweep.

    Attributes:
        grids: One per task.
        arms: The arms of every cell (``none`` and ``standard`` belong in each).
        seeds: Seeds per arm and cell (seeds 0 to ``seeds - 1``).
        batch_size: Samples per step.
        warmup_steps: Linear warm-up, in steps (fixed, whatever the epochs).
        jobs: Runs in parallel (separate processes, one torch thread each).
        quick: A smoke test, not evidence.
    """

    grids: tuple[TaskGrid, ...]
    arms: tuple[Arm, ...]
    seeds: int = 5
    batch_size: int = 64
    warmup_steps: int = 60
    jobs: int = 2
    quick: bool = False

    def identity(self) -> dict[str, Any]:
        """What a resumed sweep must share with the records it continues (not seeds, jobs)."""
        return {
            "grids": [dataclasses.asdict(g) for g in self.grids],
            "arms": [a.name for a in self.arms],
            "batch_size": self.batch_size,
            "warmup_steps": self.warmup_steps,
            "quick": self.quick,
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**self.identity(), "seeds": self.seeds, "jobs": self.jobs}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the sweep.

    Attributes:
        task: The task.
        train_size: Training samples.
        test_size: Test samples.
        num_images: Photo set size (photos only).
        arm: The arm.
        seed: The seed (initial weights, order, plan, augmentations).
        epochs: Epochs, chosen for the grid's steps.
        steps: Optimisation steps it will take.
        recipe: The training recipe (batch size, warm-up in steps).
    """

    task: str
    train_size: int
    test_size: int
    num_images: int
    arm: Arm
    seed: int
    epochs: int
    steps: int
    recipe: Recipe

    @property
    def key(self) -> str:
        """Unique within a sweep: ``task/size/arm/seed``."""
        return run_key(self.task, self.train_size, self.arm.name, self.seed)


def run_key(task: str, train_size: int, arm: str, seed: int) -> str:
    """The key of a run, as :attr:`RunSpec.key` and the records spell it."""
    return f"{task}/{train_size}/{arm}/{seed}"


def epochs_for(train_size: int, batch_size: int, steps: int) -> tuple[int, int]:
    """``(epochs, steps)``: the epochs closest to ``steps`` steps, and the steps they make.

    Batches per epoch are ``ceil(train_size / batch_size)`` (the last one may be short).
    """
    if train_size < 1 or batch_size < 1 or steps < 1:
        raise ValueError("train_size, batch_size and steps must be at least 1")
    per_epoch = math.ceil(train_size / batch_size)
    epochs = max(1, round(steps / per_epoch))
    return epochs, epochs * per_epoch


def plan_runs(options: SweepOptions) -> list[RunSpec]:
    """Every run of the sweep, seed-major (then task, size, arm)."""
    recipe = Recipe(batch_size=options.batch_size, warmup_steps=options.warmup_steps)
    runs = []
    for seed in range(options.seeds):
        for grid in options.grids:
            for size in grid.sizes:
                epochs, steps = epochs_for(size, options.batch_size, grid.steps)
                for arm in options.arms:
                    runs.append(
                        RunSpec(
                            task=grid.task,
                            train_size=size,
                            test_size=grid.test_size,
                            num_images=grid.num_images,
                            arm=arm,
                            seed=seed,
                            epochs=epochs,
                            steps=steps,
                            recipe=recipe,
                        )
                    )
    return runs


def full_grids() -> tuple[TaskGrid, ...]:
    """The full sweep's grids (sized for about an hour on 2 idle cores; see docs/accuracy.md).

    The photographs are 1, 2 and 5 per class: each class is cut from one photograph, so with
    100 training images the task is saturated (99.2-99.4% test accuracy with or without
    augmentation in a pilot) and cannot show what diversity does.
    """
    return (
        TaskGrid("digits", (250, 500, 1000, 4000), steps=504, test_size=1000),
        TaskGrid("photos", (10, 20, 50), steps=300, test_size=500, num_images=2000),
    )


def quick_grids() -> tuple[TaskGrid, ...]:
    """The ``--quick`` sweep's grids: a smoke test of every code path, not evidence."""
    return (
        TaskGrid("digits", (64, 128), steps=12, test_size=200),
        TaskGrid("photos", (10,), steps=8, test_size=40, num_images=100),
    )


QUICK_ARMS = "none,standard,echo:2,refurbish:2"
FULL_SEEDS = 7
"""Seeds per cell of the full sweep (at least 5; 7 narrows the paired intervals by about 20%)."""


def default_options(*, quick: bool = False, jobs: int = 2) -> SweepOptions:
    """The sweep as ``revamper experiment accuracy --sweep [--quick]`` runs it by default."""
    if quick:
        return SweepOptions(quick_grids(), tuple(parse_arms(QUICK_ARMS)), 2, jobs=jobs, quick=True)
    return SweepOptions(full_grids(), tuple(parse_arms(SWEEP_ARMS)), FULL_SEEDS, jobs=jobs)
