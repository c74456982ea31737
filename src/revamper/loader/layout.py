"""Which part of a data set item the transforms see, and which fields pass through untouched.

Like torchvision's ``transform=``, the transforms apply to the item's *input* by default: the
item itself, or its first element if it is a tuple or list (``(image, target, ...)``). A mapping
item (a Hugging Face ``datasets`` row, say) has no first element, so its input fields are named
with ``transform_keys``; with no transform to apply, any item passes as it is (and collates like
``DataLoader``'s). ``whole_sample=True`` hands the whole item to the transforms (torchvision v2
transforms on samples with boxes or masks). Whatever the transforms do not see passes through
unchanged and is cached with the transformed input.

A detection sample ``(image, {"boxes": BoundingBoxes, ...})`` without ``whole_sample=True`` goes
silently wrong: a crop or flip moves the image, not the boxes. So the layout watches the fields it
passes through for torchvision ``tv_tensors`` (boxes, masks, key points, ...), and notes the first
it sees (:meth:`SampleLayout.take_note`) for the loader to warn about once. The watch costs
nothing unless ``torchvision.tv_tensors`` is imported, without which no item can hold one.
"""

from __future__ import annotations

import collections.abc
import sys
from collections.abc import Callable, Iterable, Sequence
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
        self._watching = True
        self._note: str | None = None

    def take_note(self) -> str | None:
        """What the watch of passed-through fields found, once (then ``None``)."""
        note, self._note = self._note, None
        return note

    def _watch(self, index: int, fields: Iterable[tuple[str, Any]]) -> None:
        """Note (once per process) a torchvision ``tv_tensor`` among passed-through ``fields``."""
        module = sys.modules.get("torchvision.tv_tensors")
        kind = getattr(module, "TVTensor", None) if module is not None else None
        if not isinstance(kind, type):
            return  # not imported here, so no item holds one
        found = _find_instance(fields, kind, depth=0)
        if found is None:
            return
        self._watching = False
        path, value = found
        self._note = (
            f"sample {index}: the field {path} is a torchvision {type(value).__name__}, which "
            "passes through untouched: the transforms see only "
            + ("the fields named by transform_keys" if self.transform_keys else "the input")
            + ", so a spatial transform (crop, flip, resize...) moves the image but not it. "
            "Pass whole_sample=True to hand the whole sample to the transforms (torchvision "
            "v2 transforms then move boxes, masks and key points with the image)"
        )

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
            if self._watching:
                self._watch(index, ((f"[{k}]", item[k]) for k in range(1, len(item))))
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

    def _apply_to_keys(
        self, index: int, item: Any, transform: Transform, keys: TransformKeys
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
        if self._watching:
            self._watch(index, ((f"[{k!r}]", v) for k, v in item.items() if k not in keys))
        return out


def _find_instance(
    fields: Iterable[tuple[str, Any]], kind: type, depth: int
) -> tuple[str, Any] | None:
    """The first ``(path, value)`` in ``fields`` (nested containers included) of type ``kind``."""
    for path, value in fields:
        if isinstance(value, kind):
            return path, value
        if depth >= 3 or isinstance(value, (str, bytes)):
            continue
        inner: Iterable[tuple[str, Any]] | None = None
        if isinstance(value, collections.abc.Mapping):
            inner = ((f"{path}[{k!r}]", v) for k, v in value.items())
        elif isinstance(value, (tuple, list)):
            inner = ((f"{path}[{k}]", v) for k, v in enumerate(value))
        found = None if inner is None else _find_instance(inner, kind, depth + 1)
        if found is not None:
            return found
    return None


class MissingKeyError(KeyError):
    """A key named by ``transform_keys`` that an item lacks (its message reads as a sentence)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _keys(item: collections.abc.Mapping[Any, Any]) -> str:
    """The item's keys for a message (a few of them)."""
    keys = [repr(key) for key in list(item)[:8]]
    return "[" + ", ".join(keys) + (", ...]" if len(item) > 8 else "]")
