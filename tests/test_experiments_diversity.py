"""The diversity counter: distinct versions per sample index, by content."""

from __future__ import annotations

import pytest
import torch

from revamper.experiments.diversity import DiversityCounter, tensor_digest


def test_identical_tensors_are_one_version() -> None:
    counter = DiversityCounter(2)
    image = torch.rand(1, 4, 4)
    for _ in range(5):
        counter.add([0], image.clone().unsqueeze(0))  # equal content, new tensor each time
    assert counter.versions().tolist() == [1, 0]
    assert counter.uses().tolist() == [5, 0]
    assert counter.mean_versions() == 1.0  # over the samples seen
    assert counter.distinct_fraction() == pytest.approx(1 / 5)


def test_distinct_tensors_count_per_index() -> None:
    counter = DiversityCounter(3)
    a, b, c = torch.zeros(2, 2), torch.ones(2, 2), torch.full((2, 2), 2.0)
    counter.add(torch.tensor([0, 1, 2]), torch.stack([a, a, a]))
    counter.add(torch.tensor([0, 1, 2]), torch.stack([b, a, a]))
    counter.add(torch.tensor([2, 0, 1]), torch.stack([c, c, a]))
    assert counter.versions().tolist() == [3, 1, 2]
    assert counter.uses().tolist() == [3, 3, 3]
    assert counter.mean_versions() == pytest.approx(2.0)
    assert counter.distinct_fraction() == pytest.approx(6 / 9)


def test_the_same_version_under_two_indices_counts_for_each() -> None:
    counter = DiversityCounter(2)
    x = torch.ones(1, 3)
    counter.add([0, 1], torch.cat([x, x]))
    assert counter.versions().tolist() == [1, 1]


def test_digest_tells_values_dtypes_and_shapes_apart() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert tensor_digest(x) == tensor_digest(x.clone())
    assert tensor_digest(x) != tensor_digest(torch.nextafter(x, x + 1))
    assert tensor_digest(x) != tensor_digest(x.double())
    assert tensor_digest(x) != tensor_digest(x.reshape(2, 2))
    assert tensor_digest(x[::2]) == tensor_digest(torch.tensor([1.0, 3.0]))  # views: by value


def test_bad_batches_are_refused() -> None:
    counter = DiversityCounter(2)
    with pytest.raises(ValueError, match="indices for a batch"):
        counter.add([0], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="out of range"):
        counter.add([2], torch.zeros(1, 3))
    with pytest.raises(ValueError, match="at least 1"):
        DiversityCounter(0)
    assert DiversityCounter(1).mean_versions() == 0.0
    assert DiversityCounter(1).distinct_fraction() == 0.0
