"""Pipelines as named steps: splitting, the built-ins, and user pipelines by name."""

from __future__ import annotations

import io
import sys
import types
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from revamper.pipelines import BUILTIN, Decode, Pipeline, load_pipeline, pipeline_from


def jpeg_bytes(width: int = 500, height: int = 375) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="JPEG", quality=90
    )
    return buffer.getvalue()


def test_decode_bytes_and_images() -> None:
    image = Decode()(jpeg_bytes())
    assert image.mode == "RGB" and image.size == (500, 375)
    assert Decode("L")(image).mode == "L"
    assert Decode()(image) is image


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_pipelines_produce_uint8_tensors(name: str) -> None:
    pipeline = load_pipeline(name)
    partial, final = pipeline.split()
    cached = partial(jpeg_bytes())
    assert isinstance(cached, Image.Image) and cached.size == (224, 224)
    out = final(cached)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    assert out.shape == (3, 224, 224)
    assert isinstance(pipeline.full()(jpeg_bytes()), torch.Tensor)


def test_imagenet_split_and_simplified_variant() -> None:
    pipeline = load_pipeline("imagenet")
    assert pipeline.step_names[:2] == ["decode", "random_resized_crop"]
    assert pipeline.describe_split() == (
        "decode, random_resized_crop | horizontal_flip, randaugment_2x9, to_tensor"
    )
    assert pipeline.simplified is not None
    assert "randaugment_1x9" in [name for name, _ in pipeline.simplified]
    partial, _ = pipeline.split(0)
    assert partial(b"x") == b"x"  # nothing cached but the raw item
    with pytest.raises(ValueError, match="split must be between 0 and 5"):
        pipeline.split(6)
    assert load_pipeline("light").split_simplified() is None


@pytest.fixture
def user_module() -> Iterator[str]:
    module = types.ModuleType("user_pipelines_for_test")
    module.as_list = lambda: [Decode(), T.RandomResizedCrop(32), T.PILToTensor()]  # type: ignore[attr-defined]
    module.as_compose = lambda: T.Compose([Decode(), T.PILToTensor()])  # type: ignore[attr-defined]
    module.as_pair = lambda: (Decode(), T.PILToTensor())  # type: ignore[attr-defined]
    module.as_junk = lambda: 42  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module.__name__
    del sys.modules[module.__name__]


def test_user_pipelines_by_module_and_function(user_module: str) -> None:
    listed = load_pipeline(f"{user_module}:as_list")
    assert listed.step_names == ["Decode", "RandomResizedCrop", "PILToTensor"]
    partial, final = listed.split(2)
    assert final(partial(jpeg_bytes())).shape == (3, 32, 32)
    assert len(load_pipeline(f"{user_module}:as_compose").steps) == 2
    pair = load_pipeline(f"{user_module}:as_pair")
    assert pair.fixed_split and pair.split()[1](pair.split()[0](jpeg_bytes())).shape[0] == 3
    with pytest.raises(ValueError, match="can only be split where it was"):
        pair.split(0)
    with pytest.raises(ValueError, match="list of callables"):
        load_pipeline(f"{user_module}:as_junk")
    with pytest.raises(ValueError, match="has no function"):
        load_pipeline(f"{user_module}:missing")
    with pytest.raises(ValueError, match="cannot import"):
        load_pipeline("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="unknown pipeline"):
        load_pipeline("nonsense")


def test_pipeline_validation() -> None:
    with pytest.raises(ValueError, match="no steps"):
        Pipeline("empty", (), 0)
    assert pipeline_from(BUILTIN["light"](), name="x").name == "light"
