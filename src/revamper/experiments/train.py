"""One arm, one seed: train the CNN from the arm's loader, time it, and evaluate it.

The loop is an ordinary PyTorch training loop. Around it, it measures what the report needs:
wall time of the training epochs (evaluation excluded), the time spent waiting for batches,
the main process's CPU time, the loader's CPU time per stage (from its ``stats``), and the
distinct versions of every training sample the model received
(:class:`~revamper.experiments.diversity.DiversityCounter`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional

from revamper.experiments.arms import Arm
from revamper.experiments.augment import augmentation
from revamper.experiments.digits import DigitDataset, DigitSplit
from revamper.experiments.diversity import DiversityCounter
from revamper.experiments.model import Recipe
from revamper.experiments.tasks import TaskData, digits_data

STAGES = ("load", "partial", "final", "cache_read", "cache_write", "collate")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How every run trains (identical for every arm).

    Attributes:
        epochs: Training epochs.
        recipe: Model, optimiser and schedule.
        num_workers: Loader worker processes.
        eval_batch_size: Batch size of the evaluation on the test part.
        eval_each_epoch: Evaluate after every epoch (the per-epoch test accuracy), or only
            after the last (``test_accuracy`` of the other epochs is NaN): runs of a hundred
            short epochs would otherwise spend most of their time evaluating.
    """

    epochs: int
    recipe: Recipe = dataclasses.field(default_factory=Recipe)
    num_workers: int = 1
    eval_batch_size: int = 500
    eval_each_epoch: bool = True


@dataclasses.dataclass
class EpochResult:
    """One epoch of one run.

    Attributes:
        epoch: Epoch number.
        train_loss: Mean training loss over the epoch's samples.
        train_accuracy: Training accuracy over the epoch's (augmented) samples.
        test_accuracy: Accuracy on the test part after the epoch.
        wall_seconds: Wall time of the epoch's training (evaluation excluded).
        stall_seconds: Time the training loop waited for batches.
        input_cpu_seconds: CPU seconds the loader spent on the epoch (all stages, all workers).
        misses: Samples computed (load + partial transform).
        hits: Samples served from the cache.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    wall_seconds: float
    stall_seconds: float
    input_cpu_seconds: float
    misses: int
    hits: int


@dataclasses.dataclass
class RunResult:
    """One arm trained with one seed.

    Attributes:
        arm: Arm name.
        seed: Seed of the initial weights, the sample order, the eviction plan and the workers'
            random augmentations.
        test_accuracy: Accuracy on the test part after the last epoch.
        test_loss: Mean test loss after the last epoch.
        train_seconds: Wall time of all training epochs (evaluation excluded).
        wall_seconds: Wall time of the whole run (loader start, training, evaluation, close).
        stall_seconds: Total time the training loop waited for batches.
        train_cpu_seconds: CPU seconds of the main process during the training epochs (the
            training steps and receiving batches).
        input_cpu_seconds: CPU seconds the loader spent over all epochs (all stages, all
            workers): the input pipeline's cost.
        input_cpu_by_stage: ``input_cpu_seconds`` by stage (load, partial, final, cache_read,
            cache_write, collate).
        diversity_mean: Mean distinct versions per training sample the model saw.
        diversity_fraction: Distinct versions divided by uses over all samples.
        misses: Samples computed over the run.
        hits: Samples served from the cache over the run.
        cache_bytes: Bytes in the cache at the end (0 without a cache).
        epochs: Per-epoch results.
    """

    arm: str
    seed: int
    test_accuracy: float
    test_loss: float
    train_seconds: float
    wall_seconds: float
    stall_seconds: float
    train_cpu_seconds: float
    input_cpu_seconds: float
    input_cpu_by_stage: dict[str, float]
    diversity_mean: float
    diversity_fraction: float
    misses: int
    hits: int
    cache_bytes: int
    epochs: list[EpochResult]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, per-epoch results included."""
        return dataclasses.asdict(self)


def evaluation_inputs(dataset: DigitDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The test part as model inputs (no augmentation: the model-input steps only) and labels."""
    convert = augmentation("none").final_transform
    return convert(dataset.images), dataset.labels


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``inputs`` (in eval mode)."""
    model.eval()
    correct = 0
    loss = 0.0
    for start in range(0, len(labels), batch_size):
        scores = model(inputs[start : start + batch_size])
        target = labels[start : start + batch_size]
        loss += float(functional.cross_entropy(scores, target, reduction="sum"))
        correct += int((scores.argmax(dim=1) == target).sum())
    return correct / len(labels), loss / len(labels)


def train_arm(
    arm: Arm,
    seed: int,
    split: DigitSplit | TaskData,
    settings: TrainSettings,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> RunResult:
    """Train a fresh model for ``settings.epochs`` epochs from ``arm``'s loader and evaluate it.

    Args:
        arm: What to train with.
        seed: Seeds torch's RNG (initial weights, dropout) and the loader (order, plan, workers).
        split: The data: the digits' split, or any task's :class:`TaskData`.
        settings: Epochs, recipe and workers.
        on_epoch: Called after every epoch (for progress reports).
    """
    started = time.perf_counter()
    data = split if isinstance(split, TaskData) else digits_data(split)
    torch.manual_seed(seed)
    recipe = settings.recipe
    loader = arm.make_loader(
        data.train,
        data.pipelines,
        batch_size=recipe.batch_size,
        shuffle=True,
        num_workers=settings.num_workers,
        seed=seed,
        persistent_workers=settings.num_workers > 0,
    )
    try:
        model, optimizer, scheduler = recipe.build(len(loader), settings.epochs, data.model_factory)
        test_x, test_y = data.test_inputs, data.test_labels
        counter = DiversityCounter(len(data.train))
        epochs: list[EpochResult] = []
        train_cpu = 0.0
        for _ in range(settings.epochs):
            cpu_start = time.process_time()
            result = _train_epoch(loader, model, optimizer, scheduler, counter)
            train_cpu += time.process_time() - cpu_start
            if settings.eval_each_epoch or len(epochs) == settings.epochs - 1:
                result.test_accuracy, _ = evaluate(model, test_x, test_y, settings.eval_batch_size)
            epochs.append(result)
            if on_epoch is not None:
                on_epoch(result)
        accuracy, loss = evaluate(model, test_x, test_y, settings.eval_batch_size)
        cache_bytes = loader.store.stats().bytes_used if loader.store is not None else 0
        by_stage = {stage: 0.0 for stage in STAGES}
        for stats in loader.stats:
            for stage in STAGES:
                by_stage[stage] += float(getattr(stats, f"cpu_{stage}"))
    finally:
        loader.close()
    return RunResult(
        arm=arm.name,
        seed=seed,
        test_accuracy=accuracy,
        test_loss=loss,
        train_seconds=sum(e.wall_seconds for e in epochs),
        wall_seconds=time.perf_counter() - started,
        stall_seconds=sum(e.stall_seconds for e in epochs),
        train_cpu_seconds=train_cpu,
        input_cpu_seconds=sum(by_stage.values()),
        input_cpu_by_stage=by_stage,
        diversity_mean=counter.mean_versions(),
        diversity_fraction=counter.distinct_fraction(),
        misses=sum(e.misses for e in epochs),
        hits=sum(e.hits for e in epochs),
        cache_bytes=cache_bytes,
        epochs=epochs,
    )


def _train_epoch(
    loader: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    counter: DiversityCounter,
) -> EpochResult:
    model.train()
    start = time.perf_counter()
    stall = 0.0
    loss_sum = 0.0
    correct = 0
    seen = 0
    iterator = iter(loader)
    while True:
        asked = time.perf_counter()
        try:
            images, labels, indices = next(iterator)
        except StopIteration:
            break
        stall += time.perf_counter() - asked
        counter.add(indices, images)
        scores = model(images)
        loss = functional.cross_entropy(scores, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        scheduler.step()
        loss_sum += float(loss.detach()) * len(labels)
        correct += int((scores.detach().argmax(dim=1) == labels).sum())
        seen += len(labels)
    wall = time.perf_counter() - start
    stats = iterator.stats
    return EpochResult(
        epoch=stats.epoch,
        train_loss=loss_sum / max(1, seen),
        train_accuracy=correct / max(1, seen),
        test_accuracy=float("nan"),
        wall_seconds=wall,
        stall_seconds=stall,
        input_cpu_seconds=stats.cpu_total,
        misses=stats.misses,
        hits=stats.hits,
    )
