"""Codec version 2 round-trips every supported type exactly, without pickle."""

from __future__ import annotations

import collections
import enum
import math
import warnings
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from revamper.store import codec
from tests.test_codec import assert_same, roundtrip


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Inner(NamedTuple):
    a: Any
    b: Any


class Outer(NamedTuple):
    inner: Inner
    label: int


@pytest.mark.parametrize(
    "value",
    [
        0, -1, 2**63 - 1, -(2**63), 2**63, -(2**200), 10**40,
        0.0, -0.0, math.inf, -math.inf, 1e-310, 3 + 4j, complex(-0.0, math.nan),
        True, False, None, "", "héllo", "\ud800 lone surrogate", "x" * 10_000,
        b"", b"\x00" * 7, bytearray(), bytearray(b"abc"),
        Color.RED, Color.BLUE, Level.HIGH,
        np.float32(1.5), np.int8(-3), np.uint64(2**64 - 1), np.bool_(True), np.float16(0.1),
        np.complex64(1 - 2j), np.datetime64("2026-12-01T08:30", "m"), np.timedelta64(5, "ms"),
        np.str_("abc"), np.bytes_(b"ab"), np.longdouble(1) / 3,
        np.zeros((), dtype=[("x", "<i2"), ("y", "<f4", (2,))])[()],
    ],
)  # fmt: skip
def test_scalars_roundtrip(value: Any) -> None:
    back = roundtrip(value)
    assert type(back) is type(value)
    if isinstance(value, (float, complex)):
        assert repr(back) == repr(value)  # -0.0 and NaN included
    else:
        assert_same(value, back)


def test_containers_with_any_keys_roundtrip() -> None:
    key = Outer(Inner(3, "s"), 4)
    value = {
        (1, "a"): [None, {Level.LOW: Color.RED}],
        2.5: collections.OrderedDict([(b"k", ()), (None, [[]])]),
        key: "namedtuple key",
        "plain": Outer(Inner([1], {"x": torch.ones(2)}), 5),
    }
    back = roundtrip(value)
    assert_same(value, back)
    assert type(back["plain"].inner) is Inner
    assert [type(k) for k in back] == [tuple, float, Outer, str]
    assert back[key] == "namedtuple key"


@pytest.mark.parametrize(
    "dtype",
    [
        np.dtype([("a", "<i4"), ("b", ">f8")]),
        np.dtype([("pos", "<f4", (3,)), ("id", "|u1")]),
        np.dtype([("outer", [("inner", "<i2"), ("t", "<M8[s]")]), ("z", "|S3")]),
        np.dtype({"names": ["a", "b"], "formats": ["<u2", "<u2"], "offsets": [0, 6],
                  "itemsize": 12}),
        np.dtype("<U4"),
        np.dtype("|V6"),
        np.dtype(">c16"),
    ],
)  # fmt: skip
def test_structured_and_other_dtypes_roundtrip(dtype: np.dtype[Any]) -> None:
    array = np.frombuffer(np.random.default_rng(2).bytes(dtype.itemsize * 6), dtype=dtype)
    array = array.reshape(2, 3).copy()
    back = roundtrip(array)
    assert back.dtype == dtype and back.tobytes() == array.tobytes()


def test_tensor_subclasses_keep_attributes_and_grad() -> None:
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[0.0, 1.0, 2.0, 3.0]]), format="CXCYWH", canvas_size=(10, 20)
    ).requires_grad_(True)
    back = roundtrip(boxes)
    assert type(back) is tv_tensors.BoundingBoxes and back.requires_grad
    assert back.format is tv_tensors.BoundingBoxFormat.CXCYWH and back.canvas_size == (10, 20)
    assert back.__dict__ == boxes.__dict__
    # Decoding the same attributes twice (memoised) still gives each tensor its own __dict__.
    again = roundtrip(boxes)
    again.canvas_size = (1, 1)
    assert back.canvas_size == (10, 20)


def test_tensor_views_conj_and_neg_are_materialised() -> None:
    base = torch.complex(torch.arange(6.0), torch.ones(6)).reshape(2, 3)
    for tensor in (base.conj(), base.t(), base[:, 1], -base.conj()):
        back = roundtrip(tensor)
        assert torch.equal(back, tensor.resolve_conj().resolve_neg())
        assert not back.is_conj()


def _nested_same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert b.is_nested and b.layout == a.layout and b.dtype == a.dtype
    assert type(b) is type(a) and b.requires_grad == a.requires_grad
    parts_a, parts_b = a.detach().unbind(), b.detach().unbind()
    assert len(parts_a) == len(parts_b)
    for x, y in zip(parts_a, parts_b, strict=True):
        assert x.shape == y.shape and torch.equal(x, y)


@pytest.mark.parametrize("layout", [torch.strided, torch.jagged])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8])
def test_nested_tensors_roundtrip(layout: torch.layout, dtype: torch.dtype) -> None:
    parts = [torch.arange(6).reshape(2, 3), torch.arange(9).reshape(3, 3) * 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's prototype notice for the strided layout
        nested = torch.nested.nested_tensor([p.to(dtype) for p in parts], layout=layout)
    sample = {"tokens": nested, "label": 3}
    back = roundtrip(sample)
    _nested_same(nested, back["tokens"])
    # Repeated reads (what r > 1 does) keep giving the same value.
    _nested_same(nested, roundtrip(sample)["tokens"])


def test_nested_tensor_with_grad_and_empty_strided_roundtrip() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        empty = torch.nested.nested_tensor([], dtype=torch.float64)
        leaf = torch.nested.nested_tensor(
            [torch.ones(2), torch.ones(3)], layout=torch.jagged, requires_grad=True
        )
    _nested_same(empty, roundtrip(empty))
    _nested_same(leaf, roundtrip(leaf))


def test_unrepresentable_nested_tensor_follows_the_pickle_rule() -> None:
    jagged = torch.nested.nested_tensor(
        [torch.ones(2, 3), torch.ones(4, 3)], layout=torch.jagged
    ).transpose(1, 2)  # ragged dimension moved: not rebuilt exactly from its parts
    with pytest.raises(codec.PickleNotAllowedError):
        codec.encode(jagged)


def test_memmap_and_empty_values_roundtrip(tmp_path: Any) -> None:
    mm = np.memmap(tmp_path / "m", dtype="<i4", mode="w+", shape=(3, 2))
    mm[:] = 7
    back = roundtrip(mm)
    assert type(back) is np.ndarray and back.tolist() == [[7, 7]] * 3
    assert_same(torch.zeros(0, 3, dtype=torch.bfloat16), roundtrip(torch.zeros(0, 3).bfloat16()))
    assert_same(np.zeros((4, 0), dtype="<M8[D]"), roundtrip(np.zeros((4, 0), dtype="<M8[D]")))
