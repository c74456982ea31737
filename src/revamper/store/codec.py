"""Exact, low-copy serialisation of what a partial transform returns.

A cached entry is split into a small *meta* blob (a binary description of the value's structure,
types, shapes and dtypes) and a list of raw *buffers* (pixel data, array and tensor elements). The
buffers are laid out one after another in a *payload*, each starting at a multiple of
:data:`ALIGN` bytes, so a reader can view them in place: decoding a payload read into a private,
writable ``uint8`` array makes numpy arrays and tensors that share that array's memory (no copy)
and PIL images with one copy at most.

Supported exactly (dtype, shape, mode, subclass): PIL images of any mode (palettes and the
``transparency`` entry of ``info`` included), numpy arrays (non-object dtypes, structured ones
included), dense CPU torch tensors including subclasses such as torchvision's ``tv_tensors``
(their attributes, e.g. the ``format`` and ``canvas_size`` of bounding boxes, travel in the meta),
nested tensors (strided and jagged layouts), ``bytes``/``bytearray``, Python and numpy scalars,
enum members, ``None``, strings, and tuples (named tuples too), lists, dicts and ``OrderedDict`` of
these.

The meta is never a pickle: it is a tagged binary tree (:mod:`revamper.store.codec_wire`) read by
a bounded parser that checks every length and count against the blob's size, so a planted or
damaged cache entry is a :class:`CodecError` (a miss), never code run. Anything else is
*non-native*: it is pickled into a buffer only when the caller allows it (``allow_pickle=True``,
with a one-time warning per type, because pickling is slower, its round-trip depends on the type,
and reading it back runs code); otherwise :func:`encode` raises
:class:`~revamper.errors.PickleNotAllowedError`.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import pickle
import threading
import warnings
from collections.abc import Iterator
from typing import Any, Final

import numpy as np
import torch
from PIL import Image

from revamper.errors import CodecError, PickleNotAllowedError
from revamper.store import codec_wire as w
from revamper.store.codec_decode import decode

__all__ = [
    "ALIGN",
    "CODEC_VERSION",
    "CodecError",
    "EncodedValue",
    "PickleNotAllowedError",
    "align_up",
    "decode",
    "encode",
]

CODEC_VERSION: Final = w.CODEC_VERSION
"""Bumped whenever the encoding changes; stores reject entries of another version.

Version 1 pickled the meta; version 2 is the binary format of :mod:`~revamper.store.codec_wire`.
"""

ALIGN: Final = w.ALIGN
"""Alignment of every buffer inside the payload (a cache line; enough for any dtype)."""

_warned_types: set[str] = set()
_warned_lock = threading.Lock()
_ODict = collections.OrderedDict
_pack_u32, _pack_i64, _pack_f64 = w.U32.pack, w.I64.pack, w.F64.pack
_PLAIN_DISPATCH: Final = torch.Tensor.__torch_dispatch__


def align_up(offset: int) -> int:
    """Round ``offset`` up to the next multiple of :data:`ALIGN`."""
    return (offset + ALIGN - 1) // ALIGN * ALIGN


@dataclasses.dataclass(frozen=True)
class EncodedValue:
    """A value split into a meta blob and raw buffers, ready to be written.

    Attributes:
        meta: Binary structure description (small).
        buffers: Raw element data, each a flat, C-contiguous byte view.
        payload_size: Bytes the buffers occupy once laid out with :data:`ALIGN` padding.
    """

    meta: bytes
    buffers: tuple[memoryview, ...]
    payload_size: int

    def payload_segments(self) -> Iterator[bytes | memoryview]:
        """Yield the payload as segments (buffers and zero padding) for a gathered write."""
        offset = 0
        for buf in self.buffers:
            start = align_up(offset)
            if start > offset:
                yield bytes(start - offset)
            yield buf
            offset = start + buf.nbytes
        if self.payload_size > offset:
            yield bytes(self.payload_size - offset)


def _type_name(value: object) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _warn_pickle(value: object) -> None:
    name = _type_name(value)
    with _warned_lock:
        if name in _warned_types:
            return
        _warned_types.add(name)
    warnings.warn(
        f"revamper caches values of type {name} with pickle, which is slower and may not "
        "round-trip exactly; return PIL images, numpy arrays or tensors (or tuples, lists and "
        "dicts of them) from the partial transform",
        RuntimeWarning,
        stacklevel=5,
    )


class _Encoder:
    """Walks a value, collecting buffers and appending the structure tree's bytes to ``out``.

    Buffers are collected in the order the tree mentions them, which is the order the decoder
    takes them in, so the tree needs no buffer indices.
    """

    def __init__(self, allow_pickle: bool) -> None:
        self.allow_pickle = allow_pickle
        self.buffers: list[memoryview] = []
        self.out: list[bytes] = []

    def node(self, value: Any, depth: int) -> None:
        kind = type(value)
        out = self.out
        if kind is int:
            if -(2**63) <= value < 2**63:
                out += (b"i", _pack_i64(value))
            else:
                raw = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
                out += (b"I", _pack_u32(len(raw)), raw)
        elif kind is tuple or kind is list:
            if depth >= w.MAX_DEPTH:
                return self._pickled(value)
            out += (b"t" if kind is tuple else b"l", _pack_u32(len(value)))
            for item in value:
                self.node(item, depth + 1)
        elif kind is dict or kind is _ODict:
            if depth >= w.MAX_DEPTH:
                return self._pickled(value)
            out += (b"d" if kind is dict else b"o", _pack_u32(len(value)))
            for key, item in value.items():
                self.node(key, depth + 1)
                self.node(item, depth + 1)
        elif kind is str:
            out.append(b"s" + w.pack_str(value))
        elif value is None:
            out.append(b"N")
        elif kind is bool:
            out.append(b"T" if value else b"F")
        elif kind is float:
            out += (b"f", _pack_f64(value))
        elif kind is complex:
            out += (b"c", w.C128.pack(value.real, value.imag))
        elif kind is bytes or kind is bytearray:
            out.append(b"b" if kind is bytes else b"B")
            self.buffers.append(memoryview(value).cast("B"))
        else:
            self._other(value, depth)
        return None

    def _other(self, value: Any, depth: int) -> None:
        if isinstance(value, torch.Tensor):
            self._tensor(value, depth)
        elif isinstance(value, Image.Image):
            self._pil(value, depth)
        elif type(value) is np.ndarray or type(value) is np.memmap:
            self._ndarray(value)
        elif isinstance(value, np.generic):
            descr = w.dtype_descr(value.dtype)
            if descr is None:
                return self._pickled(value)
            raw = value.tobytes()
            self.out += (b"g", descr, _pack_u32(len(raw)), raw)
        elif isinstance(value, enum.Enum):
            ref = w.type_ref(type(value), w.is_enum_class)
            if ref is None or depth >= w.MAX_DEPTH:
                return self._pickled(value)
            self.out += (b"e", ref)
            self.node(value.value, depth + 1)
        elif isinstance(value, tuple) and hasattr(value, "_fields"):
            ref = w.type_ref(type(value), w.is_namedtuple_class)
            if ref is None or depth >= w.MAX_DEPTH:
                return self._pickled(value)
            self.out += (b"n", ref, _pack_u32(len(value)))
            for item in value:
                self.node(item, depth + 1)
        else:
            self._pickled(value)
        return None

    def _pickled(self, value: Any) -> None:
        if not self.allow_pickle:
            raise PickleNotAllowedError(_type_name(value))
        _warn_pickle(value)
        self.out.append(b"k")
        self.buffers.append(memoryview(pickle.dumps(value, protocol=5)))

    def _ndarray(self, array: np.ndarray[Any, Any]) -> None:
        descr = w.dtype_descr(array.dtype)
        if descr is None or array.ndim > w.MAX_NDIM:
            return self._pickled(array)
        flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        shape = array.shape
        self.out += (b"a", descr, bytes((len(shape),)), *map(w.U64.pack, shape))
        self.buffers.append(flat.data)
        return None

    def _tensor(self, tensor: torch.Tensor, depth: int) -> None:
        kind = type(tensor)
        if kind is torch.Tensor:
            plain, ref = tensor, None
        else:
            # Read everything off a plain alias: on a subclass each attribute access goes
            # through its __torch_function__ (about a microsecond each for tv_tensors).
            if kind.__torch_dispatch__ is not _PLAIN_DISPATCH:  # a wrapper subclass
                if tensor.is_nested:
                    return self._nested(tensor, depth)
                return self._pickled(tensor)
            ref = w.type_ref(kind, w.is_tensor_subclass)
            if ref is None or depth >= w.MAX_DEPTH:
                return self._pickled(tensor)
            plain = tensor.as_subclass(torch.Tensor)
        if plain.is_nested:
            return self._nested(plain, depth)
        code = w.TORCH_DTYPE_CODES.get(plain.dtype)
        if (
            code is None
            or plain.layout != torch.strided
            or plain.is_quantized
            or plain.device.type != "cpu"
            or plain.ndim > w.MAX_NDIM
        ):
            return self._pickled(tensor)
        flags = int(plain.requires_grad) | (2 if ref is not None else 0)
        plain = plain.detach()
        if plain.is_conj() or plain.is_neg():
            plain = plain.resolve_conj().resolve_neg()
        if not plain.is_contiguous():
            plain = plain.contiguous()
        shape = plain.shape
        self.out += (b"x", w.TENSOR_HEAD.pack(code, flags, len(shape)), *map(w.U64.pack, shape))
        if ref is not None:
            # The attributes go length-prefixed, so a reader can memoise their decoding.
            outer, self.out = self.out, []
            self.node(dict(tensor.__dict__), depth + 1)
            attributes = b"".join(self.out)
            self.out = outer
            outer += (ref, _pack_u32(len(attributes)), attributes)
        self.buffers.append(plain.reshape(-1).view(torch.uint8).numpy().data)
        return None

    def _nested(self, tensor: torch.Tensor, depth: int) -> None:
        layout, code = tensor.layout, w.TORCH_DTYPE_CODES.get(tensor.dtype)
        representable = (
            layout in w.NESTED_LAYOUTS
            and code is not None
            and tensor.device.type == "cpu"
            and depth < w.MAX_DEPTH
            and (layout != torch.jagged or _plain_jagged(tensor))
        )
        if not representable:
            return self._pickled(tensor)
        parts = tensor.detach().unbind()
        assert code is not None
        head = w.NESTED_HEAD.pack(
            w.NESTED_LAYOUTS.index(layout), code, int(tensor.requires_grad), len(parts)
        )
        self.out += (b"j", head)
        for part in parts:
            self._tensor(part, depth + 1)
        return None

    def _pil(self, image: Image.Image, depth: int) -> None:
        mode, (width, height) = image.mode, image.size
        palette = None
        if image.palette is not None and mode in ("P", "PA"):
            palette = (image.palette.mode, bytes(image.palette.tobytes()))
        transparency = image.info.get("transparency")
        flags = (1 if palette is not None else 0) | (2 if transparency is not None else 0)
        self.out += (b"p", w.pack_str(mode), w.PIL_HEAD.pack(width, height, flags))
        if palette is not None:
            self.out += (w.pack_str(palette[0]), _pack_u32(len(palette[1])), palette[1])
        if transparency is not None:
            self.node(transparency, depth + 1)
        self.buffers.append(memoryview(image.tobytes()))


def _plain_jagged(tensor: torch.Tensor) -> bool:
    """A jagged nested tensor that building it again from its components reproduces exactly."""
    return getattr(tensor, "_ragged_idx", None) == 1 and getattr(tensor, "_lengths", 0) is None


def encode(value: Any, *, allow_pickle: bool = False) -> EncodedValue:
    """Split ``value`` into a meta blob and raw buffers.

    Args:
        value: What the partial transform returned (see the module docstring for the types).
        allow_pickle: Whether parts the codec cannot encode natively may be pickled (a one-time
            warning per type) instead of refused.

    Returns:
        The encoded value. Its buffers may share memory with ``value``: write them out before
        ``value`` is mutated.

    Raises:
        PickleNotAllowedError: If ``value`` holds a non-native part and ``allow_pickle`` is false.
    """
    encoder = _Encoder(allow_pickle)
    encoder.node(value, 0)
    buffers = encoder.buffers
    sizes = [buf.nbytes for buf in buffers]
    payload_size = 0
    for size in sizes:
        payload_size = (payload_size + ALIGN - 1) // ALIGN * ALIGN + size
    head = w.HEADER.pack(w.MAGIC, CODEC_VERSION, len(sizes))
    if sizes:
        head += w.pack_sizes(sizes)
    meta = b"".join((head, *encoder.out))
    return EncodedValue(meta=meta, buffers=tuple(buffers), payload_size=payload_size)
