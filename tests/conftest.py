"""Shared fixtures: every cache store, for the contract suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from revamper.store import CacheStore, DiskStore, SharedMemoryStore, TieredStore

StoreFactory = Callable[..., CacheStore]

STORE_KINDS = ["memory", "memory-checksum", "disk", "tiered"]
CONTRACT_SAMPLES = 1000
TIERED_RAM = 3000  # bytes: small entries live in RAM, larger ones on disk


def make_store(kind: str, root: Path, capacity_bytes: int | None = None) -> CacheStore:
    """A store of ``kind``; disk-backed kinds live under ``root``. A capacity is the total."""
    if kind == "memory":
        return SharedMemoryStore(capacity_bytes)
    if kind == "memory-checksum":
        return SharedMemoryStore(capacity_bytes, checksum=True)
    if kind == "disk":
        return DiskStore(root, num_samples=CONTRACT_SAMPLES, capacity_bytes=capacity_bytes)
    if kind == "tiered":
        ram = TIERED_RAM if capacity_bytes is None else capacity_bytes // 2
        disk = None if capacity_bytes is None else capacity_bytes - ram
        return TieredStore(
            SharedMemoryStore(ram),
            DiskStore(
                root,
                num_samples=CONTRACT_SAMPLES,
                capacity_bytes=disk,
                drop_after_read=True,
            ),
        )
    raise ValueError(kind)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_store(store_kind: str, tmp_path: Path) -> Iterator[StoreFactory]:
    made: list[CacheStore] = []

    def factory(capacity_bytes: int | None = None) -> CacheStore:
        root = tmp_path / f"store{len(made)}"
        root.mkdir()
        store = make_store(store_kind, root, capacity_bytes)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()
