"""Round-trips through the codec are exact: type, dtype, shape, mode, subclass and contents."""

from __future__ import annotations

import collections
import warnings
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp
from PIL import Image
from torchvision import tv_tensors

from revamper.store import codec


def roundtrip(value: Any, *, allow_pickle: bool = False) -> Any:
    encoded = codec.encode(value, allow_pickle=allow_pickle)
    payload = np.zeros(encoded.payload_size, dtype=np.uint8)
    offset = 0
    for segment in encoded.payload_segments():
        raw = np.frombuffer(segment, dtype=np.uint8)
        payload[offset : offset + raw.size] = raw
        offset += raw.size
    assert offset == encoded.payload_size
    return codec.decode(encoded.meta, payload, allow_pickle=allow_pickle)


def assert_same(a: Any, b: Any) -> None:
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, Image.Image):
        assert (a.mode, a.size) == (b.mode, b.size)
        assert a.tobytes() == b.tobytes()
        assert a.getpalette() == b.getpalette()
        assert a.info.get("transparency") == b.info.get("transparency")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a.as_subclass(torch.Tensor), b.as_subclass(torch.Tensor))
        assert a.__dict__ == b.__dict__
        assert a.requires_grad == b.requires_grad
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    else:
        assert a == b or (a != a and b != b)  # NaN equals NaN here


def _image(mode: str, size: tuple[int, int] = (23, 17)) -> Image.Image:
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    return base.convert(mode)


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"]
)
def test_pil_modes_roundtrip(mode: str) -> None:
    image = _image("RGB").convert(mode)
    assert_same(image, roundtrip(image))


def test_pil_i16_roundtrip() -> None:
    data = np.random.default_rng(1).integers(0, 2**16, (9, 13), dtype=np.uint16)
    image = Image.frombytes("I;16", (13, 9), data.astype("<u2").tobytes())
    back = roundtrip(image)
    assert back.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(back), data)


def test_pil_palette_with_transparency_and_empty_image() -> None:
    image = _image("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=7)
    image.info["transparency"] = 3
    assert_same(image, roundtrip(image))
    assert_same(Image.new("RGB", (0, 5)), roundtrip(Image.new("RGB", (0, 5))))


def test_jpeg_file_image_decodes_as_plain_image(tmp_path: Any) -> None:
    path = tmp_path / "x.jpg"
    _image("RGB", (40, 30)).save(path, quality=90)
    with Image.open(path) as jpeg:
        back = roundtrip(jpeg)
        assert back.mode == "RGB" and back.tobytes() == jpeg.tobytes()


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.arange(6, dtype=">i4").reshape(3, 2),
        np.float16(3.5) * np.ones((2, 2), dtype=np.float16),
        np.array(7, dtype=np.int64),  # 0-d
        np.zeros((0, 3), dtype=np.float32),
        np.arange(10, dtype=np.complex128),
        np.arange(12).reshape(3, 4)[:, ::-2],  # non-contiguous
        np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]),
        np.array([True, False]),
    ],
)
def test_numpy_roundtrip(array: np.ndarray) -> None:
    assert_same(array, roundtrip(array))


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=hnp.scalar_dtypes(),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
    )
)
def test_numpy_roundtrip_property(array: np.ndarray) -> None:
    assert_same(array, roundtrip(array))


@pytest.mark.parametrize(
    "dtype",
    [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
     torch.bfloat16, torch.float32, torch.float64, torch.bool, torch.complex64],
)  # fmt: skip
def test_tensor_dtypes_roundtrip(dtype: torch.dtype) -> None:
    tensor = (torch.arange(24).reshape(2, 3, 4) % 5).to(dtype)
    assert_same(tensor, roundtrip(tensor))


def test_tensor_shapes_views_and_grad() -> None:
    assert_same(torch.tensor(3.0), roundtrip(torch.tensor(3.0)))
    assert_same(torch.zeros(0, 4), roundtrip(torch.zeros(0, 4)))
    view = torch.arange(20.0).reshape(4, 5)[1:, ::2]
    assert_same(view.contiguous(), roundtrip(view))
    leaf = torch.ones(3, requires_grad=True)
    back = roundtrip(leaf)
    assert back.requires_grad and torch.equal(back.detach(), leaf.detach())


def test_tv_tensors_roundtrip() -> None:
    sample = {
        "image": tv_tensors.Image(torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)),
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor([[1, 2, 5, 6]]), format="XYXY", canvas_size=(8, 8)
        ),
        "mask": tv_tensors.Mask(torch.zeros(8, 8, dtype=torch.bool)),
        "video": tv_tensors.Video(torch.zeros(2, 3, 4, 4)),
        "label": 4,
    }
    back = roundtrip(sample)
    assert_same(sample, back)
    assert back["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    assert back["boxes"].canvas_size == (8, 8)


class Pair(NamedTuple):
    image: np.ndarray
    label: int


def test_containers_and_scalars_roundtrip() -> None:
    value: tuple[Any, ...] = (
        [1, 2.5, "s", None, True, b"raw", bytearray(b"ba"), np.float32(1.5), 3 + 4j],
        collections.OrderedDict(b=np.ones(2), a=(torch.ones(1),)),
        {"nested": {"deep": [np.zeros(1)]}, 7: "int key"},
        Pair(np.arange(3), 2),
        (),
        [],
        {},
    )
    assert_same(value, roundtrip(value))
    assert type(roundtrip(value)[3]) is Pair


class Opaque:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.x == self.x

    __hash__ = None  # type: ignore[assignment]


def test_unknown_types_fall_back_to_pickle_with_one_warning_when_allowed() -> None:
    codec._warned_types.clear()
    with pytest.warns(RuntimeWarning, match="pickle"):
        assert roundtrip(Opaque(3), allow_pickle=True) == Opaque(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert roundtrip([Opaque(4), Opaque(5)], allow_pickle=True) == [Opaque(4), Opaque(5)]
    with pytest.warns(RuntimeWarning, match="pickle"):
        roundtrip(np.array([object()], dtype=object), allow_pickle=True)


def test_decoded_arrays_are_writable_and_private() -> None:
    array = np.arange(12, dtype=np.int32)
    encoded = codec.encode(array)
    payload = np.zeros(encoded.payload_size, dtype=np.uint8)
    payload[: array.nbytes] = array.view(np.uint8)
    back = codec.decode(encoded.meta, payload)
    back += 1  # writable
    np.testing.assert_array_equal(array, np.arange(12))


def test_corrupt_meta_and_short_payload_raise_codec_error() -> None:
    encoded = codec.encode(np.arange(100))
    with pytest.raises(codec.CodecError):
        codec.decode(b"not a pickle", np.zeros(encoded.payload_size, dtype=np.uint8))
    with pytest.raises(codec.CodecError, match="too short"):
        codec.decode(encoded.meta, np.zeros(10, dtype=np.uint8))


def test_buffers_are_aligned() -> None:
    value = (np.zeros(3, dtype=np.uint8), np.zeros(5, dtype=np.float64), torch.zeros(7))
    encoded = codec.encode(value)
    offset = 0
    for segment in encoded.payload_segments():
        size = memoryview(segment).nbytes
        if isinstance(segment, memoryview):
            assert offset % codec.ALIGN == 0
        offset += size
    assert offset == encoded.payload_size
