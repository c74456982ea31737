"""The template base: public methods are final, checks run once for every backend."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revamper.store import MISS, CacheStore, DiskStore, SharedMemoryStore, StoreStats, TieredStore
from revamper.store.codec import EncodedValue


class _Hooks(CacheStore):
    def _get(self, index: int, generation: int) -> Any:
        return MISS

    def _put_encoded(self, index: int, generation: int, encoded: EncodedValue) -> bool:
        return False

    def _evict(self, index: int) -> None:
        return None

    def _contains(self, index: int, generation: int | None) -> bool:
        return False

    def _stats(self) -> StoreStats:
        return StoreStats(0, 0, None, 0, 0, 0, 0)

    def _close(self) -> None:
        return None


def test_a_store_overriding_a_public_method_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match=r"get overrides a final method.*_get instead"):

        class _Old(_Hooks):
            def get(self, index: int, generation: int) -> Any:  # type: ignore[misc]
                return MISS

    with pytest.raises(TypeError, match="_shared_state"):

        class _Pickles(_Hooks):
            def __getstate__(self) -> dict[str, Any]:  # type: ignore[misc]
                return {}


def test_a_store_must_read_one_way_or_the_other() -> None:
    with pytest.raises(TypeError, match="_get or _get_many"):

        class _NoReads(CacheStore):
            pass


def test_the_base_checks_arguments_before_any_hook_runs() -> None:
    store = _Hooks()
    assert store.get(np.int64(3), np.int32(1)) is MISS  # numpy integers are integers
    for bad in (1.0, "1", True, None):
        with pytest.raises(TypeError, match="index"):
            store.get(bad, 0)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="generation"):
            store.put(0, bad, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generation"):
        store.get_many([0, 1], [0, 0.5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="epoch"):
        store.on_epoch_start(1.5)  # type: ignore[arg-type]
    assert store.get_many([], []) == []
    assert store.kind == "" and not store.persistent and store.handle() == {}


def test_enter_returns_the_store_and_exit_closes_it() -> None:
    with _Hooks() as store:
        assert isinstance(store, _Hooks) and not store.closed
    assert store.closed


def test_close_runs_its_hook_once() -> None:
    calls: list[int] = []

    class _Counting(_Hooks):
        def _close(self) -> None:
            calls.append(1)

    store = _Counting()
    store.close()
    store.close()
    assert calls == [1]


def test_tiered_epoch_start_maintains_the_ram_tier_too(tmp_path: Path) -> None:
    # The RAM tier recounts its bytes between epochs once it has seen damage; the tiered store
    # used to run only the disk tier's maintenance, so the damaged count stayed.
    store = TieredStore(SharedMemoryStore(100_000), DiskStore(tmp_path, num_samples=10))
    for index in range(4):
        assert store.put(index, 0, np.arange(100))
    one = store.stats().bytes_used // 4
    entry = Path(store.memory._entry_path(0))
    entry.unlink()
    entry.mkdir()  # damage the counters cannot see: still 4 entries by them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert store.get(0, 0) is MISS
    store.on_epoch_start(1)
    stats = store.stats()
    assert (stats.entries, stats.bytes_used) == (3, 3 * one)
    store.close()
