"""A cache entry's meta is untrusted input: it never runs code and damage is only a CodecError.

Before codec version 2 the meta itself was read with ``pickle.loads``, so a planted record ran
code as the victim (issue 11, item 1). These tests plant such metas, garble valid ones, and name
types a reader must refuse.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import struct
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import tv_tensors

from revamper.errors import CodecError, PickleNotAllowedError
from revamper.store import codec
from revamper.store import codec_wire as w
from revamper.store.base import CacheStore, StoreStats
from revamper.store.tiered import TieredStore
from tests.test_codec import Opaque, roundtrip


class _Planted:
    """Unpickling this creates the file ``path``: the side effect a planted cache would have."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _meta(*parts: bytes, buffers: tuple[int, ...] = ()) -> bytes:
    head = w.HEADER.pack(w.MAGIC, codec.CODEC_VERSION, len(buffers))
    return head + b"".join(struct.pack("<Q", n) for n in buffers) + b"".join(parts)


def test_planted_pickle_meta_is_refused_without_running_it(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    planted = pickle.dumps(_Planted(target))
    with pytest.raises(CodecError):
        codec.decode(planted, np.zeros(0, dtype=np.uint8))
    # The same planted pickle inside the old (version 1) meta tuple shape.
    v1_meta = pickle.dumps((1, [], ("s", _Planted(target))))
    with pytest.raises(CodecError):
        codec.decode(v1_meta, np.zeros(0, dtype=np.uint8))
    assert not target.exists()


def test_pickle_node_is_refused_unless_allowed(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    data = pickle.dumps(_Planted(target))
    meta = _meta(b"k", buffers=(len(data),))
    payload = np.frombuffer(data, dtype=np.uint8).copy()
    with pytest.raises(CodecError, match="allow_pickle"):
        codec.decode(meta, payload)
    assert not target.exists()
    codec.decode(meta, payload, allow_pickle=True).close()  # the opt-in does unpickle
    assert target.exists()


def test_other_codec_version_is_refused() -> None:
    meta = bytearray(codec.encode(3).meta)
    meta[3] = codec.CODEC_VERSION + 1
    with pytest.raises(CodecError, match="version"):
        codec.decode(bytes(meta), np.zeros(0, dtype=np.uint8))


def _ref(name: str) -> bytes:
    return w.pack_str(name)


@pytest.mark.parametrize(
    "meta",
    [
        _meta(b"n", _ref("os:system"), w.U32.pack(0)),  # not a class
        _meta(b"n", _ref("subprocess:Popen"), w.U32.pack(0)),  # a class, not a named tuple
        _meta(b"n", _ref("builtins:__import__"), w.U32.pack(0)),  # dunder
        _meta(b"n", _ref("collections:OrderedDict.__init__"), w.U32.pack(0)),
        _meta(b"n", _ref("collections:namedtuple.__globals__"), w.U32.pack(0)),
        _meta(b"n", _ref("antigravity:Anything"), w.U32.pack(0)),  # not imported, not allowed
        _meta(b"n", _ref("os.path:join"), w.U32.pack(0)),
        _meta(b"n", _ref("torch.utils.__main__:X"), w.U32.pack(0)),  # never import a __main__
        _meta(b"n", _ref("time:struct_time"), w.U32.pack(0)),  # a tuple type, not a named tuple
        _meta(b"n", _ref("no module"), w.U32.pack(0)),  # malformed
        _meta(b"e", _ref("builtins:int"), b"i", w.I64.pack(1)),  # not an Enum
        _meta(b"e", _ref("torch:nonexistent_attr"), b"i", w.I64.pack(1)),
        _meta(  # torch.Tensor itself is not a subclass to rebuild
            b"x", w.TENSOR_HEAD.pack(0, 2, 1), w.U64.pack(1), _ref("torch:Tensor"),
            w.U32.pack(5), b"d", w.U32.pack(0), buffers=(1,),
        ),
        *(  # wrapper subclasses the encoder pickles: never written as a typed tensor
            _meta(
                b"x", w.TENSOR_HEAD.pack(0, 2, 1), w.U64.pack(1), _ref(name),
                w.U32.pack(5), b"d", w.U32.pack(0), buffers=(1,),
            )
            for name in (
                "torch._subclasses.fake_tensor:FakeTensor",
                "torch.distributed.tensor:DTensor",
                "torch._subclasses.functional_tensor:FunctionalTensor",
            )
        ),
    ],
)  # fmt: skip
def test_unresolvable_or_forbidden_type_names_are_refused(meta: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode(meta, np.zeros(64, dtype=np.uint8))
    assert "antigravity" not in sys.modules


def test_allow_listed_module_is_imported_to_resolve_a_name() -> None:
    box_format = tv_tensors.BoundingBoxFormat.XYXY
    meta = _meta(b"e", _ref(f"{type(box_format).__module__}:BoundingBoxFormat"), b"s",
                 w.pack_str("XYXY"))  # fmt: skip
    assert codec.decode(meta, np.zeros(0, dtype=np.uint8)) is box_format


def test_pickle_not_allowed_names_the_type_and_the_option() -> None:
    with pytest.raises(PickleNotAllowedError) as info:
        codec.encode({"x": [Opaque(1)]})
    assert isinstance(info.value, TypeError)
    assert "tests.test_codec.Opaque" in str(info.value)
    assert "allow_pickle=True" in str(info.value) and "RevamperLoader" in str(info.value)
    assert info.value.type_name == "tests.test_codec.Opaque"
    codec._warned_types.clear()
    with pytest.warns(RuntimeWarning):
        back = roundtrip({"x": [Opaque(1)]}, allow_pickle=True)
    assert back == {"x": [Opaque(1)]}


def test_unresolvable_classes_are_not_native() -> None:
    Local = collections.namedtuple("Local", "a")
    with pytest.raises(PickleNotAllowedError, match="Local"):
        codec.encode(Local(1))


def test_too_deep_nesting_is_not_native_and_refused_on_read() -> None:
    deep: Any = 1
    for _ in range(w.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(PickleNotAllowedError):
        codec.encode(deep)
    codec._warned_types.clear()
    with pytest.warns(RuntimeWarning, match="pickle"):
        back = roundtrip(deep, allow_pickle=True)
    assert back == deep
    meta = _meta(*([b"l", w.U32.pack(1)] * (w.MAX_DEPTH + 5)), b"N")
    with pytest.raises(CodecError, match="deep"):
        codec.decode(meta, np.zeros(0, dtype=np.uint8))


@pytest.mark.parametrize("depth", [w.MAX_DEPTH - 2, w.MAX_DEPTH - 1, w.MAX_DEPTH])
@pytest.mark.parametrize(
    "leaf",
    [np.zeros(2, dtype=[("a", "<i4"), ("b", [("c", "<f8")])]), np.float32(1.5)],
    ids=["structured-array", "numpy-scalar"],
)
def test_what_encodes_natively_at_any_depth_also_decodes(depth: int, leaf: Any) -> None:
    value: Any = leaf
    for _ in range(depth):
        value = [value]
    codec.encode(value)  # native: no pickle needed
    back = roundtrip(value)
    for _ in range(depth):
        back = back[0]
    assert type(back) is type(leaf) and back.dtype == leaf.dtype and np.all(back == leaf)


def test_counts_and_lengths_beyond_the_blob_are_refused() -> None:
    huge = 2**32 - 1
    for meta in (
        _meta(b"l", w.U32.pack(huge)),
        _meta(b"s", w.U32.pack(huge), b"abc"),
        _meta(b"I", w.U32.pack(huge)),
        _meta(b"a", b"S", w.pack_str("|u1"), bytes((1,)), w.U64.pack(2**40), buffers=(8,)),
        _meta(b"p", w.pack_str("RGB"), w.PIL_HEAD.pack(60000, 60000, 0), buffers=(12,)),
        w.HEADER.pack(w.MAGIC, codec.CODEC_VERSION, huge) + b"N",
        _meta(b"N", b"N"),  # bytes left over
        _meta(b"N", buffers=(0,)),  # buffers left over
        _meta(b"a", b"S", w.pack_str("|O8"), bytes((1,)), w.U64.pack(1), buffers=(8,)),
    ):
        with pytest.raises(CodecError):
            codec.decode(meta, np.zeros(64, dtype=np.uint8))


class Label(NamedTuple):
    box: Any
    names: list[str]


_SAMPLES: list[Any] = [
    (Image.new("RGB", (5, 4), (1, 2, 3)), 7),
    {
        "image": tv_tensors.Image(torch.zeros(3, 4, 4, dtype=torch.uint8)),
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor([[1, 2, 3, 4]]), format="XYXY", canvas_size=(4, 4)
        ),
        "labels": {"cls": torch.tensor([2]), "names": ["a", "b"]},
    },
    np.zeros(784, dtype=np.uint8),
    [Label(np.arange(4.0), ["x"]), collections.OrderedDict(k=(1.5, None, b"raw")), 2**70],
    np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8", (2,))]),
    Image.new("P", (3, 3)),
]
_ENCODED = [codec.encode(sample) for sample in _SAMPLES]
_MAX_PAYLOAD = max(e.payload_size for e in _ENCODED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(_SAMPLES) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
    cut=st.none() | st.integers(0, 10_000),
    payload_size=st.integers(0, _MAX_PAYLOAD + 64),
)
def test_garbled_metas_only_ever_raise_codec_error(
    which: int, flips: list[tuple[int, int]], cut: int | None, payload_size: int
) -> None:
    meta = bytearray(_ENCODED[which].meta)
    for position, xor in flips:
        meta[position % len(meta)] ^= xor
    if cut is not None:
        del meta[cut % len(meta) :]
    payload = np.zeros(payload_size, dtype=np.uint8)
    with contextlib.suppress(CodecError):
        codec.decode(bytes(meta), payload)


class _ListStore(CacheStore):
    """The smallest store: what CacheStore.put hands the _put_encoded hook."""

    def __init__(self, allow_pickle: bool) -> None:
        self._allow_pickle = allow_pickle
        self.encoded: list[codec.EncodedValue] = []

    def _put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        self.encoded.append(encoded)
        return True

    def _get(self, index: int, generation: int) -> Any:
        raise NotImplementedError

    def _evict(self, index: int) -> None:
        raise NotImplementedError

    def _contains(self, index: int, generation: int | None) -> bool:
        raise NotImplementedError

    def _stats(self) -> StoreStats:
        raise NotImplementedError

    def _close(self) -> None:
        pass


def test_store_put_pickles_only_if_the_store_allows_it() -> None:
    assert CacheStore.allow_pickle.__doc__  # a documented property, default False
    with pytest.raises(PickleNotAllowedError):
        _ListStore(allow_pickle=False).put(0, 0, Opaque(1))
    store = _ListStore(allow_pickle=True)
    codec._warned_types.clear()
    with pytest.warns(RuntimeWarning):
        assert store.put(0, 0, Opaque(1))
    assert store.allow_pickle and len(store.encoded) == 1


@pytest.mark.parametrize(("memory", "disk"), [(True, True), (True, False), (False, True)])
def test_tiered_store_pickles_only_if_both_tiers_allow_it(memory: bool, disk: bool) -> None:
    tiered = TieredStore.__new__(TieredStore)
    tiered.memory, tiered.disk = _ListStore(memory), _ListStore(disk)  # type: ignore[assignment]
    assert tiered.allow_pickle is (memory and disk)


def test_meta_is_not_a_pickle() -> None:
    meta = codec.encode((np.zeros(3), "label", 1)).meta
    assert meta.startswith(w.MAGIC) and not meta.startswith(b"\x80")
    assert os.fsencode("numpy") not in meta  # dtypes travel as dtype strings, not class names


def test_a_dtype_seen_alone_first_is_not_written_natively_where_it_nests_too_deep() -> None:
    """The encoder caches descriptions of top-level dtypes; a nested use must not take one."""
    inner: np.dtype[Any] = np.dtype([("a", "u1")])
    for _ in range(w.MAX_DEPTH - 1):
        inner = np.dtype([("a", inner)])
    outer = np.dtype([("b", inner)])
    roundtrip(np.zeros(1, dtype=inner))  # the inner one, cached
    with pytest.raises(PickleNotAllowedError):  # too deep for the format: pickled, not native
        codec.encode(np.zeros(1, dtype=outer))
