"""Shared fixtures: every cache store, for the contract suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from revamper.store import CacheStore, SharedMemoryStore

StoreFactory = Callable[..., CacheStore]

STORE_KINDS = ["memory", "memory-checksum"]


def make_store(kind: str, capacity_bytes: int | None = None) -> CacheStore:
    if kind == "memory":
        return SharedMemoryStore(capacity_bytes)
    if kind == "memory-checksum":
        return SharedMemoryStore(capacity_bytes, checksum=True)
    raise ValueError(kind)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_store(store_kind: str) -> Iterator[StoreFactory]:
    made: list[CacheStore] = []

    def factory(capacity_bytes: int | None = None) -> CacheStore:
        store = make_store(store_kind, capacity_bytes)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()
