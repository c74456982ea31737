"""Detection samples without ``whole_sample=True`` warn once (issue 12.5).

The image is cropped and flipped, the boxes are not, and until now nothing said so.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from revamper import RevamperLoader
from tests.helpers import IndexDataset, stamp_computation


class Detection(torch.utils.data.Dataset[tuple[Any, dict[str, Any]]]):
    """Item i: ``(Image, {"boxes": BoundingBoxes, "labels": tensor})``, as torchvision's."""

    def __init__(self, size: int, *, nested: bool = True) -> None:
        self.size = size
        self.nested = nested

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Any:
        image = tv_tensors.Image(torch.full((3, 8, 8), index, dtype=torch.uint8))
        boxes = tv_tensors.BoundingBoxes([[0, 0, 4, 4]], format="XYXY", canvas_size=(8, 8))
        if not self.nested:
            return image, boxes
        return image, {"boxes": boxes, "labels": torch.tensor([index])}


def as_list(samples: list[Any]) -> list[Any]:
    return samples


def run(loader: RevamperLoader, epochs: int = 3) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with loader:
            for _ in range(epochs):
                for _batch in loader:
                    pass
    return [w for w in caught if "whole_sample=True" in str(w.message)]


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("nested", [True, False])
def test_boxes_passed_through_untouched_warn_once(num_workers: int, nested: bool) -> None:
    loader = RevamperLoader(
        Detection(12, nested=nested),
        batch_size=3,
        partial_transform=v2.RandomHorizontalFlip(p=1.0),
        collate_fn=as_list,
        num_workers=num_workers,
        seed=0,
    )
    found = run(loader)
    assert len(found) == 1, [str(w.message) for w in found]
    assert found[0].category is UserWarning
    message = str(found[0].message)
    assert "BoundingBoxes" in message
    assert ("[1]['boxes']" if nested else "[1]") in message
    assert found[0].filename == __file__  # points at the training loop


def test_whole_sample_or_plain_targets_do_not_warn() -> None:
    whole = RevamperLoader(
        Detection(6),
        batch_size=3,
        partial_transform=v2.RandomHorizontalFlip(p=1.0),
        whole_sample=True,
        collate_fn=as_list,
        seed=0,
    )
    assert run(whole) == []
    plain = RevamperLoader(
        IndexDataset(6), batch_size=3, partial_transform=stamp_computation, seed=0
    )
    assert run(plain) == []


def test_boxes_outside_transform_keys_warn() -> None:
    class Rows(Detection):
        def __getitem__(self, index: int) -> Any:
            image, target = super().__getitem__(index)
            return {"image": image, **target}

    loader = RevamperLoader(
        Rows(6),
        batch_size=3,
        final_transform=v2.RandomHorizontalFlip(p=1.0),
        transform_keys="image",
        collate_fn=as_list,
        seed=0,
    )
    found = run(loader)
    assert len(found) == 1 and "['boxes']" in str(found[0].message)
    assert "transform_keys" in str(found[0].message)


def test_the_check_imports_nothing() -> None:
    code = (
        "import sys\n"
        "from revamper import RevamperLoader\n"
        "from tests.helpers import IndexDataset, stamp_computation\n"
        "with RevamperLoader(IndexDataset(8), batch_size=2, partial_transform=stamp_computation,"
        " seed=0) as loader:\n"
        "    for _ in loader: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('torchvision')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )
    assert out.stdout.strip() == "[]"
