"""Which part of a data set item the transforms see, and which fields pass through untouched.

Like torchvision's ``transform=``, the transforms apply to the item's *input* by default: the
item itself, or its first element if it is a tuple or list (``(image, target, ...)``). A mapping
item (a Hugging Face ``datasets`` row, say) has no first element, so its input fields are named
with ``transform_keys``; with no transform to apply, any item passes as it is (and collates like
``DataLoader``'s). ``whole_sample=True`` hands the whole item to the transforms (torchvision v2
transforms on samples with boxes or masks). Whatever the transforms do not see passes through
unchanged and is cached with the transformed input.
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable, Sequence
from typing import Any

Transform = Callable[[Any], Any]
TransformKeys = tuple[str, ...]


def identity(value: Any) -> Any:
    """The transform that does nothing (a missing partial or final transform)."""
    return value


def check_transform_keys(value: object, whole_sample: bool) -> TransformKeys | None:
    """Validate the loader's ``transform_keys`` argument and return it as a tuple (or ``None``).

    Raises:
        TypeError: If ``value`` is neither ``None``, a str, nor a sequence of str.
        ValueError: If it is empty, names a key twice, or comes with ``whole_sample=True``.
    """
    if value is None:
        return None
    keys: tuple[object, ...]
    if isinstance(value, str):
        keys = (value,)
    elif isinstance(value, Sequence):
        keys = tuple(value)
    else:
        raise TypeError(
            f"transform_keys must be a str or a sequence of str, got {type(value).__name__}"
        )
    if not keys or not all(isinstance(key, str) for key in keys):
        raise TypeError(
            f"transform_keys must be a str or a non-empty sequence of str, got {value!r}"
        )
    if len(set(keys)) != len(keys):
        raise ValueError(f"transform_keys names a key twice: {value!r}")
    if whole_sample:
        raise ValueError(
            "pass either transform_keys (the transforms apply to those fields) or "
            "whole_sample=True (they apply to the whole item), not both"
        )
    return tuple(str(key) for key in keys)


class SampleLayout:
    """How a data set item splits into the transformed input and the fields passed through.

    Args:
        whole_sample: The transforms receive the whole item.
        transform_keys: The fields of mapping items the transforms apply to (each field on its
            own); the other fields pass through. ``None``: the input is the item itself, or the
            first element of a tuple or list.
    """

    def __init__(self, whole_sample: bool, transform_keys: TransformKeys | None = None) -> None:
        self.whole_sample = whole_sample
        self.transform_keys = transform_keys

    def apply(self, index: int, item: Any, transform: Transform) -> Any:
        """Return ``item`` with ``transform`` applied to its input part.

        Raises:
            TypeError: With ``transform_keys``, if the item is not a mapping; without, if it is
                one (there is no telling which field is the input). Both name the sample.
            KeyError: If the item lacks a key of ``transform_keys`` (named with the sample).
            ValueError: If the item is an empty tuple or list.
        """
        if transform is identity:
            return item  # nothing to apply: any item passes as it is
        if self.whole_sample:
            return transform(item)
        if self.transform_keys is not None:
            return self._apply_to_keys(index, item, transform, self.transform_keys)
        if isinstance(item, (tuple, list)):
            if len(item) == 0:
                raise ValueError(f"sample {index} is an empty {type(item).__name__}")
            fields = [transform(item[0]), *item[1:]]
            if isinstance(item, list):
                return fields
            if hasattr(item, "_fields"):
                return type(item)(*fields)
            return tuple(fields)
        if isinstance(item, collections.abc.Mapping):
            raise TypeError(
                f"sample {index} is a {type(item).__name__} (keys {_keys(item)}), so revamper "
                "cannot tell which field is the input: name the field(s) the transforms apply to "
                "with transform_keys (e.g. transform_keys='image'), or pass whole_sample=True and "
                "transforms that take the whole mapping"
            )
        return transform(item)

    @staticmethod
    def _apply_to_keys(
        index: int, item: Any, transform: Transform, keys: TransformKeys
    ) -> dict[Any, Any]:
        if not isinstance(item, collections.abc.Mapping):
            raise TypeError(
                f"sample {index} is a {type(item).__name__}, not a mapping, but transform_keys="
                f"{keys!r} names fields of mapping items (dicts)"
            )
        out = dict(item)
        for key in keys:
            if key not in item:
                raise MissingKeyError(
                    f"sample {index} has no key {key!r} named by transform_keys={keys!r}; its "
                    f"keys: {_keys(item)}"
                )
            out[key] = transform(item[key])
        return out


class MissingKeyError(KeyError):
    """A key named by ``transform_keys`` that an item lacks (its message reads as a sentence)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _keys(item: collections.abc.Mapping[Any, Any]) -> str:
    """The item's keys for a message (a few of them)."""
    keys = [repr(key) for key in list(item)[:8]]
    return "[" + ", ".join(keys) + (", ...]" if len(item) > 8 else "]")
