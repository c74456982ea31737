"""``allow_pickle`` reaches every store the loader builds (issue 11.1: no code run from a cache).

``None`` keeps each store's default: the private memory store may pickle, a disk cache may not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revamper import RevamperLoader, SampleError
from revamper.store import SharedMemoryStore
from tests.helpers import IndexDataset


class Opaque:
    """A value the codec cannot encode natively (so it needs pickle)."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = value


def wrap(x: np.ndarray) -> Opaque:
    return Opaque(x)


def unwrap(x: Opaque) -> np.ndarray:
    return x.value


def make(tmp: Path | None = None, **kwargs: Any) -> RevamperLoader:
    if tmp is not None:
        kwargs.setdefault("cache", "disk")
        kwargs.setdefault("cache_dir", tmp)
    return RevamperLoader(
        IndexDataset(12),
        batch_size=4,
        partial_transform=wrap,
        final_transform=unwrap,
        reuse_factor=2,
        seed=0,
        **kwargs,
    )


@pytest.mark.filterwarnings("ignore:.*pickl")
@pytest.mark.parametrize(
    ("where", "cache_bytes", "allow_pickle", "expected"),
    [
        ("memory", None, None, True),
        ("memory", None, False, False),
        ("memory", None, True, True),
        ("disk", None, None, False),
        ("disk", None, True, True),
        ("disk", None, False, False),
        ("disk", 10**6, None, False),  # tiered: the disk tier's default decides
        ("disk", 10**6, True, True),
    ],
)
def test_allow_pickle_reaches_the_stores_the_loader_builds(
    tmp_path: Path, where: str, cache_bytes: int | None, allow_pickle: bool | None, expected: bool
) -> None:
    with make(
        tmp_path if where == "disk" else None, cache_bytes=cache_bytes, allow_pickle=allow_pickle
    ) as loader:
        assert loader.store is not None and loader.store.allow_pickle is expected
        if expected:
            for _ in range(3):
                got = sorted(i for data, _ in loader for i in data[:, 0].tolist())
                assert got == list(range(12))
            assert loader.stats[1].hits > 0 and loader.stats[1].unplanned_misses == 0
        else:
            with pytest.raises(SampleError, match="allow_pickle=True") as info:
                list(loader)
            assert info.value.stage == "cache_write"


@pytest.mark.filterwarnings("ignore:.*pickl")
def test_a_disk_cache_of_pickles_serves_them_after_a_restart_only_if_allowed(
    tmp_path: Path,
) -> None:
    with make(tmp_path, allow_pickle=True) as first:
        list(first)
    with make(tmp_path, allow_pickle=True) as second:
        second.set_epoch(1)
        list(second)
        assert second.stats[1].hits > 0 and second.stats[1].unplanned_misses == 0


def test_allow_pickle_with_your_own_store_must_agree_with_it() -> None:
    store = SharedMemoryStore(allow_pickle=False)
    try:
        with pytest.raises(ValueError, match="allow_pickle=True, but the store you passed"):
            make(cache=store, allow_pickle=True)
        make(cache=store, allow_pickle=False).close()
    finally:
        store.close()


def test_allow_pickle_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="allow_pickle must be a bool or None"):
        make(allow_pickle="yes")
