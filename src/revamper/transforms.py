"""Small picklable helpers for composing transforms (spawned workers pickle them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Chain:
    """Apply callables in order, skipping ``None``: ``Chain(f, None, g)(x) == g(f(x))``.

    Unlike a lambda, a ``Chain`` of picklable callables is picklable, so it works with the
    ``spawn`` start method.
    """

    def __init__(self, *transforms: Callable[[Any], Any] | None) -> None:
        for position, transform in enumerate(transforms):
            if transform is not None and not callable(transform):
                raise TypeError(f"transform {position} of Chain is not callable: {transform!r}")
        self.transforms = tuple(t for t in transforms if t is not None)

    def __call__(self, value: Any) -> Any:
        """Apply the transforms in order."""
        for transform in self.transforms:
            value = transform(value)
        return value

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Chain({inner})"
