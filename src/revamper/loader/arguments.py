"""The loader's constructor arguments, checked in one place (types and ranges, named on failure).

Kept apart from :mod:`revamper.loader.loader` so that the class reads as what it does with its
arguments, not how it vets them. Integers are checked by the planner's
:func:`~revamper.plan.limits.check_int`, the one int check of the library.
"""

from __future__ import annotations

from typing import Any, Final

import torch
from torch.utils.data import IterableDataset

from revamper.loader.dataset_reads import batched_reader, has_own_getitem
from revamper.plan.limits import check_int


def check_callable(name: str, value: object) -> Any:
    """Return ``value`` if it is callable or ``None``, else raise a TypeError naming ``name``."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__} {value!r}")
    return value


def check_optional(name: str, value: object, kind: type) -> None:
    """Raise a TypeError naming ``name`` unless ``value`` is ``None`` or a ``kind``."""
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__} or None, got {value!r}")


_INTS: Final[dict[str, tuple[int, bool]]] = {
    "batch_size": (1, False),
    "reuse_factor": (1, False),
    "num_workers": (0, False),
    "cache_bytes": (0, True),
    "seed": (0, True),
}
"""Int arguments: ``name: (minimum, whether None is allowed)``."""
_TYPES: Final[dict[str, type]] = {
    "generator": torch.Generator,
    "allow_pickle": bool,
    "cache_key": str,
}
"""Arguments of one type, or ``None``."""
_FUNCTIONS: Final = frozenset(
    ("partial_transform", "final_transform", "collate_fn", "worker_init_fn")
)
"""Arguments that are callables, or ``None``."""


def check_arguments(dataset: Any, **arguments: Any) -> int:
    """Check the data set and the named ``arguments`` by their rules; return the data set's length.

    Each argument is checked by its name's rule: an int with a minimum (``None`` allowed or
    not), a callable, or a value of one type.

    Raises:
        TypeError: For an argument of the wrong type (named in the message).
        ValueError: For an argument out of range, or an empty data set.
    """
    size = check_dataset(dataset)
    for name, value in arguments.items():
        if name in _INTS:
            minimum, optional = _INTS[name]
            if value is not None or not optional:
                check_int(name, value, minimum)
        elif name in _FUNCTIONS:
            check_callable(name, value)
        else:
            check_optional(name, value, _TYPES[name])
    return size


def check_dataset(dataset: Any) -> int:
    """Return the length of a non-empty map-style data set, else raise."""
    if isinstance(dataset, IterableDataset):
        raise TypeError(
            "RevamperLoader needs a map-style dataset (with __getitem__ and __len__); "
            f"got the IterableDataset {type(dataset).__name__}"
        )
    readable = has_own_getitem(dataset) or batched_reader(dataset) is not None
    if not readable or not hasattr(dataset, "__len__"):
        raise TypeError(
            "dataset must be a map-style dataset with __len__ and __getitem__ (or __getitems__, "
            f"which is used for a batch's misses when present), got {type(dataset).__name__}"
        )
    size = len(dataset)
    if size == 0:
        raise ValueError("dataset is empty: RevamperLoader needs at least one sample")
    return size


def process_group_size() -> int:
    """Ranks in the initialised default process group (1 without one)."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return int(distributed.get_world_size())
    return 1
