"""The codec's meta parser: untrusted bytes in, a value (or :class:`CodecError`) out.

Every fixed-size field is read with ``struct.unpack_from`` (which refuses to read past the end),
every variable length and every count is checked against the bytes left before use (each child
takes at least one byte, so no loop can outrun the blob), nesting is bounded by
:data:`~revamper.store.codec_wire.MAX_DEPTH`, element counts must match the buffer sizes exactly
(so no allocation is larger than the payload warrants), buffers are taken strictly in order (so
each is used once), and the blob and the buffer list must both be used up. Type names resolve only
through :func:`~revamper.store.codec_wire.resolve_type`. Nothing here unpickles unless the caller
allows it.
"""

from __future__ import annotations

import collections
import enum
import math
import pickle
import struct
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from revamper.errors import CodecError
from revamper.store import codec_wire as w

_u32, _u64, _i64, _f64 = w.U32.unpack_from, w.U64.unpack_from, w.I64.unpack_from, w.F64.unpack_from
_MAX_DIM = 2**63 - 1
_SHAPES = tuple(struct.Struct(f"<{ndim}Q") for ndim in range(w.MAX_NDIM + 1))
_TORCH_DTYPES = w.TORCH_DTYPES
_TENSOR_HEAD = w.TENSOR_HEAD.unpack_from
_uint8 = torch.uint8
_from_numpy = torch.from_numpy
_mode_bits: dict[str, int] = {}
_simple_dtypes = w.SIMPLE_DTYPES
_INT, _STR = w.INT, w.STR
_PIL_HEAD = w.PIL_HEAD.unpack_from
_HEADER_SIZE, _ALIGN = w.HEADER.size, w.ALIGN
_MEMO_SIZE = 1024
_subclass_memo: dict[bytes, tuple[type, dict[str, Any]]] = {}
_IMMUTABLE = frozenset({int, float, complex, bool, str, bytes, type(None)})


class _Reader:
    """One pass over one meta blob and its payload."""

    __slots__ = ("allow_pickle", "end", "meta", "next_buf", "pos", "views")

    def __init__(
        self,
        meta: bytes,
        start: int,
        views: list[np.ndarray[Any, np.dtype[np.uint8]]],
        allow_pickle: bool,
    ) -> None:
        self.meta, self.pos, self.end = meta, start, len(meta)
        self.views, self.next_buf = views, 0
        self.allow_pickle = allow_pickle

    def take(self, size: int) -> bytes:
        pos = self.pos
        if size > self.end - pos:
            raise CodecError(f"cache entry meta truncated: {size} bytes needed at {pos}")
        self.pos = pos + size
        return self.meta[pos : pos + size]

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise CodecError("cache entry meta truncated")
        self.pos = pos + 1
        return self.meta[pos]

    def u32(self) -> int:
        (value,) = _u32(self.meta, self.pos)
        self.pos += 4
        return int(value)

    def u64(self) -> int:
        (value,) = _u64(self.meta, self.pos)
        self.pos += 8
        return int(value)

    def count(self) -> int:
        n = self.u32()
        if n > self.end - self.pos:
            raise CodecError(f"cache entry meta claims {n} items in {self.end - self.pos} bytes")
        return n

    def string(self) -> str:
        pos = self.pos
        (size,) = _u32(self.meta, pos)
        pos += 4
        end = pos + size
        if end > self.end:
            raise CodecError(f"cache entry meta truncated: string of {size} bytes at {pos}")
        self.pos = end
        return self.meta[pos:end].decode("utf-8", "surrogatepass")

    def shape(self, ndim: int) -> tuple[int, ...]:
        if ndim > w.MAX_NDIM:
            raise CodecError(f"cache entry meta has {ndim} dimensions")
        shape: tuple[int, ...] = _SHAPES[ndim].unpack_from(self.meta, self.pos)
        self.pos += 8 * ndim
        if ndim and max(shape) > _MAX_DIM:
            raise CodecError("cache entry meta has a dimension out of range")
        return shape

    def buffer(self) -> np.ndarray[Any, np.dtype[np.uint8]]:
        index = self.next_buf
        if index >= len(self.views):
            raise CodecError("cache entry meta refers to more buffers than it lists")
        self.next_buf = index + 1
        return self.views[index]

    def type_ref(self, kind: w.KindCheck) -> Any:
        module_name, sep, qualname = self.string().partition(":")
        if not sep:
            raise CodecError("malformed type name in cache entry meta")
        return w.resolve_type(module_name, qualname, kind)

    def node(self, depth: int) -> Any:
        pos = self.pos
        if pos >= self.end or depth > w.MAX_DEPTH:
            raise CodecError("cache entry meta truncated or nested too deep")
        self.pos = pos + 1
        handler = _HANDLERS[self.meta[pos]]
        if handler is None:
            raise CodecError(f"unknown node tag {self.meta[pos]} in cache entry meta")
        return handler(self, depth)

    def dtype(self, depth: int) -> np.dtype[Any]:
        if depth > w.MAX_DEPTH:
            raise CodecError("cache entry dtype nested too deep")
        tag = self.u8()
        if tag == w.DT_SIMPLE:
            return w.simple_dtype(self.string())
        if tag == w.DT_SUBARRAY:
            shape = self.shape(self.u8())
            base = self.dtype(depth + 1)
            result: np.dtype[Any] = np.dtype((base, shape))
        elif tag == w.DT_RECORD:
            n, itemsize = self.count(), self.u64()
            names, offsets, formats = [], [], []
            for _ in range(n):
                names.append(self.string())
                offsets.append(self.u64())
                formats.append(self.dtype(depth + 1))
            spec = {"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize}
            result = np.dtype(spec)  # type: ignore[call-overload]
        else:
            raise CodecError(f"unknown dtype tag {tag} in cache entry meta")
        if result.hasobject or result.itemsize == 0:
            raise CodecError("refused dtype in cache entry meta")
        return result


def _item(r: _Reader, depth: int) -> Any:
    """:meth:`_Reader.node`, with small ints and strings (labels, keys) read inline."""
    meta, pos = r.meta, r.pos
    if pos + 9 <= r.end:
        tag = meta[pos]
        if tag == _INT:
            r.pos = pos + 9
            return _i64(meta, pos + 1)[0]
        if tag == _STR:
            r.pos = pos + 1
            return r.string()
    return r.node(depth)


def _sequence(r: _Reader, depth: int) -> list[Any]:
    (n,) = _u32(r.meta, r.pos)
    r.pos += 4
    if n > r.end - r.pos:
        raise CodecError(f"cache entry meta claims {n} items in {r.end - r.pos} bytes")
    depth += 1
    items = []
    for _ in range(n):
        items.append(_item(r, depth))
    return items


def _tuple(r: _Reader, depth: int) -> tuple[Any, ...]:
    (n,) = _u32(r.meta, r.pos)
    r.pos += 4
    if n > r.end - r.pos:
        raise CodecError(f"cache entry meta claims {n} items in {r.end - r.pos} bytes")
    depth += 1
    return tuple([_item(r, depth) for _ in range(n)])


def _mapping(r: _Reader, depth: int) -> list[tuple[Any, Any]]:
    return [(_item(r, depth + 1), _item(r, depth + 1)) for _ in range(r.count())]


def _bigint(r: _Reader, depth: int) -> int:
    return int.from_bytes(r.take(r.u32()), "little", signed=True)


def _int(r: _Reader, depth: int) -> int:
    (value,) = _i64(r.meta, r.pos)
    r.pos += 8
    return int(value)


def _float(r: _Reader, depth: int) -> float:
    (value,) = _f64(r.meta, r.pos)
    r.pos += 8
    return float(value)


def _complex(r: _Reader, depth: int) -> complex:
    real, imag = w.C128.unpack_from(r.meta, r.pos)
    r.pos += 16
    return complex(real, imag)


def _namedtuple(r: _Reader, depth: int) -> Any:
    cls = r.type_ref(w.is_namedtuple_class)
    items = _sequence(r, depth)
    if len(items) != len(cls._fields):
        raise CodecError(f"cache entry has {len(items)} fields for {cls.__qualname__}")
    return cls(*items)


def _enum(r: _Reader, depth: int) -> Any:
    cls = r.type_ref(w.is_enum_class)
    return cls(r.node(depth + 1))


def _npscalar(r: _Reader, depth: int) -> Any:
    dtype = r.dtype(0)  # bounded on its own, as the encoder bounds it
    raw = r.take(r.u32())
    if len(raw) != dtype.itemsize:
        raise CodecError("cache entry scalar does not match its dtype")
    return np.frombuffer(raw, dtype=dtype)[0]


def _ndarray(r: _Reader, depth: int) -> np.ndarray[Any, Any]:
    dtype = None
    start = r.pos
    if start < r.end and r.meta[start] == w.DT_SIMPLE:  # the common case, in fewer calls
        r.pos = start + 1
        dtype = _simple_dtypes.get(r.string())
    if dtype is None:
        r.pos = start
        dtype = r.dtype(0)  # bounded on its own, as the encoder bounds it
    shape = r.shape(r.u8())
    buf = r.buffer()
    if math.prod(shape) * dtype.itemsize != buf.size:
        raise CodecError(f"cache entry shape {shape} does not match its {buf.size}-byte buffer")
    return buf.view(dtype).reshape(shape)


def _tensor(r: _Reader, depth: int) -> torch.Tensor:
    code, flags, ndim = _TENSOR_HEAD(r.meta, r.pos)
    r.pos += 3
    dtype = _TORCH_DTYPES[code] if code < len(_TORCH_DTYPES) else None
    if dtype is None or flags & ~3:
        raise CodecError(f"cache entry tensor has dtype code {code}, flags {flags}")
    shape = r.shape(ndim)
    kind, attributes = _subclass(r, depth) if flags & 2 else (None, None)
    raw = r.buffer()
    if math.prod(shape) * dtype.itemsize != raw.size:
        raise CodecError(f"cache entry shape {shape} does not match its {raw.size}-byte buffer")
    if raw.size == 0:
        tensor = torch.empty(shape, dtype=dtype)
    else:
        tensor = _from_numpy(raw)
        if dtype is not _uint8:
            tensor = tensor.view(dtype)
        if ndim != 1:
            tensor = tensor.reshape(shape)
    if kind is not None:
        tensor = tensor.as_subclass(kind)
        tensor.__dict__.update(attributes)
    if flags & 1:
        tensor.requires_grad_(True)
    return tensor


def _subclass(r: _Reader, depth: int) -> tuple[type, dict[str, Any]]:
    """A tensor subclass and its attributes.

    They are memoised by their bytes when the attributes are immutable: the ``format`` and
    ``canvas_size`` of bounding boxes repeat from entry to entry, and only their values are
    copied into each decoded tensor's own ``__dict__``.
    """
    start = r.pos
    name = r.string()
    size = r.u32()
    end = r.pos + size
    if end > r.end:
        raise CodecError("cache entry meta truncated in tensor attributes")
    key = r.meta[start:end]
    hit = _subclass_memo.get(key)
    if hit is not None:
        r.pos = end
        return hit
    module_name, sep, qualname = name.partition(":")
    if not sep:
        raise CodecError("malformed type name in cache entry meta")
    kind = w.resolve_type(module_name, qualname, w.is_tensor_subclass)
    buffers_before = r.next_buf
    attributes = r.node(depth + 1)
    if r.pos != end:
        raise CodecError("cache entry tensor attributes overrun their length")
    if type(attributes) is not dict or not all(type(k) is str for k in attributes):
        raise CodecError("cache entry tensor attributes are not a dict of str keys")
    if r.next_buf == buffers_before and all(map(_immutable, attributes.values())):
        if len(_subclass_memo) >= _MEMO_SIZE:
            _subclass_memo.clear()
        _subclass_memo[key] = (kind, attributes)
    return kind, attributes


def _immutable(value: Any) -> bool:
    kind = type(value)
    if kind is tuple:
        return all(map(_immutable, value))
    return kind in _IMMUTABLE or isinstance(value, enum.Enum)


def _nested(r: _Reader, depth: int) -> torch.Tensor:
    layout_code, code, flags, n = w.NESTED_HEAD.unpack_from(r.meta, r.pos)
    r.pos += w.NESTED_HEAD.size
    if layout_code >= len(w.NESTED_LAYOUTS) or code >= len(w.TORCH_DTYPES) or flags & ~1:
        raise CodecError("cache entry nested tensor has an unknown layout, dtype or flag")
    if n > r.end - r.pos:
        raise CodecError("cache entry nested tensor claims more parts than its meta holds")
    dtype = w.TORCH_DTYPES[code]
    parts = []
    for _ in range(n):
        if r.u8() != w.TENSOR:
            raise CodecError("cache entry nested tensor part is not a tensor")
        part = _tensor(r, depth + 1)
        if type(part) is not torch.Tensor or part.dtype != dtype or part.requires_grad:
            raise CodecError("cache entry nested tensor part does not match the tensor")
        parts.append(part)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "prototype stage" notice on strided layouts
        return torch.nested.nested_tensor(
            parts, layout=w.NESTED_LAYOUTS[layout_code], dtype=dtype, requires_grad=bool(flags)
        )


def _row_bits(mode: str) -> int:
    bits = _mode_bits.get(mode)
    if bits is None:
        if len(mode) > 16:
            raise CodecError("cache entry image mode too long")
        bits = len(Image.new(mode, (8, 1)).tobytes())  # bytes for 8 pixels = bits per pixel
        _mode_bits[mode] = bits
    return bits


def _pil(r: _Reader, depth: int) -> Image.Image:
    meta, pos = r.meta, r.pos
    (size,) = _u32(meta, pos)
    pos += 4
    if size > 16 or pos + size > r.end:
        raise CodecError("cache entry image mode out of range")
    mode = meta[pos : pos + size].decode("ascii")
    width, height, flags = _PIL_HEAD(meta, pos + size)
    r.pos = pos + size + 9
    if flags & ~3:
        raise CodecError(f"cache entry image has flags {flags}")
    palette = (r.string(), r.take(r.u32())) if flags & 1 else None
    transparency = r.node(depth + 1) if flags & 2 else None
    buf = r.buffer()
    if width == 0 or height == 0:
        if buf.size or max(width, height) > 1 << 16:
            raise CodecError("cache entry empty image out of range")
        image = Image.new(mode, (width, height))
    else:
        bits = _mode_bits.get(mode) or _row_bits(mode)
        if (width * bits + 7) // 8 * height != buf.size:
            raise CodecError(f"cache entry {mode} image {width}x{height} does not match buffer")
        # frombuffer shares our private buffer where PIL's layout allows (read-only; PIL
        # copies on the first in-place write) and copies once otherwise.
        image = Image.frombuffer(mode, (width, height), buf, "raw", mode, 0, 1)
    if palette is not None:
        image.putpalette(palette[1], rawmode=palette[0])
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


def _pickle(r: _Reader, depth: int) -> Any:
    buf = r.buffer()
    if not r.allow_pickle:
        raise CodecError("cache entry holds a pickled value and allow_pickle is off")
    return pickle.loads(buf.data)


def _const(value: Any) -> Callable[[_Reader, int], Any]:
    return lambda r, depth: value


_HANDLERS: list[Callable[[_Reader, int], Any] | None] = [None] * 256
for _tag, _handler in {
    w.NONE: _const(None),
    w.TRUE: _const(True),
    w.FALSE: _const(False),
    w.INT: _int,
    w.BIGINT: _bigint,
    w.FLOAT: _float,
    w.COMPLEX: _complex,
    w.STR: lambda r, depth: r.string(),
    w.BYTES: lambda r, depth: r.buffer().tobytes(),
    w.BYTEARRAY: lambda r, depth: bytearray(r.buffer()),
    w.TUPLE: _tuple,
    w.LIST: _sequence,
    w.DICT: lambda r, depth: dict(_mapping(r, depth)),
    w.ODICT: lambda r, depth: collections.OrderedDict(_mapping(r, depth)),
    w.NAMEDTUPLE: _namedtuple,
    w.ENUM: _enum,
    w.NPSCALAR: _npscalar,
    w.NDARRAY: _ndarray,
    w.TENSOR: _tensor,
    w.NESTED: _nested,
    w.PIL: _pil,
    w.PICKLE: _pickle,
}.items():
    _HANDLERS[_tag] = _handler


def decode(
    meta: bytes | memoryview,
    payload: np.ndarray[Any, np.dtype[np.uint8]],
    *,
    allow_pickle: bool = False,
) -> Any:
    """Rebuild the value that :func:`~revamper.store.codec.encode` split into meta and payload.

    Args:
        meta: The meta blob.
        payload: The payload bytes as a writable ``uint8`` array the caller owns. Arrays and
            tensors in the result share its memory, so the caller must not reuse it.
        allow_pickle: Whether a pickled part may be unpickled. When false (the default) an entry
            holding one is refused, since unpickling runs whatever code the entry names.

    Returns:
        The value, equal to the encoded one in type, dtype, shape, mode and contents.

    Raises:
        CodecError: If the meta blob or payload is corrupt, from another codec version, names a
            type that cannot be resolved safely, or holds a pickle that is not allowed.
    """
    if type(meta) is not bytes:
        meta = bytes(meta)
    if len(meta) < _HEADER_SIZE or meta[:3] != w.MAGIC:
        raise CodecError(f"not a revamper cache entry meta of codec version {w.CODEC_VERSION}")
    if meta[3] != w.CODEC_VERSION:
        raise CodecError(f"cache entry has codec version {meta[3]}, expected {w.CODEC_VERSION}")
    try:
        (n,) = _u32(meta, 4)
        start = _HEADER_SIZE + 8 * n
        if start > len(meta):
            raise CodecError(f"cache entry meta lists {n} buffers in {len(meta)} bytes")
        views = []
        offset, available = 0, payload.size
        sizes = _SHAPES[n] if n <= w.MAX_NDIM else struct.Struct(f"<{n}Q")
        for size in sizes.unpack_from(meta, _HEADER_SIZE):
            begin = (offset + _ALIGN - 1) // _ALIGN * _ALIGN
            if size > available - begin:
                raise CodecError(
                    f"payload of {available} bytes too short for a buffer at {begin}+{size}"
                )
            offset = begin + size
            views.append(payload[begin:offset])
        reader = _Reader(meta, start, views, allow_pickle)
        value = reader.node(0)
        if reader.pos != reader.end or reader.next_buf != n:
            raise CodecError("cache entry meta has bytes or buffers left over")
        return value
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"undecodable cache entry: {exc!r}") from exc
