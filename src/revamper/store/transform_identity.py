"""A description of a transform that is stable across runs of the same code.

A disk cache's fingerprint includes the partial transform's identity, so that changing the
transform invalidates the cache instead of serving stale entries.
"""

from __future__ import annotations

from typing import Any


def transform_identity(transform: Any) -> str:
    """A description of a transform that is stable across runs of the same code.

    torchvision transforms describe themselves with their parameters, which is what a cache
    depends on. Functions and objects whose ``repr`` holds a memory address are named by module
    and qualified name instead (their parameters, if any, are not seen: pass ``cache_key`` to the
    loader when they matter).
    """
    if transform is None:
        return "None"
    inner = getattr(transform, "transforms", None)
    if isinstance(inner, (list, tuple)):
        parts = ", ".join(transform_identity(t) for t in inner)
        return f"{type(transform).__qualname__}({parts})"
    text = repr(transform)
    if " at 0x" in text or text.startswith("<"):
        kind = transform if callable(transform) and hasattr(transform, "__qualname__") else None
        target = kind if kind is not None else type(transform)
        return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
    return text
