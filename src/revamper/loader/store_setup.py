"""The loader's cache store: built (or shared between ranks) from the run's identity.

Also where a persistent cache's recorded identity is read back (:func:`persisted_seed`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Final

from revamper.distributed import DistributedSetup, share_store
from revamper.loader.config import LoaderConfig
from revamper.store import CacheStore
from revamper.store.disk import check_directory
from revamper.store.manifest import read_manifest
from revamper.store.registry import StoreSpec, attach_store, store_kinds, store_spec
from revamper.store.registry import make_store as create_store

logger = logging.getLogger(__name__)

CacheKind = str
"""A registered store kind (:func:`revamper.store.store_kinds`), as the loader's ``cache=``."""

_WITH_RAM_BUDGET: Final = {"disk": "tiered"}
"""Kinds that a ``cache_bytes`` budget turns into another: a disk cache with a RAM budget is a
tiered store (the entries that fit stay in shared memory), as the loader documents it."""


def cache_fingerprint(
    *,
    num_samples: int,
    reuse_factor: int,
    seed: int,
    partial_transform: Any,
    whole_sample: bool,
    cache_key: str | None,
    transform_keys: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """:meth:`LoaderConfig.cache_identity` of a loader with these arguments (and no others).

    What a persistent cache's entries depend on; a cache made for anything else is discarded.
    """
    return LoaderConfig(
        num_samples=num_samples,
        reuse_factor=reuse_factor,
        batch_size=1,
        seed=seed,
        drop_last=False,
        shuffle=False,
        balance_misses=True,
        setup=DistributedSetup(),
        whole_sample=whole_sample,
        transform_keys=transform_keys,
        partial=LoaderConfig.partial_identity(partial_transform, cache_key),
        cache="",  # not part of the identity a cache records
    ).cache_identity()


def layout_fingerprint(fingerprint: dict[str, Any], setup: DistributedSetup) -> dict[str, Any]:
    """``fingerprint`` as the cache of ``setup``'s cache group records it (with the rank layout).

    Under distributed training a disk cache also depends on the rank layout: a restart with
    another layout must start afresh.
    """
    if not setup.distributed:
        return dict(fingerprint)
    return {
        **fingerprint,
        "world_size": setup.world_size,
        "cache_group_size": setup.group_size,
        "cache_group": setup.group,
    }


def disk_directory(cache_dir: str | os.PathLike[str], setup: DistributedSetup) -> Path:
    """Where the disk cache of ``setup``'s rank lives: ``cache_dir``, or a private sub-directory.

    With ``cache_scope="rank"`` every rank has its own, ``cache_dir/rank-<rank>``.
    """
    if setup.distributed and not setup.shares_cache:
        return Path(cache_dir) / f"rank-{setup.rank}"
    return Path(cache_dir)


def persisted_seed(
    cache_dir: str | os.PathLike[str], fingerprint: dict[str, Any], setup: DistributedSetup
) -> int | None:
    """The seed of a disk cache in ``cache_dir`` made for everything else this run wants.

    A loader without an explicit seed draws a new one in every process, and the seed is part
    of a disk cache's fingerprint: a restart would discard the whole cache. Reusing the seed
    the cache was made with keeps it (and makes a saved :meth:`RevamperLoader.state_dict`
    loadable).

    Args:
        cache_dir: The loader's ``cache_dir``.
        fingerprint: :func:`cache_fingerprint` of this run (its ``seed`` is ignored).
        setup: This rank's place in distributed training (the cache's directory and its
            recorded rank layout depend on it).

    Returns:
        The cache's seed, or ``None`` if there is no readable cache there or it was made for
        anything else (another data set length, reuse factor, partial transform, codec or rank
        layout).
    """
    directory = disk_directory(cache_dir, setup)
    found = read_manifest(directory) if directory.is_dir() else None
    have = found.get("fingerprint") if found is not None else None
    if not isinstance(have, dict):
        return None
    seed = have.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        return None
    wanted = {**layout_fingerprint(fingerprint, setup), "seed": seed}
    return seed if have == wanted else None


def make_store(
    cache: CacheKind | CacheStore, config: LoaderConfig
) -> tuple[CacheStore | None, bool]:
    """Build the store that ``cache`` and the run's identity ``config`` describe.

    ``config.allow_pickle`` is handed to every store built here (``None``: each store's own
    default, ``True`` for the private shared-memory store and ``False`` for a disk cache, so a
    tiered cache refuses pickles unless ``True`` is passed).

    Under distributed training, the ranks of a machine-wide cache group share one store: the
    group's first rank creates it, the others attach to it
    (:func:`revamper.distributed.share_store`; a collective). With ``cache_scope="rank"`` every
    rank creates its own, a disk cache in the sub-directory ``rank-<rank>`` of ``cache_dir``.
    A disk cache's fingerprint then also names the rank layout, so that a restart with another
    layout starts afresh.

    Returns:
        ``(store, owned)``: ``store`` is ``None`` when nothing is cached (``reuse_factor`` 1);
        ``owned`` says whether the loader created it or attached to it (and so closes it).

    Raises:
        ValueError: For a combination that makes no sense, named in the message.
        DistributedSetupError: On every rank, if a rank failed to create or attach the shared
            cache.
    """
    setup = config.setup
    if isinstance(cache, CacheStore):
        _check_given_store(cache, config)
        return cache, False
    _check_request(cache, config)
    if not config.caches:
        return None, False  # every sample is recomputed every epoch: a cache would only cost
    if setup.shares_cache and not setup.communicate:
        raise ValueError(
            f"cache_scope='machine' with local_world_size={setup.local_world_size} shares one "
            "cache between the ranks of a machine, which needs an initialised torch.distributed "
            "process group (to tell the other ranks where the first rank created it); call "
            "torch.distributed.init_process_group() before creating the loader, or pass "
            "cache_scope='rank', or create the store yourself and pass it as cache= (e.g. "
            "revamper.store.attach_store(kind, handle) on the other ranks)"
        )
    recipe = _Recipe(
        _store_spec(cache, config.cache_bytes),
        config.cache_bytes,
        config.cache_dir,
        config.cache_identity(),
        config.allow_pickle,
    )
    if setup.distributed:
        recipe = recipe.for_ranks(setup)
    if not setup.shares_cache:
        store = recipe.create()
    else:
        store = share_store(setup, recipe.create, CacheStore.handle, recipe.attach)
    if setup.distributed:
        logger.info("RevamperLoader: %s, store %r", setup.describe(), store)
    return store, True


def _check_given_store(store: CacheStore, config: LoaderConfig) -> None:
    """Refuse store options the loader would ignore, for a store the user created."""
    if config.cache_bytes is not None or config.cache_dir is not None:
        raise ValueError(
            "cache_bytes and cache_dir configure the store the loader creates; you passed a "
            "store instance, so configure that store instead"
        )
    allow_pickle = config.allow_pickle
    if allow_pickle is not None and bool(allow_pickle) != store.allow_pickle:
        raise ValueError(
            f"allow_pickle={allow_pickle!r}, but the store you passed has allow_pickle="
            f"{store.allow_pickle!r}: set it where you create the store"
        )


def _check_request(cache: object, config: LoaderConfig) -> None:
    """Refuse a store kind the loader does not know, or options that do not fit it."""
    kinds = store_kinds()
    if not isinstance(cache, str) or cache not in kinds:
        known = ", ".join(repr(kind) for kind in kinds)
        raise ValueError(f"cache must be one of {known} or a CacheStore instance, got {cache!r}")
    spec = store_spec(cache)
    if not spec.needs_directory and config.cache_dir is not None:
        with_files = ", ".join(repr(k) for k in kinds if store_spec(k).needs_directory)
        raise ValueError(f"cache_dir is used only with cache={with_files}")
    if spec.needs_directory and config.cache_dir is None:
        raise ValueError(
            f"cache={cache!r} needs cache_dir, a directory on local disk (an SSD): {spec.summary}"
        )


def _store_spec(cache: str, cache_bytes: int | None) -> StoreSpec:
    """The registered kind the loader builds for ``cache`` and its budget ``cache_bytes``."""
    if cache_bytes is not None:
        cache = _WITH_RAM_BUDGET.get(cache, cache)
    return store_spec(cache)


def is_persistent(store: CacheStore | None) -> bool:
    """Whether ``store``'s entries outlive the run (they belong to the seed they were made with)."""
    return store is not None and store.persistent


def persists(cache: object) -> bool:
    """Whether the store kind ``cache`` asks for keeps its entries across runs."""
    return isinstance(cache, str) and cache in store_kinds() and store_spec(cache).persistent


@dataclasses.dataclass(frozen=True)
class _Recipe:
    """How to create (or attach to) the store a loader's arguments describe."""

    spec: StoreSpec
    cache_bytes: int | None
    cache_dir: str | os.PathLike[str] | None
    fingerprint: dict[str, Any]
    allow_pickle: bool | None = None

    def for_ranks(self, setup: DistributedSetup) -> _Recipe:
        """The recipe for this rank's cache group: its own directory and fingerprint."""
        fingerprint = layout_fingerprint(self.fingerprint, setup)
        cache_dir = self.cache_dir
        if self.spec.needs_directory and not setup.shares_cache:
            assert cache_dir is not None
            check_directory(cache_dir)
            own = disk_directory(cache_dir, setup)
            own.mkdir(mode=0o700, exist_ok=True)
            cache_dir = own
        return dataclasses.replace(self, cache_dir=cache_dir, fingerprint=fingerprint)

    def _options(self) -> dict[str, Any]:
        """The registry's common arguments (:class:`~revamper.store.registry.StoreOptions`)."""
        return {
            "num_samples": self.fingerprint["num_samples"],
            "budget_bytes": self.cache_bytes,
            "directory": self.cache_dir,
            "fingerprint": self.fingerprint,
            "allow_pickle": self.allow_pickle,
        }

    def create(self) -> CacheStore:
        """A new store (the owner's instance of a shared cache)."""
        return create_store(self.spec.name, **self._options())

    def attach(self, handle: dict[str, str]) -> CacheStore:
        """Open the store another rank created, from its :meth:`~CacheStore.handle`.

        An attached shared-memory store takes the creator's pickle policy (recorded in its
        directory); the ranks of a cache group agree on ``allow_pickle`` at construction. The
        leader owns a disk directory (and has validated it by now); the others share it.
        """
        return attach_store(self.spec.name, handle, **self._options())
