"""The loader's cache store: built (or shared between ranks) from the run's identity.

Also where a persistent cache's recorded identity is read back (:func:`persisted_seed`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Literal

from revamper.distributed import DistributedSetup, share_store
from revamper.loader.config import LoaderConfig
from revamper.loader.shutdown import closed_on_failure
from revamper.store import CacheStore, DiskStore, SharedMemoryStore, TieredStore
from revamper.store.disk import check_directory
from revamper.store.manifest import read_manifest

logger = logging.getLogger(__name__)

CacheKind = Literal["memory", "disk"]


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
        cache="disk",
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
            "SharedMemoryStore.attach(path) on the other ranks)"
        )
    recipe = _Recipe(
        cache, config.cache_bytes, config.cache_dir, config.cache_identity(), config.allow_pickle
    )
    if setup.distributed:
        recipe = recipe.for_ranks(setup)
    if not setup.shares_cache:
        store = recipe.create()
    else:
        store = share_store(setup, recipe.create, _handle, recipe.attach)
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
    if cache not in ("memory", "disk"):
        raise ValueError(f"cache must be 'memory', 'disk' or a CacheStore instance, got {cache!r}")
    if cache == "memory" and config.cache_dir is not None:
        raise ValueError("cache_dir is used only with cache='disk'")
    if cache == "disk" and config.cache_dir is None:
        raise ValueError("cache='disk' needs cache_dir, a directory on local disk (an SSD)")


def is_persistent(store: CacheStore | None) -> bool:
    """Whether ``store``'s entries outlive the run (they belong to the seed they were made with)."""
    return isinstance(store, (DiskStore, TieredStore))


def persists(cache: object) -> bool:
    """Whether the store kind ``cache`` asks for keeps its entries across runs."""
    return isinstance(cache, str) and cache == "disk"


@dataclasses.dataclass(frozen=True)
class _Recipe:
    """How to create (or attach to) the store a loader's arguments describe."""

    kind: CacheKind
    cache_bytes: int | None
    cache_dir: str | os.PathLike[str] | None
    fingerprint: dict[str, Any]
    allow_pickle: bool | None = None

    def _pickle(self) -> dict[str, Any]:
        """The stores' ``allow_pickle`` keyword: none for their defaults."""
        return {} if self.allow_pickle is None else {"allow_pickle": bool(self.allow_pickle)}

    def for_ranks(self, setup: DistributedSetup) -> _Recipe:
        """The recipe for this rank's cache group: its own disk directory and fingerprint."""
        fingerprint = layout_fingerprint(self.fingerprint, setup)
        cache_dir = self.cache_dir
        if self.kind == "disk" and not setup.shares_cache:
            assert cache_dir is not None
            check_directory(cache_dir)
            own = disk_directory(cache_dir, setup)
            own.mkdir(mode=0o700, exist_ok=True)
            cache_dir = own
        return dataclasses.replace(self, cache_dir=cache_dir, fingerprint=fingerprint)

    def _disk(self, handle: dict[str, str] | None = None) -> DiskStore:
        """The disk store: created (and owned), or, with another rank's ``handle``, attached."""
        assert self.cache_dir is not None
        if handle is None:
            return DiskStore(
                self.cache_dir,
                num_samples=self.fingerprint["num_samples"],
                fingerprint=self.fingerprint,
                drop_after_read=self.cache_bytes is not None,
                **self._pickle(),
            )
        return DiskStore.attach(  # the leader owns the directory; the others share it
            self.cache_dir,
            num_samples=self.fingerprint["num_samples"],
            fingerprint=self.fingerprint,
            run_id=bytes.fromhex(handle["disk_run_id"]),
            drop_after_read=self.cache_bytes is not None,
            **self._pickle(),
        )

    def create(self) -> CacheStore:
        """A new store (the owner's instance of a shared-memory cache)."""
        if self.kind == "memory":
            return SharedMemoryStore(self.cache_bytes, **self._pickle())
        disk = self._disk()
        if self.cache_bytes is None:
            return disk
        with closed_on_failure(disk):
            return TieredStore(SharedMemoryStore(self.cache_bytes, **self._pickle()), disk)

    def attach(self, handle: dict[str, str]) -> CacheStore:
        """Open the store another rank created, from its :func:`_handle`.

        An attached shared-memory store takes the creator's pickle policy (recorded in its
        directory); the ranks of a cache group agree on ``allow_pickle`` at construction.
        """
        memory = handle.get("memory")
        if self.kind == "memory":
            assert memory is not None
            return SharedMemoryStore.attach(memory)
        disk = self._disk(handle)  # the leader has validated the directory by now
        if memory is None:
            return disk
        with closed_on_failure(disk):
            return TieredStore(SharedMemoryStore.attach(memory), disk)


def _handle(store: CacheStore) -> dict[str, str]:
    """What another rank needs to attach to ``store``.

    Its shared-memory directory, if any, and a disk cache's run identity (so that a rank never
    attaches to another incarnation of the directory).
    """
    if isinstance(store, SharedMemoryStore):
        return {"memory": str(store.path)}
    if isinstance(store, TieredStore):
        return {"memory": str(store.memory.path), "disk_run_id": store.disk.run_id.hex()}
    if isinstance(store, DiskStore):
        return {"disk_run_id": store.run_id.hex()}
    return {}
