"""In a worker, ``get_worker_info().dataset`` is the user's data set, as with DataLoader (12.8).

A ``worker_init_fn`` that sets something on it (a per-worker file handle, a connection) must
reach the object whose ``__getitem__`` the worker calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import get_worker_info

from revamper import RevamperLoader

pytestmark = pytest.mark.slow


class Tagged(torch.utils.data.Dataset[tuple[np.ndarray, int]]):
    """Item i is ``(array([i, tag]), i)``; ``tag`` is what a worker_init_fn set (-1: nothing)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tag = -1

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        info = get_worker_info()
        assert info is not None and info.dataset is self, "get_worker_info().dataset is not me"
        return np.array([index, self.tag], dtype=np.int64), index


def tag_the_dataset(worker_id: int) -> None:
    info = get_worker_info()
    assert info is not None
    if not isinstance(info.dataset, Tagged):
        raise TypeError(f"get_worker_info().dataset is a {type(info.dataset).__name__}")
    info.dataset.tag = 100 + worker_id


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_init_fn_sets_attributes_on_the_users_dataset(method: str, persistent: bool) -> None:
    kwargs: dict[str, Any] = {"multiprocessing_context": method, "persistent_workers": persistent}
    loader = RevamperLoader(
        Tagged(24),
        batch_size=3,
        shuffle=True,
        reuse_factor=2,
        num_workers=2,
        worker_init_fn=tag_the_dataset,
        seed=0,
        **kwargs,
    )
    with loader:
        for _ in range(2):
            tags = [int(tag) for data, _ in loader for tag in data[:, 1].tolist()]
            assert len(tags) == 24
            assert set(tags) == {100, 101}  # every item was loaded by a tagged worker's data set
    assert loader.dataset.tag == -1  # the main process's copy is untouched, as with DataLoader


def test_without_a_worker_init_fn_the_workers_still_see_the_users_dataset() -> None:
    with RevamperLoader(Tagged(8), batch_size=2, num_workers=2, seed=0) as loader:
        assert [int(t) for data, _ in loader for t in data[:, 1].tolist()] == [-1] * 8


def test_a_worker_init_fn_must_be_callable() -> None:
    with pytest.raises(TypeError, match="worker_init_fn must be callable"):
        RevamperLoader(Tagged(8), worker_init_fn=3)  # type: ignore[arg-type]
