"""The second task: photographs (the built-in image set), an ImageNet-style pipeline, a small CNN.

The data is :mod:`revamper.datasets.builtin`'s set: 10 classes, each cut from one colour photograph
that scikit-image or scikit-learn ships, as JPEG files of ImageNet-like size (mostly 500x375).
Nothing is downloaded. A fixed stratified split keeps held-out test images apart from the
training images (different crops of the same photographs, never the same file).

The pipeline follows the paper's ImageNet setting, at a size a 2-core CPU can train on:

- **partial (cached by refurbishing):** JPEG decode in draft mode (libjpeg scales by 1/2, 1/4 or
  1/8 while decoding, keeping the shorter side at least :data:`DRAFT_SIDE` px), then
  ``RandomResizedCrop(64, scale=(0.25, 1))``. The cached entry is a 64x64 RGB image (12 KB);
- **final (re-run on every use):** ``RandomHorizontalFlip``, ``RandAugment(2, 9)``, then the
  model input (float, normalised with ImageNet's mean and spread).

Test images are decoded the same way, resized to 64 px on the shorter side and centre-cropped.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from revamper.experiments.augment import Augmentation, Step

SIZE = 64
DRAFT_SIDE = 128
CROP_SCALE = (0.25, 1.0)
RANDAUGMENT = (2, 9)  # layers, magnitude
NUM_IMAGES = 2000  # the built-in set's default size, shared with ``revamper bench``
TEST_SIZE = 500
SPLIT_SEED = 20210714
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# RandAugment's outcomes per layer, as torchvision draws them at a fixed magnitude: 14 ops, 9 of
# them with a random sign. Two layers, times the flip: an upper bound on the final part's
# distinct outcomes (the paper's |A_F|); some coincide (Identity then X is X then Identity).
RANDAUGMENT_OUTCOMES_PER_LAYER = 5 + 2 * 9
FINAL_OUTCOMES = 2 * RANDAUGMENT_OUTCOMES_PER_LAYER ** RANDAUGMENT[0]


class DraftDecode:
    """Decode JPEG bytes to RGB, letting libjpeg downscale while keeping ``min_side`` px.

    Pillow's draft mode only reduces by 1/2, 1/4 or 1/8 when the result stays at least the
    requested size, so crops stay sharp; decoding at 1/2 costs well under half a full decode.
    """

    def __init__(self, min_side: int = DRAFT_SIDE) -> None:
        self.min_side = min_side

    def __call__(self, data: bytes) -> Image.Image:
        """Decode ``data`` (encoded image bytes) into an RGB image."""
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (self.min_side, self.min_side))
        return image.convert("RGB")

    def __repr__(self) -> str:
        return f"DraftDecode(min_side={self.min_side})"


def _v2() -> Any:
    from torchvision.transforms import v2

    return v2


def model_input_steps() -> list[Step]:
    """PIL image to the model's input: uint8 tensor, float in [0, 1], normalised."""
    v2 = _v2()
    return [
        Step("PILToTensor", v2.PILToTensor()),
        Step("ToDtype(float32)", v2.ToDtype(torch.float32, scale=True)),
        Step("Normalize", v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))),
    ]


def photo_augmentation(name: str) -> Augmentation:
    """The named photo pipeline: ``full``, ``simplified`` (one RandAugment layer) or ``none``.

    ``none`` decodes, resizes and centre-crops (no randomness): the test images' treatment.

    Raises:
        ValueError: For any other name.
    """
    v2 = _v2()
    decode = Step(f"DraftDecode(≥{DRAFT_SIDE} px)", DraftDecode())
    if name == "none":
        return Augmentation(
            name,
            (decode, Step(f"Resize({SIZE}) + CenterCrop", v2.Compose([v2.Resize(SIZE),
                                                                      v2.CenterCrop(SIZE)]))),
            tuple(model_input_steps()),
        )  # fmt: skip
    if name not in ("full", "simplified"):
        raise ValueError(f"unknown augmentation {name!r}: use full, simplified or none")
    layers, magnitude = RANDAUGMENT
    layers = layers if name == "full" else layers - 1
    crop = v2.RandomResizedCrop(SIZE, scale=CROP_SCALE, antialias=True)
    partial = (decode, Step(f"RandomResizedCrop({SIZE}, scale 0.25-1)", crop))
    final = (
        Step("RandomHorizontalFlip", v2.RandomHorizontalFlip()),
        Step(
            f"RandAugment({layers}, {magnitude})",
            v2.RandAugment(num_ops=layers, magnitude=magnitude),
        ),
        *model_input_steps(),
    )
    return Augmentation(name, partial, final)


class PhotoDataset(torch.utils.data.Dataset[tuple[bytes, int, int]]):
    """Photos as ``(jpeg bytes, label, index)`` items, held in memory (decoding is the work).

    Args:
        blobs: Encoded images.
        labels: Their classes.
    """

    def __init__(self, blobs: list[bytes], labels: np.ndarray) -> None:
        if len(blobs) != len(labels):
            raise ValueError(f"{len(blobs)} images but {len(labels)} labels")
        self.blobs = blobs
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, index: int) -> tuple[bytes, int, int]:
        return self.blobs[index], int(self.labels[index]), index


@dataclasses.dataclass(frozen=True)
class PhotoSplit:
    """Training photos, and the held-out test photos as ready model inputs.

    Attributes:
        train: The training part (encoded images).
        test_inputs: Test images as a float ``(n, 3, 64, 64)`` tensor.
        test_labels: Their classes.
    """

    train: PhotoDataset
    test_inputs: torch.Tensor
    test_labels: torch.Tensor


def _load_all(num_images: int) -> tuple[list[bytes], np.ndarray]:
    from revamper.datasets.builtin import builtin_data_dir
    from revamper.datasets.folder import image_folder

    folder = image_folder(builtin_data_dir(num_images=num_images, progress=False))
    blobs = [folder.loader(path) for path, _ in folder.samples]
    return blobs, np.asarray(folder.targets, dtype=np.int64)


@functools.lru_cache(maxsize=4)
def load_photo_split(
    train_size: int,
    test_size: int = TEST_SIZE,
    *,
    num_images: int = NUM_IMAGES,
    seed: int = SPLIT_SEED,
) -> PhotoSplit:
    """Load the built-in set (generating it on first use) and split it, stratified.

    Raises:
        ModuleNotFoundError: If the set must be generated and scikit-image or scikit-learn is
            missing.
        ValueError: If the sizes do not fit the set.
    """
    from revamper.experiments.digits import stratified_split

    blobs, labels = _load_all(num_images)
    train_idx, test_idx = stratified_split(labels, train_size, test_size, seed)
    convert = photo_augmentation("none")
    pipeline = [s.transform for s in (*convert.partial, *convert.final)]

    def prepare(blob: bytes) -> torch.Tensor:
        value: Any = blob
        for transform in pipeline:
            value = transform(value)
        return value  # type: ignore[no-any-return]

    with torch.no_grad():
        test_inputs = torch.stack([prepare(blobs[k]) for k in test_idx])
    return PhotoSplit(
        train=PhotoDataset([blobs[k] for k in train_idx], labels[train_idx]),
        test_inputs=test_inputs,
        test_labels=torch.from_numpy(labels[test_idx]),
    )


class PhotoCNN(nn.Module):
    """A small CNN for 64x64 RGB: a strided stem, two conv blocks, global pooling (~60k weights).

    conv 3x3/2 (24) - BN - ReLU - pool - conv 3x3 (48) - BN - ReLU - pool - conv 3x3 (96) - BN -
    ReLU - global average pool - dropout - fc (10). About 6M multiply-adds per image, so a step on
    a batch of 64 takes tens of milliseconds on one core.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.25) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *block(3, 24, stride=2),
            nn.MaxPool2d(2),
            *block(24, 48),
            nn.MaxPool2d(2),
            *block(48, 96),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(96, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores for a batch of ``(n, 3, 64, 64)`` images."""
        return self.classifier(self.features(x))  # type: ignore[no-any-return]
