"""The kinds of cache store, by name: what the loader's ``cache=``, the benchmark and the tests use.

Each kind registers a :class:`StoreSpec`: how to create a store from the common arguments
(:class:`StoreOptions`), how another process or rank attaches to one from its
:meth:`~revamper.store.CacheStore.handle`, whether it needs a directory, whether its entries
survive the run, and what its byte budget (``budget_bytes``, one name for every kind) covers.
Nothing outside this package names a concrete store class; it asks :func:`make_store`,
:func:`attach_store`, :func:`store_spec` and :func:`store_kinds`.

Adding a store:

1. write ``revamper/store/<name>.py``: a subclass of :class:`~revamper.store.CacheStore` that
   implements its private hooks (see :mod:`revamper.store.base`), and at the bottom of the file
   ``register_store(StoreSpec(name=..., store_class=..., create=..., ...))``;
2. import that module in ``revamper/store/__init__.py`` (the import registers it).

The contract suite (``tests/test_store_contract.py``) then runs over it, since its fixtures
iterate :func:`store_kinds`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from revamper.store.base import CacheStore

__all__ = [
    "StoreOptions",
    "StoreSpec",
    "attach_store",
    "make_store",
    "register_store",
    "store_kinds",
    "store_spec",
]


@dataclasses.dataclass(frozen=True)
class StoreOptions:
    """The arguments every kind of store is created from (a kind uses those it needs).

    Attributes:
        num_samples: The data set's size (a store with a slot per sample needs it).
        budget_bytes: The byte budget, or ``None`` for none; what it covers depends on the kind
            (:attr:`StoreSpec.budget`).
        directory: Where the store keeps its files: required where
            :attr:`StoreSpec.needs_directory`; otherwise where a store that can use one puts its
            private directory (the memory store: a tmpfs, ``/dev/shm`` by default).
        fingerprint: What a persistent cache is for (:mod:`revamper.store.manifest`); a cache
            found with another is discarded.
        allow_pickle: Whether values the codec cannot encode natively may be pickled; ``None``
            keeps the kind's own default.
        extra: Keywords only one kind understands (``checksum``, ``segment_bytes``, ...),
            passed to its constructor.
    """

    num_samples: int | None = None
    budget_bytes: int | None = None
    directory: str | os.PathLike[str] | None = None
    fingerprint: Mapping[str, Any] | None = None
    allow_pickle: bool | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def pickle_keyword(self) -> dict[str, Any]:
        """The constructors' ``allow_pickle`` keyword: none when the kind's default applies."""
        return {} if self.allow_pickle is None else {"allow_pickle": bool(self.allow_pickle)}


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """One kind of store, as registered.

    Attributes:
        name: The name users pass (``cache="memory"``).
        store_class: The class its stores are instances of.
        create: Makes a new store (the owner's instance) from the common arguments.
        attach: Opens, in another process or rank, the store whose
            :meth:`~revamper.store.CacheStore.handle` it is given; ``None`` if the kind cannot
            be shared by path.
        needs_directory: Whether ``directory`` is required.
        needs_num_samples: Whether ``num_samples`` is required.
        persistent: Whether entries survive the run (a later run with the same fingerprint
            reuses them: the loader then keeps its own seed on resume).
        budget: One sentence: what ``budget_bytes`` covers for this kind.
        summary: One sentence: where entries live.
    """

    name: str
    store_class: type[CacheStore]
    create: Callable[[StoreOptions], CacheStore]
    attach: Callable[[StoreOptions, Mapping[str, str]], CacheStore] | None
    needs_directory: bool
    needs_num_samples: bool
    persistent: bool
    budget: str
    summary: str


_REGISTRY: dict[str, StoreSpec] = {}


def register_store(spec: StoreSpec) -> StoreSpec:
    """Register a kind of store under ``spec.name``; its class learns its kind and persistence.

    Raises:
        ValueError: If the name is taken by another class, or is empty.
    """
    if not spec.name or not spec.name.isidentifier():
        raise ValueError(f"a store kind needs a name like 'memory', got {spec.name!r}")
    known = _REGISTRY.get(spec.name)
    if known is not None and known.store_class is not spec.store_class:
        raise ValueError(
            f"store kind {spec.name!r} is already registered for {known.store_class.__name__}"
        )
    spec.store_class.kind = spec.name
    spec.store_class.persistent = spec.persistent
    _REGISTRY[spec.name] = spec
    return spec


def store_kinds() -> tuple[str, ...]:
    """The registered kinds, in registration order."""
    return tuple(_REGISTRY)


def store_spec(kind: str) -> StoreSpec:
    """The registration of ``kind``.

    Raises:
        ValueError: If no store of that kind is registered (the message lists the kinds).
    """
    spec = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if spec is None:
        known = ", ".join(repr(name) for name in _REGISTRY)
        raise ValueError(f"unknown cache store kind {kind!r}; the kinds are {known}")
    return spec


def _options(spec: StoreSpec, common: Mapping[str, Any]) -> StoreOptions:
    options = StoreOptions(**common)
    if spec.needs_directory and options.directory is None:
        raise ValueError(f"a {spec.name!r} cache store needs directory=, a directory on local disk")
    if spec.needs_num_samples and options.num_samples is None:
        raise ValueError(f"a {spec.name!r} cache store needs num_samples=, the data set's size")
    return options


def make_store(kind: str, **common: Any) -> CacheStore:
    """Create a store of ``kind`` (the owner's instance) from the :class:`StoreOptions` fields.

    Raises:
        ValueError: For an unknown kind, a missing directory or size, or a bad argument.
        TypeError: For a keyword that is not a :class:`StoreOptions` field, or one in ``extra``
            that the kind does not take.
    """
    spec = store_spec(kind)
    return spec.create(_options(spec, common))


def attach_store(kind: str, handle: Mapping[str, str], **common: Any) -> CacheStore:
    """Open the store of ``kind`` that another process created, from its ``handle()``.

    The common arguments are the creator's (the same :class:`StoreOptions` fields).

    Raises:
        ValueError: For an unknown kind, one that cannot be attached by path, or a handle or
            store that does not match.
    """
    spec = store_spec(kind)
    if spec.attach is None:
        raise ValueError(f"a {kind!r} cache store cannot be shared by other processes by path")
    return spec.attach(_options(spec, common), handle)


def handle_field(handle: Mapping[str, str], key: str, kind: str) -> str:
    """``handle[key]``, or a ValueError saying the handle is not one of a ``kind`` store."""
    value = handle.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{dict(handle)!r} is not the handle of a {kind!r} cache store")
    return value
