"""A description of a transform that is stable across runs of the same code.

A disk cache's fingerprint includes the partial transform's identity, so that changing the
transform invalidates the cache instead of serving stale entries. The identity therefore has to
change whenever what the transform computes may change, and stay the same (across processes,
runs and hash seeds) when the code does not:

- torchvision transforms describe themselves with their parameters: their ``repr`` is used,
  followed by their public plain attributes in full (a ``repr`` may round or omit them);
  ``nn.Sequential`` and ``nn.ModuleList`` recurse like ``Compose``;
- ``Compose`` and anything else holding a ``transforms`` list recurse into it (with its ``p``);
- a ``functools.partial`` shows its function, arguments and keywords, described recursively;
- torchvision's ``Lambda`` shows its function;
- a TorchScript module shows a digest of its (and its submodules') code and every attribute,
  parameter and buffer by name, private ones and its mode included; a TorchScript function a
  digest of its code;
- a plain function or lambda is named by module and qualified name *and* a digest of its code:
  bytecode, constants (nested code objects recursively), names, defaults, the values of closure
  cells, and the values of the module globals it reads when they are simple (numbers, strings,
  bytes, ``None``, tuples of those) or functions of its own module (digested in turn);
- arrays and tensors (as arguments or closure values) are digested by dtype, shape and content.

No ``id()``, address or ``hash()`` enters an identity. Where no reliable identity exists (an
object whose ``repr`` holds a memory address) only its type is used, and a :class:`UserWarning`
says, once per type, that the cache cannot see its parameters and that ``cache_key=`` decides.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import threading
import types
import warnings
from typing import Any, Final

import numpy as np
import torch

_MAX_DEPTH: Final = 24
_SIMPLE: Final = (type(None), bool, int, float, complex, str, bytes)
_warned: set[str] = set()
_warned_lock = threading.Lock()


def transform_identity(transform: Any, *, warn_opaque: bool = True) -> str:
    """A description of ``transform`` that is stable across runs of the same code.

    Args:
        transform: The partial transform (any callable, or ``None``).
        warn_opaque: Warn (once per type) when a part of it cannot be seen into. Only a cache
            that outlives the run needs to hear it: a memory cache is rebuilt every run.

    Returns:
        A readable string that changes when the transform's code or parameters change (see the
        module docstring for what is seen).
    """
    return _Describer(warn_opaque).describe(transform, 0)


def _type_name(obj: Any) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', '?')}"


def _warn_opaque(name: str) -> None:
    with _warned_lock:
        if name in _warned:
            return
        _warned.add(name)
    warnings.warn(
        f"revamper cannot see the parameters of {name} in the partial transform (its repr "
        "holds a memory address), so the cache notices only a change of its type: pass "
        "cache_key= to the loader to decide when the cached entries are stale",
        UserWarning,
        stacklevel=4,
    )


class _Describer:
    """One identity computation; ``active`` guards against cycles (ids never reach the text)."""

    def __init__(self, warn_opaque: bool = True) -> None:
        self.active: set[int] = set()
        self.warn_opaque = warn_opaque

    def describe(self, obj: Any, depth: int) -> str:
        if obj is None or isinstance(obj, _SIMPLE):
            return repr(obj)
        if depth > _MAX_DEPTH or id(obj) in self.active:
            return f"<{_type_name(obj)} ...>"
        self.active.add(id(obj))
        try:
            return self._describe(obj, depth + 1)
        finally:
            self.active.discard(id(obj))

    def _describe(self, obj: Any, depth: int) -> str:
        if isinstance(obj, functools.partial):
            parts = [self.describe(obj.func, depth)]
            parts += [self.describe(a, depth) for a in obj.args]
            parts += [f"{k}={self.describe(v, depth)}" for k, v in sorted(obj.keywords.items())]
            return f"partial({', '.join(parts)})"
        if isinstance(obj, types.FunctionType):
            return f"fn[{self.code_digest(obj, depth)}] {obj.__module__}.{obj.__qualname__}"
        if isinstance(obj, types.MethodType):
            return (
                f"method[{self.describe(obj.__self__, depth)}].{self.describe(obj.__func__, depth)}"
            )
        if isinstance(obj, (types.BuiltinFunctionType, type, types.ModuleType)):
            return (
                getattr(obj, "__name__", "?")
                if isinstance(obj, types.ModuleType)
                else (f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}")
            )
        if isinstance(obj, enum.Enum):
            return f"{_type_name(obj)}.{obj.name}"
        if isinstance(obj, (tuple, list)):
            inner = ", ".join(self.describe(v, depth) for v in obj)
            return f"({inner},)" if isinstance(obj, tuple) else f"[{inner}]"
        if isinstance(obj, (set, frozenset)):
            return "{" + ", ".join(sorted(self.describe(v, depth) for v in obj)) + "}"
        if isinstance(obj, dict):
            items = sorted(
                f"{self.describe(k, depth)}: {self.describe(v, depth)}" for k, v in obj.items()
            )
            return "{" + ", ".join(items) + "}"
        if isinstance(obj, (np.ndarray, np.generic, torch.Tensor)):
            return _array_digest(obj)
        return self._transform_object(obj, depth)

    def _scripted(self, obj: Any, depth: int) -> str | None:
        """A TorchScript module or function: its code and every attribute's value.

        A scripted module's ``repr`` names only its class (``RecursiveScriptModule(original_name=
        RandomResizedCrop)``), so two with different parameters shared one identity. Returns
        ``None`` where TorchScript does not say (the caller then treats it as opaque).
        """
        if isinstance(obj, torch.jit.ScriptFunction):
            text = str(obj.code)  # a property at run time (typed as a method)
            code = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
            return f"script_fn[{code}] {obj.qualified_name}"
        try:
            # A private API, absent from torch's type stubs (hence getattr); any failure: opaque.
            found = getattr(torch._C, "_jit_debug_module_iterators")(obj._c)  # noqa: B009
            values = [
                *found["named_attributes_r"],
                *found["named_parameters_r"],
                *found["named_buffers_r"],
            ]
            codes = []
            for name, module in obj.named_modules():
                try:
                    codes.append(f"{name}:{module.code}")
                except RuntimeError:  # no forward
                    codes.append(f"{name}:-")
        except Exception:
            return None
        code = hashlib.sha256("\n".join(codes).encode("utf-8", "replace")).hexdigest()[:16]
        parts = sorted(
            f"{name}={self.describe(value, depth)}"
            for name, value in values
            # A submodule's fields are listed on their own. Private ones and the mode count:
            # scripted code reads them like any other (``if self.training``).
            if not isinstance(value, torch.ScriptObject)
        )
        return f"script[{code}] {obj.original_name}({', '.join(parts)})"

    def _transform_object(self, obj: Any, depth: int) -> str:
        if isinstance(obj, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
            described = self._scripted(obj, depth)
            if described is not None:
                return described
            name = _type_name(obj)
            if self.warn_opaque:
                _warn_opaque(name)
            return name
        lambd = getattr(obj, "lambd", None)
        if lambd is not None and callable(lambd):  # torchvision's Lambda (v1 and v2)
            extra = getattr(obj, "types", None)
            types_text = f", types={self.describe(extra, depth)}" if extra is not None else ""
            return f"{type(obj).__qualname__}({self.describe(lambd, depth)}{types_text})"
        inner = getattr(obj, "transforms", None)
        if isinstance(obj, (torch.nn.Sequential, torch.nn.ModuleList)):
            inner = list(obj)  # torchvision's scriptable form of Compose
        if isinstance(inner, (list, tuple, torch.nn.ModuleList, torch.nn.Sequential)):
            parts = [self.describe(t, depth) for t in inner]
            p = getattr(obj, "p", None)
            if p is not None:
                parts.append(f"p={self.describe(p, depth)}")
            return f"{type(obj).__qualname__}({', '.join(parts)})"
        text = repr(obj)
        if " at 0x" in text or text.startswith("<"):
            name = _type_name(obj)
            if self.warn_opaque:
                _warn_opaque(name)
            return name
        exact = self._exact_attributes(obj, text, depth)
        return f"{text} {exact}" if exact else text

    def _exact_attributes(self, obj: Any, text: str, depth: int) -> str:
        """For torchvision's and revamper's transforms, what their ``repr`` rounds or omits.

        torchvision's ``RandomResizedCrop`` prints its scale and ratio to four digits, and
        ``v2.ToDtype`` leaves out its dtype, so two transforms that compute differently shared
        one description (and one disk cache). Their public plain attributes (numbers, strings,
        enums, dtypes, and tuples or lists of those) are added in full, unless the ``repr``
        shows them exactly as ``name=value``. Other classes keep their ``repr`` alone: their
        attributes may differ between ranks or runs (a device, a time) where what they compute
        does not, and a description that changed would split the ranks or drop a disk cache.

        Returns:
            ``{name=value, ...}``, or ``""``.
        """
        module = getattr(type(obj), "__module__", "") or ""
        if not module.startswith(("torchvision.", "revamper.")):
            return ""
        try:
            attributes = dict(vars(obj))
        except TypeError:  # no __dict__ (slots, or a C type)
            return ""
        parts = []
        for name, value in attributes.items():
            if not isinstance(name, str) or _mode_or_private(name):
                continue
            if _parameter_value(value) and f"{name}={value!r}" not in text:
                parts.append(f"{name}={self.describe(value, depth)}")
        return "{" + ", ".join(sorted(parts)) + "}" if parts else ""

    def code_digest(self, fn: types.FunctionType, depth: int) -> str:
        """16 hex digits of SHA-256 over what determines what ``fn`` computes."""
        digest = hashlib.sha256()
        digest.update(self._code_text(fn.__code__, depth).encode("utf-8", "surrogatepass"))
        for label, value in (("defaults", fn.__defaults__), ("kwdefaults", fn.__kwdefaults__)):
            digest.update(f"|{label}={self.describe(value, depth)}".encode("utf-8", "replace"))
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
            try:
                text = self.describe(cell.cell_contents, depth)
            except ValueError:  # an empty cell
                text = "<empty>"
            digest.update(f"|cell {name}={text}".encode("utf-8", "replace"))
        for name in sorted(_global_names(fn.__code__)):
            if name not in fn.__globals__:
                continue
            found = fn.__globals__[name]
            if _simple_value(found) or (
                isinstance(found, types.FunctionType) and found.__module__ == fn.__module__
            ):
                digest.update(
                    f"|global {name}={self.describe(found, depth)}".encode("utf-8", "replace")
                )
        return digest.hexdigest()[:16]

    def _code_text(self, code: types.CodeType, depth: int) -> str:
        consts = []
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                consts.append(f"code({self._code_text(const, depth + 1)})")
            else:
                consts.append(self.describe(const, depth))
        fields = (
            code.co_code.hex(),
            ",".join(consts),
            ",".join(code.co_names),
            ",".join(code.co_varnames),
            ",".join(code.co_freevars),
            ",".join(code.co_cellvars),
            f"{code.co_argcount},{code.co_posonlyargcount},{code.co_kwonlyargcount},{code.co_flags}",
        )
        return ";".join(fields)


def _mode_or_private(name: str) -> bool:
    """Private state, and ``nn.Module``'s mode flag (no transform reads it)."""
    return name.startswith("_") or name == "training"


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _parameter_value(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is a plain parameter: a number, string, enum, or a few of them."""
    if isinstance(value, (tuple, list)):
        return (
            depth < 4 and len(value) <= 256 and all(_parameter_value(v, depth + 1) for v in value)
        )
    return isinstance(value, (*_SIMPLE, enum.Enum, torch.dtype)) and not isinstance(value, bytes)


def _simple_value(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_simple_value(v) for v in value)
    return isinstance(value, _SIMPLE)


def _array_digest(value: np.ndarray[Any, Any] | np.generic | torch.Tensor) -> str:
    if isinstance(value, torch.Tensor):
        plain = value.detach().cpu().contiguous()
        kind = f"tensor[{str(plain.dtype).removeprefix('torch.')}, {tuple(plain.shape)}"
        data = plain.reshape(-1).view(torch.uint8).numpy().tobytes() if plain.numel() else b""
    else:
        array = np.asarray(value)
        if array.dtype.hasobject:
            return f"array[object, {array.shape}]"
        kind = f"array[{array.dtype.str}, {array.shape}"
        data = np.ascontiguousarray(array).tobytes()
    return f"{kind}, {hashlib.sha256(data).hexdigest()[:16]}]"
