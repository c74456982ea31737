"""Each arm of the accuracy experiment builds the loader it should, on the same machinery."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from revamper.experiments.arms import DEFAULT_ARMS, Arm, parse_arms
from revamper.experiments.augment import MNIST_MEAN, MNIST_STD, augmentation, measure_step_costs
from revamper.experiments.digits import DigitDataset
from revamper.experiments.diversity import DiversityCounter

SIZE = 24
BATCH = 8


def tiny_dataset() -> DigitDataset:
    rng = np.random.default_rng(0)
    return DigitDataset(rng.integers(0, 256, (SIZE, 28, 28), dtype=np.uint8), np.arange(SIZE) % 10)


def consume(arm: Arm, epochs: int) -> tuple[DiversityCounter, list[dict[int, torch.Tensor]], Any]:
    """Run ``epochs`` epochs of ``arm``'s loader in-process; return what the model would see."""
    dataset = tiny_dataset()
    counter = DiversityCounter(SIZE)
    seen: list[dict[int, torch.Tensor]] = []
    loader = arm.make_loader(dataset, batch_size=BATCH, shuffle=True, num_workers=0, seed=3)
    try:
        for _ in range(epochs):
            outputs: dict[int, torch.Tensor] = {}
            for images, labels, indices in loader:
                assert images.dtype == torch.float32 and images.shape[1:] == (1, 28, 28)
                assert labels.tolist() == [int(i) % 10 for i in indices]
                counter.add(indices, images)
                outputs.update(zip(indices.tolist(), images, strict=True))
            seen.append(outputs)
        cached = None if loader.store is None else loader.store.stats().bytes_used
        info = (cached, loader.plan_config.reuse_factor, list(loader.stats))
    finally:
        loader.close()
    return counter, seen, info


def test_none_is_the_unaugmented_image_every_time() -> None:
    counter, seen, (cached, reuse, stats) = consume(Arm("none"), epochs=3)
    assert cached is None and reuse == 1
    assert counter.versions().tolist() == [1] * SIZE
    dataset = tiny_dataset()
    expected = (dataset.images[5].float() / 255 - MNIST_MEAN) / MNIST_STD
    torch.testing.assert_close(seen[2][5], expected)
    assert all(s.hits == 0 and s.misses == SIZE for s in stats)


@pytest.mark.parametrize("kind", ["standard", "simplified"])
def test_standard_and_simplified_cache_nothing_and_augment_every_use(kind: str) -> None:
    counter, _, (cached, reuse, stats) = consume(Arm.parse(kind), epochs=3)
    assert cached is None and reuse == 1
    assert counter.versions().tolist() == [3] * SIZE
    assert all(s.hits == 0 and s.misses == SIZE and s.cpu_partial > 0 for s in stats)


def test_simplified_drops_only_the_elastic_step() -> None:
    full, simplified = augmentation("full"), augmentation("simplified")
    assert full.partial[0].name == simplified.partial[0].name
    assert any("Elastic" in s.name for s in full.partial)
    assert not any("Elastic" in s.name for s in simplified.partial)
    assert [s.name for s in full.final] == [s.name for s in simplified.final]
    assert Arm("simplified").pipeline == "simplified" and Arm("echo", 2).pipeline == "full"


def test_echo_caches_the_full_pipeline_and_repeats_it() -> None:
    epochs = 4
    counter, seen, (cached, reuse, stats) = consume(Arm("echo", 2), epochs=epochs)
    assert cached is not None and reuse == 2
    hits = sum(s.hits for s in stats)
    misses = sum(s.misses for s in stats)
    assert hits > 0 and misses + hits == SIZE * epochs
    # Every computed sample is one new version; every hit repeats one exactly.
    assert int(counter.versions().sum()) == misses
    repeated = [i for i in range(SIZE) if torch.equal(seen[0][i], seen[1][i])]
    assert len(repeated) == stats[1].hits == SIZE - SIZE // 2
    # What is cached is the model's float input (4 bytes per pixel), not the uint8 image.
    assert cached >= SIZE * 28 * 28 * 4


def test_refurbish_caches_the_partial_image_and_reaugments_every_use() -> None:
    epochs = 3
    counter, seen, (cached, reuse, stats) = consume(Arm("refurbish", 3), epochs=epochs)
    assert cached is not None and reuse == 3
    assert [s.planned_misses for s in stats] == [SIZE, SIZE // 3, SIZE // 3]
    assert sum(s.hits for s in stats) > 0
    # The final part is random: nearly every use is a new version (it has 25 shifts, so two
    # uses of one cached entry can coincide), far more than echoing's one per computation.
    assert counter.versions().mean() >= 0.85 * epochs
    assert int(counter.versions().sum()) > sum(s.misses for s in stats)
    # What is cached is the uint8 image (one byte per pixel plus a small header).
    assert cached < SIZE * 28 * 28 * 2
    assert any(not torch.equal(seen[0][i], seen[1][i]) for i in range(SIZE))


@pytest.mark.parametrize(
    ("spec", "name"),
    [("none", "none"), ("standard", "standard"), ("echo:2", "echo-r2"),
     ("refurbish:4", "refurbish-r4"), (" refurbish-r3 ", "refurbish-r3")],
)  # fmt: skip
def test_arm_names(spec: str, name: str) -> None:
    assert Arm.parse(spec).name == name
    assert Arm.parse(Arm.parse(spec).name) == Arm.parse(spec)


@pytest.mark.parametrize(
    ("text", "message"),
    [("bogus", "unknown arm"), ("echo:x", "whole reuse factor"), ("echo", "whole reuse"),
     ("refurbish:1", "at least 2"), ("none:2", "takes no reuse factor"),
     ("standard,echo:2,standard", "twice: standard"), (" , ", "no arms")],
)  # fmt: skip
def test_bad_arm_lists(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_arms(text)


def test_default_arms() -> None:
    names = [arm.name for arm in parse_arms(DEFAULT_ARMS)]
    assert names == ["none", "standard", "simplified", "echo-r2", "echo-r3", "echo-r4",
                     "refurbish-r2", "refurbish-r3", "refurbish-r4"]  # fmt: skip


def test_step_costs_cover_every_step_and_the_partial_part_dominates() -> None:
    images = [tiny_dataset()[k][0] for k in range(SIZE)]
    costs = measure_step_costs(augmentation("full"), images, warmup=2)
    assert [c.part for c in costs] == ["partial"] * 2 + ["final"] * 3
    assert all(c.ms_per_sample > 0 for c in costs)
    partial = sum(c.ms_per_sample for c in costs if c.part == "partial")
    final = sum(c.ms_per_sample for c in costs if c.part == "final")
    assert partial > 2 * final
    with pytest.raises(ValueError, match="at least one image"):
        measure_step_costs(augmentation("full"), [])
    with pytest.raises(ValueError, match="unknown augmentation"):
        augmentation("heavy")
