"""The store registry: every kind is made, attached and described by name, and a new kind is
one class plus its registration (shown with a small in-process store, registered for one test)."""

from __future__ import annotations

import dataclasses
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import revamper
from revamper import errors
from revamper.store import (
    MISS,
    CacheStore,
    DiskStore,
    SharedMemoryStore,
    StoreOptions,
    StoreSpec,
    StoreStats,
    TieredStore,
    attach_store,
    codec,
    make_store,
    ownership,
    permissions,
    record,
    register_store,
    registry,
    store_kinds,
    store_spec,
)
from revamper.store.codec import EncodedValue
from tests.conftest import CONTRACT_SAMPLES, STORE_KINDS

CLASSES = {"memory": SharedMemoryStore, "disk": DiskStore, "tiered": TieredStore}


def _common(kind: str, root: Path, **more: Any) -> dict[str, Any]:
    common: dict[str, Any] = {"num_samples": CONTRACT_SAMPLES, "budget_bytes": 10_000, **more}
    if store_spec(kind).needs_directory:
        common["directory"] = root
    return common


def test_the_built_in_kinds_are_registered_in_order() -> None:
    assert store_kinds()[:3] == ("memory", "disk", "tiered")
    for kind, cls in CLASSES.items():
        spec = store_spec(kind)
        assert spec.store_class is cls and cls.kind == kind
        assert spec.budget and spec.summary
    assert [store_spec(k).persistent for k in CLASSES] == [False, True, True]
    assert [store_spec(k).needs_directory for k in CLASSES] == [False, True, True]


def test_the_contract_suite_covers_every_registered_kind() -> None:
    assert set(store_kinds()) <= set(STORE_KINDS)


def test_unknown_kinds_and_missing_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="'memory', 'disk', 'tiered'"):
        store_spec("ssd")
    with pytest.raises(ValueError, match="needs directory="):
        make_store("disk", num_samples=10)
    with pytest.raises(ValueError, match="needs num_samples="):
        make_store("disk", directory="/tmp")
    with pytest.raises(TypeError, match="capacity_bytes"):
        make_store("memory", capacity_bytes=10)  # one name for the budget: budget_bytes
    with pytest.raises(ValueError, match="RAM tier's budget"):
        make_store("tiered", num_samples=10, directory="/tmp")


@pytest.mark.parametrize("kind", list(CLASSES))
def test_make_store_builds_each_kind_with_its_budget(kind: str, tmp_path: Path) -> None:
    with make_store(kind, **_common(kind, tmp_path)) as store:
        assert type(store) is CLASSES[kind] and store.kind == kind
        assert store.persistent is store_spec(kind).persistent
        assert store.put(3, 0, np.arange(10))
        assert store.ram_bytes() == (0 if kind == "disk" else store.stats().bytes_used)
        budget = store.stats().budget_bytes
        assert budget == (None if kind == "tiered" else 10_000)  # tiered: the disk has none


@pytest.mark.parametrize("kind", list(CLASSES))
def test_attach_store_opens_the_same_entries_from_a_handle(kind: str, tmp_path: Path) -> None:
    common = _common(kind, tmp_path, fingerprint={"data": "x"})
    with make_store(kind, **common) as owner:
        assert owner.put(5, 1, "shared")
        handle = owner.handle()
        assert all(isinstance(v, str) for v in handle.values())
        other = attach_store(kind, pickle.loads(pickle.dumps(handle)), **common)
        assert type(other) is type(owner) and other.get(5, 1) == "shared"
        assert other.put(6, 1, "back")
        other.close()
        assert owner.get(6, 1) == "back"


def test_a_handle_of_another_kind_is_refused(tmp_path: Path) -> None:
    with make_store("memory") as memory, pytest.raises(ValueError, match="not the handle"):
        attach_store("disk", memory.handle(), num_samples=10, directory=tmp_path)


def test_options_pass_kind_specific_keywords() -> None:
    with make_store("memory", extra={"checksum": False}) as store:
        assert isinstance(store, SharedMemoryStore) and not store.checksum
    with pytest.raises(TypeError):
        make_store("memory", extra={"no_such_keyword": 1})


def test_allow_pickle_none_keeps_each_kinds_default(tmp_path: Path) -> None:
    with make_store("memory") as memory, make_store("disk", **_common("disk", tmp_path)) as disk:
        assert memory.allow_pickle and not disk.allow_pickle
    with make_store("memory", allow_pickle=False) as memory:
        assert not memory.allow_pickle


def test_exceptions_live_in_errors_and_are_exported() -> None:
    for name in ("UnsafeCacheError", "CacheInUseError", "CodecError", "PickleNotAllowedError"):
        assert getattr(revamper, name) is getattr(errors, name)
        assert getattr(revamper.store, name) is getattr(errors, name)
    assert permissions.UnsafeCacheError is errors.UnsafeCacheError
    assert ownership.CacheInUseError is errors.CacheInUseError
    assert record.RecordError is errors.RecordError and codec.CodecError is errors.CodecError


# -- a new kind: one class and its registration --------------------------------------------------
class DictStore(CacheStore):
    """An in-process store: enough for a test, not shared by worker processes."""

    def __init__(self, budget_bytes: int | None = None) -> None:
        self.budget = budget_bytes
        self.entries: dict[int, tuple[int, bytes]] = {}  # index -> (generation, record)
        self.counts = {"puts": 0, "rejected": 0}

    def _get(self, index: int, generation: int) -> Any:
        entry = self.entries.get(index)
        if entry is None or entry[0] != generation:
            return MISS
        data = np.frombuffer(entry[1], dtype=np.uint8).copy()  # a private copy for the caller
        _, meta, payload = record.open_record(data, index)
        return codec.decode(meta, payload, allow_pickle=self.allow_pickle)

    def _put_encoded(self, index: int, generation: int, encoded: EncodedValue) -> bool:
        data = b"".join(record.record_segments(index, generation, encoded, checksum=True))
        self.entries.pop(index, None)  # a put outdates the old entry, cached or not
        if self.budget is not None and self._used() + len(data) > self.budget:
            self.counts["rejected"] += 1
            return False
        self.entries[index] = (generation, data)
        self.counts["puts"] += 1
        return True

    def _evict(self, index: int) -> None:
        self.entries.pop(index, None)

    def _contains(self, index: int, generation: int | None) -> bool:
        entry = self.entries.get(index)
        return entry is not None and (generation is None or entry[0] == generation)

    def _used(self) -> int:
        return sum(len(data) for _, data in self.entries.values())

    def _stats(self) -> StoreStats:
        puts, rejected = self.counts["puts"], self.counts["rejected"]
        return StoreStats(len(self.entries), self._used(), self.budget, puts, rejected, 0, 0)

    def _close(self) -> None:
        self.entries.clear()


def _create_dict(options: StoreOptions) -> DictStore:
    return DictStore(options.budget_bytes)


@pytest.fixture
def dict_kind() -> Iterator[str]:
    register_store(
        StoreSpec(
            name="dict",
            store_class=DictStore,
            create=_create_dict,
            attach=None,
            needs_directory=False,
            needs_num_samples=False,
            persistent=False,
            budget="bytes of all records together",
            summary="a dict in this process",
        )
    )
    yield "dict"
    del registry._REGISTRY["dict"]


def test_a_new_kind_is_one_class_and_its_registration(dict_kind: str) -> None:
    assert dict_kind in store_kinds()
    store = make_store(dict_kind, budget_bytes=500)
    assert store.kind == "dict" and not store.persistent
    assert store.put(1, 2, np.arange(3)) and store.get(1, 1) is MISS
    np.testing.assert_array_equal(store.get(1, 2), np.arange(3))
    assert not store.put(2, 2, np.zeros(1000, dtype=np.uint8))  # over the budget
    with pytest.raises(ValueError, match="index"):  # the base's checks, for free
        store.get(-1, 0)
    with pytest.raises(ValueError, match="generations"):
        store.get_many([1, 2], [0])
    got = store.get_many([1, 9], [2, 2])
    np.testing.assert_array_equal(got[0], np.arange(3))
    assert got[1] is MISS
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.contains(1)
    with pytest.raises(ValueError, match="cannot be shared"):
        attach_store(dict_kind, {})


def test_a_name_cannot_be_taken_twice(dict_kind: str) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_store(dataclasses.replace(store_spec("memory"), store_class=DictStore))


class FailingReads(DictStore):
    """A store whose reads raise: what a bug or an unexpected OS error in a backend looks like."""

    def _get(self, index: int, generation: int) -> Any:
        raise OSError(5, "Input/output error")


def test_a_read_that_raises_is_a_miss_with_one_warning_not_a_crash() -> None:
    store = FailingReads()
    store.put(0, 0, np.arange(3))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = (store.get(0, 0), store.get_many([0, 0], [0, 0]))
    assert got == (MISS, [MISS, MISS])
    assert [str(w.message) for w in record if "recomputed" in str(w.message)] != []
    assert len(record) == 1  # one kind of failure, one warning
