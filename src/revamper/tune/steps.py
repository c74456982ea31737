"""The pipeline to tune as ordered steps, or a clear error when it cannot be split.

Tuning needs the augmentation pipeline as separate steps: every place between two steps is a
candidate split point. A torchvision ``Compose`` (v1 or v2), a ``torch.nn.Sequential``, a
:class:`~revamper.transforms.Chain`, a list or tuple of callables and a
:class:`~revamper.pipelines.Pipeline` all have steps. One opaque callable has none that revamper
could see, so :func:`as_pipeline` refuses it with a message that says what to pass instead.
"""

from __future__ import annotations

from typing import Any

from revamper.pipelines import Pipeline, pipeline_from


class UnsplittableError(ValueError):
    """The pipeline is one opaque callable, so there is no split point to choose."""


def _describe(transforms: Any) -> str:
    text = repr(transforms)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(transforms).__name__} {text}"


def as_pipeline(transforms: Any, *, name: str = "pipeline") -> Pipeline:
    """Return ``transforms`` as a :class:`~revamper.pipelines.Pipeline` of named steps.

    Args:
        transforms: The full augmentation pipeline: a :class:`~revamper.pipelines.Pipeline`, a
            torchvision ``Compose``, a ``torch.nn.Sequential``, a list of callables, or a
            ``(partial, final)`` pair (which can only be split where it is already split).
        name: The name used in messages and reports.

    Returns:
        The pipeline, with one step per transform.

    Raises:
        UnsplittableError: If ``transforms`` is a single callable with no visible steps.
        ValueError: If ``transforms`` is not a pipeline at all (say, a list holding something
            that is not callable).
    """
    if isinstance(transforms, Pipeline):
        return transforms
    steps = getattr(transforms, "transforms", None)
    if steps is None and _is_sequential(transforms):
        transforms = list(transforms)
    elif steps is None and callable(transforms) and not isinstance(transforms, (list, tuple)):
        raise UnsplittableError(
            f"cannot choose a split point in {_describe(transforms)}: it is one opaque callable. "
            "Pass its steps instead, as a list of callables or a torchvision Compose (e.g. "
            "[Decode(), RandomResizedCrop(224), RandomHorizontalFlip(), RandAugment(), "
            "PILToTensor()]), or wrap the expensive and the cheap parts as two callables"
        )
    if isinstance(transforms, (list, tuple)) and not transforms:
        raise ValueError(f"pipeline {name!r} has no steps: pass at least one transform")
    return pipeline_from(transforms, name=name)


def _is_sequential(transforms: Any) -> bool:
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(transforms, nn.Sequential)


def candidate_splits(pipeline: Pipeline) -> list[int]:
    """Every split point the pipeline allows: ``0..len(steps)``, or its one fixed split."""
    if pipeline.fixed_split:
        return [pipeline.default_split]
    return list(range(len(pipeline.steps) + 1))
