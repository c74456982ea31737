"""Shared fixtures: every registered cache store (and a few variants), for the contract suite.

The kinds come from the store registry, so a newly registered store is in the contract suite
without a change here. A kind whose ``budget_bytes`` does not mean "all entries together" says
how the suite's total budget maps onto its arguments in :data:`CONTRACT_BUDGETS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from revamper.store import CacheStore, make_store, store_kinds, store_spec

# CI explores the same examples on every run (a property failure there is reproducible, not a
# roll of the dice); locally hypothesis keeps exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

StoreFactory = Callable[..., CacheStore]

CONTRACT_SAMPLES = 1000
TIERED_RAM = 3000  # bytes: small entries live in RAM, larger ones on disk


def _tiered_budget(total: int | None) -> dict[str, Any]:
    """The tiered store's budget is its RAM tier's: split a total between RAM and disk."""
    if total is None:
        return {"budget_bytes": TIERED_RAM}
    return {"budget_bytes": total // 2, "extra": {"disk_budget_bytes": total - total // 2}}


CONTRACT_BUDGETS: dict[str, Callable[[int | None], dict[str, Any]]] = {"tiered": _tiered_budget}
"""How a kind takes a total byte budget (default: ``budget_bytes=total``)."""

STORE_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    **{kind: (kind, {}) for kind in store_kinds()},
    "memory-nochecksum": ("memory", {"checksum": False}),
}
"""Fixture id -> (registered kind, extra constructor keywords)."""
STORE_KINDS = list(STORE_VARIANTS)


def new_contract_store(variant: str, root: Path, budget_bytes: int | None = None) -> CacheStore:
    """A store of ``variant``; those that need a directory get ``root``. A budget is the total."""
    kind, extra = STORE_VARIANTS[variant]
    common: dict[str, Any] = {"num_samples": CONTRACT_SAMPLES, "budget_bytes": budget_bytes}
    common.update(CONTRACT_BUDGETS.get(kind, lambda total: {"budget_bytes": total})(budget_bytes))
    common["extra"] = {**common.get("extra", {}), **extra}
    if store_spec(kind).needs_directory:
        common["directory"] = root
    return make_store(kind, **common)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_store(store_kind: str, tmp_path: Path) -> Iterator[StoreFactory]:
    made: list[CacheStore] = []

    def factory(budget_bytes: int | None = None) -> CacheStore:
        root = tmp_path / f"store{len(made)}"
        root.mkdir()
        store = new_contract_store(store_kind, root, budget_bytes)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()
