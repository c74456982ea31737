"""albumentations 2.x through revamper.transforms.Albumentations, alone and in a RevamperLoader."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from PIL import Image

from revamper import RevamperLoader
from revamper.transforms import Albumentations

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import
A = pytest.importorskip("albumentations")

pytestmark = pytest.mark.timeout(120)

SIZE = 48
NEAREST = 0  # cv2.INTER_NEAREST: the image keeps exact values, so the mask can be compared


def sample(index: int) -> dict[str, Any]:
    """An image whose channel 0 is its mask and whose channel 1 marks its box with 255."""
    rng = np.random.default_rng(index)
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    mask = (rng.random((SIZE, SIZE)) < 0.5).astype(np.uint8) * 7
    image[..., 0] = mask
    x0, y0 = rng.integers(0, SIZE // 2, size=2)
    x1, y1 = x0 + rng.integers(8, SIZE // 2), y0 + rng.integers(8, SIZE // 2)
    image[y0:y1, x0:x1, 1] = 255
    image[..., 2] = index
    box = np.array([[x0, y0, x1, y1]], dtype=np.float32)
    return {"image": image, "mask": mask, "bboxes": box, "labels": np.array([index]), "id": index}


class DictData:
    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        return sample(index)


def check_consistent(out: dict[str, Any], index: int) -> None:
    image = out["image"]
    assert (image[..., 2] == index).all() and out["id"] == index
    np.testing.assert_array_equal(out["mask"], image[..., 0])  # mask cropped/flipped alike
    marked = np.argwhere(image[..., 1] == 255)
    boxes = np.asarray(out["bboxes"])
    if len(marked) == 0:
        return  # the crop missed the box (albumentations drops or clips it)
    assert boxes.shape == (1, 4)
    (ys, xs), (ye, xe) = marked.min(axis=0), marked.max(axis=0) + 1
    np.testing.assert_allclose(boxes[0], [xs, ys, xe, ye], atol=1.5)


def whole_sample_pipeline() -> tuple[Albumentations, Albumentations]:
    boxes = A.BboxParams(format="pascal_voc", label_fields=["labels"])
    crop = A.Compose(
        [A.RandomResizedCrop(size=(32, 32), scale=(0.5, 1.0), interpolation=NEAREST)],
        bbox_params=boxes,
    )
    flip = A.Compose([A.HorizontalFlip(p=0.5)], bbox_params=boxes)
    return Albumentations(crop), Albumentations(flip)


def test_an_image_gets_the_transformed_image() -> None:
    image = sample(3)["image"]
    flipped = Albumentations(A.HorizontalFlip(p=1.0))(image)
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    from_pil = Albumentations(A.HorizontalFlip(p=1.0))(Image.fromarray(image))
    np.testing.assert_array_equal(from_pil, image[:, ::-1])


def test_a_whole_sample_dict_keeps_mask_and_boxes_with_the_image() -> None:
    crop, flip = whole_sample_pipeline()
    for index in range(20):
        out = flip(crop(sample(index)))
        assert out["image"].shape == (32, 32, 3)
        check_consistent(out, index)


def test_image_key_and_tuple_fields() -> None:
    flip = A.HorizontalFlip(p=1.0)
    item = sample(1)
    out = Albumentations(flip, image_key="pixel_values")({"pixel_values": item["image"], "y": 1})
    np.testing.assert_array_equal(out["pixel_values"], item["image"][:, ::-1])
    assert out["y"] == 1 and "image" not in out
    image, mask, label = Albumentations(flip, fields=("image", "mask"))(
        (item["image"], item["mask"], 5)
    )
    np.testing.assert_array_equal(image[..., 0], mask)
    np.testing.assert_array_equal(mask, item["mask"][:, ::-1])
    assert label == 5
    with pytest.raises(ValueError, match="names 3 positions"):
        Albumentations(flip, fields=("image", "mask", "bboxes"))((item["image"], 1))


def test_the_adapter_pickles_and_describes_itself() -> None:
    adapter = Albumentations(A.HorizontalFlip(p=1.0), image_key="img")
    again = pickle.loads(pickle.dumps(adapter))
    assert repr(again) == repr(adapter) and "HorizontalFlip" in repr(adapter)
    with pytest.raises(TypeError, match="callable"):
        Albumentations(42)  # type: ignore[arg-type]


def test_revamper_does_not_import_albumentations() -> None:
    code = "import sys, revamper, revamper.transforms; sys.exit('albumentations' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def keep_lists(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch  # boxes per sample differ in number: no stacking


@pytest.mark.slow
def test_whole_sample_dicts_through_the_loader_with_workers() -> None:
    crop, flip = whole_sample_pipeline()
    size, epochs = 24, 3
    loader = RevamperLoader(
        DictData(size),
        batch_size=4,
        shuffle=True,
        partial_transform=crop,
        final_transform=flip,
        reuse_factor=2,
        whole_sample=True,
        collate_fn=keep_lists,
        num_workers=2,
        seed=0,
    )
    with loader:
        for epoch in range(epochs):
            seen = []
            for batch in loader:
                for out in batch:
                    check_consistent(out, out["id"])
                    seen.append(out["id"])
            assert sorted(seen) == list(range(size))
            stats = loader.stats[epoch]
            assert stats.unplanned_misses == 0
            if epoch:
                assert stats.hits == size - size // 2  # the crops came from the cache


class Marked:
    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        image = np.zeros((2, 2, 1), dtype=np.uint8)
        image[0, 0, 0] = 1  # flipped horizontally, the 1 moves to [0, 1]
        return image, index


def flip_patterns(reseed: bool) -> list[list[bool]]:
    """Per worker, the flip decisions of its batches (2 workers, batches alternate)."""
    final = Albumentations(A.HorizontalFlip(p=0.5), reseed=reseed)
    loader = RevamperLoader(
        Marked(), batch_size=8, final_transform=final, reuse_factor=1, num_workers=2, seed=1
    )
    with loader:
        flips = [images[:, 0, 1, 0].tolist() for images, _ in loader]
    return [[flip for batch in flips[w::2] for flip in batch] for w in range(2)]


@pytest.mark.slow
def test_worker_processes_draw_different_augmentations() -> None:
    # albumentations 2.x keeps its own generator: forked workers all inherit the same one.
    same = flip_patterns(reseed=False)
    assert same[0] == same[1], "albumentations now seeds workers itself: revisit the adapter"
    fresh = flip_patterns(reseed=True)
    assert fresh[0] != fresh[1]
    assert flip_patterns(reseed=True) == fresh  # and a seeded loader repeats them


class ImageDicts:
    """Hugging Face-style rows: {"image": array, "label": int}."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": sample(index)["image"], "label": index}


def test_dict_rows_with_transform_keys_take_the_image_path() -> None:
    flip = Albumentations(A.HorizontalFlip(p=1.0))
    with RevamperLoader(
        ImageDicts(), batch_size=4, final_transform=flip, transform_keys="image", seed=0
    ) as loader:
        for epoch in range(2):
            for batch in loader:
                for image, label in zip(batch["image"], batch["label"].tolist(), strict=True):
                    np.testing.assert_array_equal(image.numpy(), sample(label)["image"][:, ::-1])
            assert loader.stats[epoch].samples == 12
