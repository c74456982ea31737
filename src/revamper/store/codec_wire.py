"""The building blocks of the codec's binary meta format, shared by its encoder and decoder.

The meta blob is parsed without pickle, because a cache directory is input that another user may
have planted: reading it must never run code. This module holds what both directions agree on:
the node tags, the fixed-size fields, the table of torch dtypes, the description of numpy dtypes,
and the *safe* resolution of the few types that must be named (named tuple classes, tensor
subclasses, enum classes): they are stored as module and qualified name, and resolved on decode
only through modules already imported (or importable from an allow-list of packages), by plain
attribute look-ups, to an object of the expected kind.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
import struct
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import torch

from revamper.errors import CodecError

CODEC_VERSION: Final = 3
"""Bumped whenever the encoding or the record format changes (re-exported as
``codec.CODEC_VERSION``). 3: a record's CRC-32 covers its header too."""

ALIGN: Final = 64
"""Alignment of every buffer in the payload (re-exported as ``codec.ALIGN``)."""

MAGIC: Final = b"RVC"
"""First bytes of every meta blob (followed by the codec version byte)."""

MAX_DEPTH: Final = 100
"""Deepest nesting of containers (and dtypes) the meta may hold; deeper values are pickled."""

MAX_NDIM: Final = 64
"""Most dimensions an array or tensor may have (numpy's own limit)."""

IMPORTABLE_PACKAGES: Final = frozenset({"torch", "torchvision", "numpy"})
"""Top-level packages whose modules a decoder may import to resolve a type name."""

HEADER: Final = struct.Struct("<3sBI")  # magic, version, buffer count
U8: Final = struct.Struct("<B")
U32: Final = struct.Struct("<I")
U64: Final = struct.Struct("<Q")
I64: Final = struct.Struct("<q")
F64: Final = struct.Struct("<d")
C128: Final = struct.Struct("<dd")
PIL_HEAD: Final = struct.Struct("<IIB")  # width, height, flags
TENSOR_HEAD: Final = struct.Struct("<BBB")  # dtype code, flags, ndim
NESTED_HEAD: Final = struct.Struct("<BBBI")  # layout code, dtype code, flags, component count

# Node tags (one byte each).
NONE, TRUE, FALSE = b"N"[0], b"T"[0], b"F"[0]
INT, BIGINT, FLOAT, COMPLEX, STR = b"i"[0], b"I"[0], b"f"[0], b"c"[0], b"s"[0]
BYTES, BYTEARRAY = b"b"[0], b"B"[0]
TUPLE, LIST, DICT, ODICT, NAMEDTUPLE = b"t"[0], b"l"[0], b"d"[0], b"o"[0], b"n"[0]
ENUM, NPSCALAR, NDARRAY, TENSOR, NESTED = b"e"[0], b"g"[0], b"a"[0], b"x"[0], b"j"[0]
PIL, PICKLE = b"p"[0], b"k"[0]
# Tags of a numpy dtype description.
DT_SIMPLE, DT_RECORD, DT_SUBARRAY = b"S"[0], b"R"[0], b"A"[0]

# Append-only: a dtype's code is its position, so codes never change meaning.
_TORCH_DTYPE_NAMES: Final = (
    "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64",
    "complex32", "complex64", "complex128", "bool", "uint16", "uint32", "uint64",
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
)  # fmt: skip
TORCH_DTYPES: Final[tuple[torch.dtype | None, ...]] = tuple(
    d if isinstance(d := getattr(torch, name, None), torch.dtype) else None
    for name in _TORCH_DTYPE_NAMES
)
TORCH_DTYPE_CODES: Final[dict[torch.dtype, int]] = {
    d: code for code, d in enumerate(TORCH_DTYPES) if d is not None
}
NESTED_LAYOUTS: Final[tuple[torch.layout, ...]] = (torch.strided, torch.jagged)

_SIMPLE_DTYPE = re.compile(r"[<>|][biufcmMSUV]\d{1,9}(\[\d{0,9}[A-Za-z]{1,3}\])?")
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_NAME_PART = re.compile(r"[A-Za-z_]\w*")


def pack_sizes(sizes: list[int]) -> bytes:
    """Buffer sizes as consecutive u64 values."""
    return struct.pack(f"<{len(sizes)}Q", *sizes)


def pack_str(text: str) -> bytes:
    """A string as its UTF-8 length (u32) and bytes; lone surrogates survive."""
    data = text.encode("utf-8", "surrogatepass")
    return U32.pack(len(data)) + data


# --- named types ---------------------------------------------------------------------------

KindCheck = Callable[[type], bool]


def is_namedtuple_class(cls: type) -> bool:
    """A tuple subclass with ``_fields`` (``collections.namedtuple`` or ``typing.NamedTuple``)."""
    return (
        issubclass(cls, tuple)
        and isinstance(getattr(cls, "_fields", None), tuple)
        and callable(getattr(cls, "_make", None))
    )


def is_tensor_subclass(cls: type) -> bool:
    """A proper subclass of ``torch.Tensor`` that the codec writes as one (e.g. ``tv_tensors``).

    Wrapper subclasses with their own ``__torch_dispatch__`` (``FakeTensor``, ``DTensor``, ...)
    are pickled by the encoder, never written as a tensor with a type name, so a record that
    names one as its tensor's type was not written by us and is refused.
    """
    return (
        issubclass(cls, torch.Tensor)
        and cls is not torch.Tensor
        and cls.__torch_dispatch__ is torch.Tensor.__torch_dispatch__
    )


def is_enum_class(cls: type) -> bool:
    """An :class:`enum.Enum` subclass."""
    return issubclass(cls, enum.Enum)


_resolved: dict[tuple[str, str, KindCheck], type] = {}
_resolved_lock = threading.Lock()


def resolve_type(module_name: str, qualname: str, kind: KindCheck) -> type:
    """Find the class ``module_name.qualname`` without running code a cache could choose.

    Args:
        module_name: The class's ``__module__``.
        qualname: The class's ``__qualname__`` (dotted for nested classes).
        kind: The check the class must pass (:func:`is_namedtuple_class`, ...).

    Returns:
        The class.

    Raises:
        CodecError: If the module is not imported and not in :data:`IMPORTABLE_PACKAGES`, a name
            is malformed or holds a dunder (``__main__``, ``__globals__``), a step is not a plain
            attribute of a module or class, or the result is not a class of the expected kind.
    """
    key = (module_name, qualname, kind)
    cached = _resolved.get(key)
    if cached is not None:
        return cached
    if _MODULE_NAME.fullmatch(module_name) is None or "__" in module_name:
        raise CodecError(f"malformed module name {module_name!r} in cache entry meta")
    module = sys.modules.get(module_name)
    if module is None:
        if module_name.partition(".")[0] not in IMPORTABLE_PACKAGES:
            raise CodecError(f"cache entry names a type of module {module_name!r}, not imported")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise CodecError(f"cache entry names unimportable module {module_name!r}") from exc
    target: Any = module
    for part in qualname.split("."):
        if _NAME_PART.fullmatch(part) is None or part.startswith("__"):
            raise CodecError(f"malformed qualified name {qualname!r} in cache entry meta")
        if not isinstance(target, (types.ModuleType, type)):
            raise CodecError(f"{module_name}.{qualname} does not name a class")
        try:
            target = inspect.getattr_static(target, part)
        except AttributeError as exc:
            raise CodecError(f"cache entry names unknown type {module_name}.{qualname}") from exc
    if not isinstance(target, type) or not kind(target):
        raise CodecError(f"{module_name}.{qualname} is not a {kind.__name__.removeprefix('is_')}")
    with _resolved_lock:
        _resolved[key] = target
    return target


_type_refs: dict[tuple[type, KindCheck], bytes | None] = {}


def type_ref(cls: type, kind: KindCheck) -> bytes | None:
    """The encoded name of ``cls``: ``"module:qualname"``.

    Returns ``None`` if a decoder could not resolve the name back to ``cls`` (a class defined
    inside a function, or shadowed under its name): such a class is not native to the codec.
    """
    key = (cls, kind)
    if key in _type_refs:
        return _type_refs[key]
    module_name, qualname = getattr(cls, "__module__", None), getattr(cls, "__qualname__", None)
    ref: bytes | None = None
    if isinstance(module_name, str) and isinstance(qualname, str):
        try:
            if resolve_type(module_name, qualname, kind) is cls:
                ref = pack_str(f"{module_name}:{qualname}")
        except CodecError:
            ref = None
    _type_refs[key] = ref
    return ref


# --- numpy dtypes ---------------------------------------------------------------------------

_dtype_descrs: dict[np.dtype[Any], bytes | None] = {}


def dtype_descr(dtype: np.dtype[Any], depth: int = 0) -> bytes | None:
    """Describe a non-object numpy dtype for the meta.

    Returns ``None`` if this format cannot describe it (object fields, titles, zero-sized items,
    nesting deeper than :data:`MAX_DEPTH`).
    """
    cached = _dtype_descrs.get(dtype, b"") if depth == 0 else b""  # cached for depth 0 only
    if cached != b"":
        return cached
    descr = _dtype_descr(dtype, depth)
    if depth == 0 and len(_dtype_descrs) < 4096:
        _dtype_descrs[dtype] = descr
    return descr


def _dtype_descr(dtype: np.dtype[Any], depth: int) -> bytes | None:
    if dtype.hasobject or dtype.itemsize == 0 or depth > MAX_DEPTH:
        return None
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        inner = dtype_descr(base, depth + 1)
        if inner is None or len(shape) > MAX_NDIM:
            return None
        return bytes((DT_SUBARRAY, len(shape))) + b"".join(U64.pack(n) for n in shape) + inner
    if dtype.names is not None:
        fields = dtype.fields
        assert fields is not None
        if len(fields) != len(dtype.names):
            return None  # titles
        parts = [bytes((DT_RECORD,)), U32.pack(len(dtype.names)), U64.pack(dtype.itemsize)]
        for name in dtype.names:
            sub, offset = fields[name][:2]
            inner = dtype_descr(sub, depth + 1)
            if inner is None:
                return None
            parts += [pack_str(name), U64.pack(offset), inner]
        return b"".join(parts)
    text = dtype.str
    if _SIMPLE_DTYPE.fullmatch(text) is None or np.dtype(text) != dtype:
        return None
    return bytes((DT_SIMPLE,)) + pack_str(text)


SIMPLE_DTYPES: Final[dict[str, np.dtype[Any]]] = {}
"""Validated simple dtypes by their ``dtype.str`` (only ever filled by :func:`simple_dtype`)."""


def simple_dtype(text: str) -> np.dtype[Any]:
    """The dtype of a validated ``dtype.str`` (e.g. ``'<f4'``, ``'<M8[s]'``, ``'|V8'``).

    Raises:
        CodecError: If ``text`` is not a plain, non-object dtype string.
    """
    dtype = SIMPLE_DTYPES.get(text)
    if dtype is not None:
        return dtype
    if _SIMPLE_DTYPE.fullmatch(text) is None:
        raise CodecError(f"malformed dtype {text!r} in cache entry meta")
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"invalid dtype {text!r} in cache entry meta") from exc
    if dtype.hasobject or dtype.itemsize == 0:
        raise CodecError(f"refused dtype {text!r} in cache entry meta")
    if len(SIMPLE_DTYPES) < 4096:
        SIMPLE_DTYPES[text] = dtype
    return dtype
