"""Exact, low-copy serialisation of what a partial transform returns.

A cached entry is split into a small *meta* blob (a pickled description of the value's structure,
types, shapes and dtypes) and a list of raw *buffers* (pixel data, array and tensor elements). The
buffers are laid out one after another in a *payload*, each starting at a multiple of
:data:`ALIGN` bytes, so a reader can view them in place: decoding a payload read into a private,
writable ``uint8`` array makes numpy arrays and tensors that share that array's memory (no copy)
and PIL images with one copy at most.

Supported exactly (dtype, shape, mode, subclass): PIL images of any mode (palettes and the
``transparency`` entry of ``info`` included), numpy arrays (non-object dtypes), dense CPU torch
tensors including subclasses such as torchvision's ``tv_tensors`` (their attributes, e.g. the
``format`` and ``canvas_size`` of bounding boxes, travel in the meta), ``bytes``/``bytearray``,
Python and numpy scalars, ``None``, strings, and tuples (named tuples too), lists, dicts and
``OrderedDict`` of these. Anything else is pickled into a buffer, with a one-time warning per type,
because pickling is slower and its round-trip depends on the type.
"""

from __future__ import annotations

import collections
import dataclasses
import pickle
import threading
import warnings
from collections.abc import Iterator
from typing import Any, Final

import numpy as np
import torch
from PIL import Image

from revamper.errors import PickleNotAllowedError

CODEC_VERSION: Final = 1
"""Bumped whenever the encoding changes; stores reject entries of another version."""

ALIGN: Final = 64
"""Alignment of every buffer inside the payload (a cache line; enough for any dtype)."""

_SCALAR_TYPES: Final = (int, float, complex, bool, str, type(None), np.generic)

# Node tags of the structure tree stored in the meta blob.
_TUPLE, _LIST, _DICT, _ODICT, _NAMEDTUPLE = "t", "l", "d", "o", "n"
_SCALAR, _BYTES, _PIL, _NDARRAY, _TENSOR, _PICKLE = "s", "b", "p", "a", "x", "k"

_warned_types: set[str] = set()
_warned_lock = threading.Lock()


def align_up(offset: int) -> int:
    """Round ``offset`` up to the next multiple of :data:`ALIGN`."""
    return (offset + ALIGN - 1) // ALIGN * ALIGN


@dataclasses.dataclass(frozen=True)
class EncodedValue:
    """A value split into a meta blob and raw buffers, ready to be written.

    Attributes:
        meta: Pickled structure description (small).
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


def _warn_pickle(value: object) -> None:
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    with _warned_lock:
        if name in _warned_types:
            return
        _warned_types.add(name)
    warnings.warn(
        f"revamper caches values of type {name} with pickle, which is slower and may not "
        "round-trip exactly; return PIL images, numpy arrays or tensors (or tuples, lists and "
        "dicts of them) from the partial transform",
        RuntimeWarning,
        stacklevel=4,
    )


class _Encoder:
    """Walks a value, collecting buffers and building the structure tree."""

    def __init__(self) -> None:
        self.buffers: list[memoryview] = []

    def _add(self, data: memoryview) -> int:
        self.buffers.append(data)
        return len(self.buffers) - 1

    def node(self, value: Any) -> tuple[Any, ...]:
        kind = type(value)
        if kind is tuple:
            return (_TUPLE, [self.node(v) for v in value])
        if kind is list:
            return (_LIST, [self.node(v) for v in value])
        if kind is dict or kind is collections.OrderedDict:
            tag = _DICT if kind is dict else _ODICT
            return (tag, list(value.keys()), [self.node(v) for v in value.values()])
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return (_NAMEDTUPLE, kind, [self.node(v) for v in value])
        if isinstance(value, torch.Tensor):
            return self._tensor(value)
        if kind is np.ndarray or kind is np.memmap:
            return self._ndarray(value)
        if isinstance(value, Image.Image):
            return self._pil(value)
        if kind is bytes or kind is bytearray:
            return (_BYTES, self._add(memoryview(value).cast("B")), kind is bytearray)
        if isinstance(value, _SCALAR_TYPES):
            return (_SCALAR, value)
        return self._pickled(value)

    allow_pickle = False

    def _pickled(self, value: Any) -> tuple[Any, ...]:
        if not self.allow_pickle:
            raise PickleNotAllowedError(f"{type(value).__module__}.{type(value).__qualname__}")
        _warn_pickle(value)
        return (_PICKLE, self._add(memoryview(pickle.dumps(value, protocol=5))))

    def _ndarray(self, array: np.ndarray[Any, Any]) -> tuple[Any, ...]:
        if array.dtype.hasobject:
            return self._pickled(array)
        flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        return (_NDARRAY, array.dtype, array.shape, self._add(flat.data))

    def _tensor(self, tensor: torch.Tensor) -> tuple[Any, ...]:
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type != "cpu":
            return self._pickled(tensor)
        kind = type(tensor)
        plain = tensor.as_subclass(torch.Tensor).detach().contiguous()
        flat = plain.reshape(-1).view(torch.uint8).numpy()
        subclass = None if kind is torch.Tensor else (kind, dict(tensor.__dict__))
        return (
            _TENSOR,
            str(plain.dtype).removeprefix("torch."),
            tuple(plain.shape),
            self._add(flat.data),
            subclass,
            tensor.requires_grad,
        )

    def _pil(self, image: Image.Image) -> tuple[Any, ...]:
        palette = None
        if image.palette is not None and image.mode in ("P", "PA"):
            palette = (image.palette.mode, bytes(image.palette.tobytes()))
        transparency = image.info.get("transparency")
        data = image.tobytes()
        return (_PIL, image.mode, image.size, self._add(memoryview(data)), palette, transparency)


def encode(value: Any, *, allow_pickle: bool = False) -> EncodedValue:
    """Split ``value`` into a meta blob and raw buffers.

    Args:
        value: What the partial transform returned (see the module docstring for the types).

    Returns:
        The encoded value. Its buffers may share memory with ``value``: write them out before
        ``value`` is mutated.
    """
    encoder = _Encoder()
    encoder.allow_pickle = allow_pickle
    tree = encoder.node(value)
    sizes = [buf.nbytes for buf in encoder.buffers]
    payload_size = 0
    for size in sizes:
        payload_size = align_up(payload_size) + size
    meta = pickle.dumps((CODEC_VERSION, sizes, tree), protocol=5)
    return EncodedValue(meta=meta, buffers=tuple(encoder.buffers), payload_size=payload_size)


class CodecError(ValueError):
    """A meta blob or payload that cannot be decoded (corrupt or from another codec version)."""


class _Decoder:
    def __init__(self, payload: np.ndarray[Any, np.dtype[np.uint8]], sizes: list[int]) -> None:
        self.views: list[np.ndarray[Any, np.dtype[np.uint8]]] = []
        offset = 0
        for size in sizes:
            start = align_up(offset)
            if start + size > payload.size:
                raise CodecError(
                    f"payload of {payload.size} bytes too short for a buffer at {start}+{size}"
                )
            self.views.append(payload[start : start + size])
            offset = start + size

    def node(self, node: tuple[Any, ...]) -> Any:
        tag = node[0]
        if tag == _SCALAR:
            return node[1]
        if tag == _TUPLE:
            return tuple(self.node(child) for child in node[1])
        if tag == _LIST:
            return [self.node(child) for child in node[1]]
        if tag in (_DICT, _ODICT):
            items = zip(node[1], (self.node(child) for child in node[2]), strict=True)
            return dict(items) if tag == _DICT else collections.OrderedDict(items)
        if tag == _NAMEDTUPLE:
            return node[1](*(self.node(child) for child in node[2]))
        if tag == _PIL:
            return self._pil(node)
        if tag == _NDARRAY:
            _, dtype, shape, buf = node
            return self.views[buf].view(dtype).reshape(shape)
        if tag == _TENSOR:
            return self._tensor(node)
        if tag == _BYTES:
            data = self.views[node[1]]
            return bytearray(data) if node[2] else data.tobytes()
        if tag == _PICKLE:
            return pickle.loads(self.views[node[1]])
        raise CodecError(f"unknown node tag {tag!r}")

    def _tensor(self, node: tuple[Any, ...]) -> torch.Tensor:
        _, dtype_name, shape, buf, subclass, requires_grad = node
        dtype = getattr(torch, dtype_name)
        raw = self.views[buf]
        if raw.size == 0:
            tensor = torch.empty(shape, dtype=dtype)
        else:
            tensor = torch.from_numpy(raw).view(dtype).reshape(shape)
        if subclass is not None:
            kind, attributes = subclass
            tensor = tensor.as_subclass(kind)
            tensor.__dict__.update(attributes)
        if requires_grad:
            tensor.requires_grad_(True)
        return tensor

    def _pil(self, node: tuple[Any, ...]) -> Image.Image:
        _, mode, size, buf, palette, transparency = node
        if size[0] == 0 or size[1] == 0:
            image = Image.new(mode, size)
        else:
            # frombuffer shares our private buffer where PIL's layout allows (read-only; PIL
            # copies on the first in-place write) and copies once otherwise.
            image = Image.frombuffer(mode, size, self.views[buf], "raw", mode, 0, 1)
        if palette is not None:
            image.putpalette(palette[1], rawmode=palette[0])
        if transparency is not None:
            image.info["transparency"] = transparency
        return image


def decode(
    meta: bytes | memoryview,
    payload: np.ndarray[Any, np.dtype[np.uint8]],
    *,
    allow_pickle: bool = False,
) -> Any:
    """Rebuild the value that :func:`encode` split into ``meta`` and a payload.

    Args:
        meta: The meta blob.
        payload: The payload bytes as a writable ``uint8`` array the caller owns. Arrays and
            tensors in the result share its memory, so the caller must not reuse it.

    Returns:
        The value, equal to the encoded one in type, dtype, shape, mode and contents.

    Raises:
        CodecError: If the meta blob or payload is corrupt or from another codec version.
    """
    try:
        version, sizes, tree = pickle.loads(meta)
    except Exception as exc:
        raise CodecError(f"unreadable cache entry meta: {exc!r}") from exc
    if version != CODEC_VERSION:
        raise CodecError(f"cache entry has codec version {version}, expected {CODEC_VERSION}")
    try:
        return _Decoder(payload, sizes).node(tree)
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"undecodable cache entry: {exc!r}") from exc
