"""The augmentation pipelines of the accuracy experiment, as named steps, and their costs.

All work on uint8 ``(1, 28, 28)`` tensors (torchvision transforms v2) and end with the same
model-input step (float in [0, 1], then normalised with MNIST's mean and spread):

- **full** (the standard arm's pipeline), split where refurbishing caches it:
  partial = RandomAffine (rotation, scale, shear) + ElasticTransform (Simard-style smooth local
  warps; by far the most expensive step) | final = RandomCrop with 2-pixel padding (a random
  shift of up to 2 pixels each way: 25 outcomes), ToDtype, Normalize. The cached entry is a
  uint8 image (784 bytes). (RandomErasing in the final part was tried and dropped: it lowered
  accuracy on these digits; see ``docs/accuracy.md``.)
- **simplified**: the full pipeline without the elastic step (the cheaper pipeline a user could
  pick instead of refurbishing).
- **none**: only the model-input step.

:func:`measure_step_costs` times every step on real digits, so the choice of the split can be
checked on the machine that runs the experiment.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from revamper.transforms import Chain

Transform = Callable[[Any], Any]
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


@dataclasses.dataclass(frozen=True)
class Step:
    """One named step of a pipeline.

    Attributes:
        name: What it does, for reports.
        transform: The callable (picklable, so spawned workers can run it).
    """

    name: str
    transform: Transform


def _v2() -> Any:
    from torchvision.transforms import v2

    return v2


def partial_steps(*, elastic: bool = True) -> list[Step]:
    """The cached part: a random affine warp, then (unless ``elastic=False``) an elastic one."""
    v2 = _v2()
    steps = [
        Step(
            "RandomAffine(12°, scale 0.9-1.1, shear 8°)",
            v2.RandomAffine(degrees=12, scale=(0.9, 1.1), shear=8),
        )
    ]
    if elastic:
        steps.append(
            Step("ElasticTransform(α 40, σ 4)", v2.ElasticTransform(alpha=40.0, sigma=4.0))
        )
    return steps


def model_input_steps() -> list[Step]:
    """Turn a uint8 image into the model's input: float in [0, 1], then normalised."""
    v2 = _v2()
    return [
        Step("ToDtype(float32)", v2.ToDtype(torch.float32, scale=True)),
        Step("Normalize", v2.Normalize([MNIST_MEAN], [MNIST_STD])),
    ]


def final_steps() -> list[Step]:
    """The part re-run on every use: a random shift of up to 2 pixels, then the model input."""
    v2 = _v2()
    return [
        Step("RandomCrop(28, pad 2): shift ≤ 2 px", v2.RandomCrop(28, padding=2)),
        *model_input_steps(),
    ]


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """A pipeline split into the part a cache may keep and the part run on every use.

    Attributes:
        name: ``full``, ``simplified`` or ``none``.
        partial: The expensive first steps (empty for ``none``).
        final: The remaining steps.
    """

    name: str
    partial: tuple[Step, ...]
    final: tuple[Step, ...]

    @property
    def partial_transform(self) -> Transform | None:
        """The partial steps as one callable, or ``None`` if there are none."""
        return Chain(*(s.transform for s in self.partial)) if self.partial else None

    @property
    def final_transform(self) -> Transform:
        """The final steps as one callable."""
        return Chain(*(s.transform for s in self.final))

    def describe(self) -> str:
        """``partial steps | final steps``, for reports."""
        left = " + ".join(s.name for s in self.partial) or "-"
        return f"{left} | " + " + ".join(s.name for s in self.final)


def augmentation(name: str) -> Augmentation:
    """The named pipeline: ``full``, ``simplified`` or ``none``.

    Raises:
        ValueError: For any other name.
    """
    if name == "full":
        return Augmentation(name, tuple(partial_steps()), tuple(final_steps()))
    if name == "simplified":
        return Augmentation(name, tuple(partial_steps(elastic=False)), tuple(final_steps()))
    if name == "none":
        return Augmentation(name, (), tuple(model_input_steps()))
    raise ValueError(f"unknown augmentation {name!r}: use full, simplified or none")


@dataclasses.dataclass(frozen=True)
class StepCost:
    """Measured CPU cost of one step.

    Attributes:
        part: ``partial`` or ``final``.
        step: The step's name.
        ms_per_sample: CPU milliseconds per sample (this thread's CPU time).
    """

    part: str
    step: str
    ms_per_sample: float


def measure_step_costs(
    pipeline: Augmentation, images: Sequence[torch.Tensor], *, warmup: int = 10
) -> list[StepCost]:
    """Time each step of ``pipeline`` on ``images``, applying the steps in order.

    Each step receives what the previous step produced for the same image, as in the real
    pipeline. Times are CPU seconds of the calling thread (``time.thread_time``), so they do not
    count waiting; run it with ``torch.set_num_threads(1)`` to match a loader worker.

    Args:
        pipeline: The pipeline to time.
        images: uint8 ``(1, 28, 28)`` tensors.
        warmup: Images run through every step first, untimed.

    Returns:
        One :class:`StepCost` per step, partial steps first.
    """
    if not images:
        raise ValueError("measure_step_costs needs at least one image")
    steps = [("partial", s) for s in pipeline.partial] + [("final", s) for s in pipeline.final]
    for image in images[:warmup]:
        value: Any = image
        for _, step in steps:
            value = step.transform(value)
    values: list[Any] = list(images)
    costs = []
    for part, step in steps:
        start = time.thread_time()
        values = [step.transform(v) for v in values]
        elapsed = time.thread_time() - start
        costs.append(StepCost(part, step.name, 1e3 * elapsed / len(values)))
    return costs
