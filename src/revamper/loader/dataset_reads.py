"""Reading items from a user's map-style data set the way torch's ``DataLoader`` reads them.

torch's fetcher calls a data set's ``__getitems__(indices)`` for a whole batch when it has one
(``Subset``, ``StackDataset``, Hugging Face datasets, fast batched readers) and ``dataset[i]``
item by item otherwise. ``__getitems__`` may return a list, or anything batch-shaped that has
one row per index (an array or a tensor of the whole batch): the loader takes its rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.utils.data

__all__ = ["batched_reader", "has_own_getitem", "read_item", "rows"]


def batched_reader(dataset: Any) -> Callable[[list[int]], Any] | None:
    """The data set's ``__getitems__``, or ``None`` if it has none (or a falsy one)."""
    many = getattr(dataset, "__getitems__", None)
    return many if callable(many) else None


def has_own_getitem(dataset: Any) -> bool:
    """Whether ``dataset[i]`` works: a ``__getitem__`` other than ``Dataset``'s abstract one."""
    method = getattr(type(dataset), "__getitem__", None)
    return method is not None and method is not torch.utils.data.Dataset.__getitem__


def rows(result: Any, count: int) -> list[Any]:
    """The ``count`` items a ``__getitems__`` call returned, as a list.

    A list holds one item per index; a numpy array or a tensor of the whole batch gives its
    rows (rows first: ``shape[0] == count``). Anything else is refused, tuples included:
    ``(images, labels)``, a batch as columns, would otherwise pass for two samples whenever a
    batch has two misses.

    Raises:
        TypeError: If it did not return one item per index in one of those forms.
    """
    if isinstance(result, list) and len(result) == count:
        return result
    if isinstance(result, (np.ndarray, torch.Tensor)) and result.ndim >= 1 and len(result) == count:
        return list(result)  # rows first: one row per index
    try:
        length: int | None = len(result)
    except TypeError:
        length = None
    raise TypeError(
        f"__getitems__ of {count} indices returned {type(result).__name__}"
        f"{'' if length is None else f' of length {length}'}; it must return a list with one "
        "item per index, or an array or tensor with one row per index"
    )


def read_item(dataset: Any, index: int) -> Any:
    """One item: ``dataset[index]``, or through ``__getitems__`` if that is all it has."""
    if not has_own_getitem(dataset):
        many = batched_reader(dataset)
        if many is not None:
            return rows(many([index]), 1)[0]
    return dataset[index]
