"""revamper's RandAugment: torchvision's, with its augmentation table built once per size."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from revamper import randaugment
from revamper.randaugment import RandAugment


def images(seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(224, 224), (160, 200), (31, 17), (224, 224)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"num_ops": 2, "magnitude": 9},
        {"num_ops": 3, "magnitude": 30, "num_magnitude_bins": 31},
        {"num_ops": 1, "magnitude": 5, "num_magnitude_bins": 11, "fill": [10, 20, 30]},
    ],
)
def test_outputs_and_draws_are_torchvisions(arguments: dict[str, Any]) -> None:
    ours, theirs = RandAugment(**arguments), T.RandAugment(**arguments)
    for seed in range(30):
        for image in images(seed):
            torch.manual_seed(seed)
            a = ours(image)
            after = torch.get_rng_state()
            torch.manual_seed(seed)
            b = theirs(image)
            assert np.array_equal(np.asarray(a), np.asarray(b)), (seed, image.size)
            assert torch.equal(after, torch.get_rng_state())  # the same draws, as many


def assert_same_on_a_tensor(ours: Any, theirs: Any, seeds: int) -> None:
    tensor = T.functional.pil_to_tensor(images()[0])
    for seed in range(seeds):
        torch.manual_seed(seed)
        a = ours(tensor)
        torch.manual_seed(seed)
        assert torch.equal(a, theirs(tensor)), seed


def test_on_tensors_too() -> None:
    assert_same_on_a_tensor(RandAugment(2, 9), T.RandAugment(2, 9), seeds=20)


def test_builds_the_table_once_per_size(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[int, tuple[int, int]]] = []
    original = T.RandAugment._augmentation_space

    def counting(self: Any, num_bins: int, image_size: tuple[int, int]) -> Any:
        built.append((num_bins, tuple(image_size)))
        return original(self, num_bins, image_size)

    monkeypatch.setattr(T.RandAugment, "_augmentation_space", counting)
    step = RandAugment()
    for _ in range(5):
        for image in images():
            step(image)
    assert sorted(built) == [(31, (31, 17)), (31, (160, 200)), (31, (224, 224))]


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(randaugment, "MAX_CACHED_SIZES", 3)
    step = RandAugment()
    for width in range(10, 30):
        step(Image.new("RGB", (width, 12)))
    assert 1 <= len(step.__dict__["_revamper_tables"]) <= 3


def test_a_torchvision_that_passes_more_arguments_is_not_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = T.RandAugment._augmentation_space

    def newer(self: Any, num_bins: int, image_size: Any, extra: Any = None) -> Any:
        return original(self, num_bins, image_size)

    monkeypatch.setattr(T.RandAugment, "_augmentation_space", newer)
    step = RandAugment()
    rotate = step._augmentation_space(31, (224, 224))["Rotate"][0]
    assert step._augmentation_space(31, (224, 224))["Rotate"][0] is rotate  # cached
    passed = step._augmentation_space(31, (224, 224), "more")["Rotate"][0]  # passed through
    assert passed is not rotate and torch.equal(passed, rotate)


def test_what_a_caller_changes_in_the_table_stays_its_own() -> None:
    step = RandAugment()
    table = step._augmentation_space(31, (224, 224))
    table.pop("Identity")
    table["Rotate"] = (table["Rotate"][0] * 2, True)
    again = step._augmentation_space(31, (224, 224))
    assert "Identity" in again and float(again["Rotate"][0][9]) == 9.0


class _NoIdentity(RandAugment):  # edits the table it gets from super(), as torchvision allows
    def _augmentation_space(self, num_bins: int, image_size: Any) -> Any:
        table = super()._augmentation_space(num_bins, image_size)
        table.pop("Identity")
        rotate, signed = table["Rotate"]
        table["Rotate"] = (rotate * 2, signed)
        return table


def test_a_subclass_with_its_own_table_gets_torchvisions_fresh_one() -> None:
    # Found in review: the cached table went back to the subclass by reference, so every call
    # doubled Rotate's magnitudes again, and the second call had no "Identity" to pop.
    step = _NoIdentity()
    for _ in range(5):
        step(torch.zeros(3, 32, 32, dtype=torch.uint8))
    assert float(step._augmentation_space(31, (32, 32))["Rotate"][0][9]) == 18.0


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_scripting_a_subclass_refuses_rather_than_dropping_its_changes() -> None:
    with pytest.raises(TypeError, match=r"_NoIdentity.*__prepare_scriptable__"):
        torch.jit.script(_NoIdentity())


def test_pickles_deep_copies_and_describes_itself_as_torchvisions() -> None:
    step = RandAugment(2, 9)
    step(images()[0])  # a filled cache travels along, harmlessly
    for clone in (pickle.loads(pickle.dumps(step)), copy.deepcopy(step)):
        torch.manual_seed(4)
        a = clone(images()[1])
        torch.manual_seed(4)
        assert np.array_equal(np.asarray(a), np.asarray(T.RandAugment(2, 9)(images()[1])))
    assert repr(step) == repr(T.RandAugment(2, 9))
    assert isinstance(step, T.RandAugment)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_scripting_gives_torchvisions_randaugment() -> None:
    step = RandAugment(2, 9)
    assert_same_on_a_tensor(torch.jit.script(step), step, seeds=5)
