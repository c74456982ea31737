"""Which cache store a loader's arguments ask for, and the fingerprint a disk cache carries."""

from __future__ import annotations

import os
from typing import Any, Literal

from revamper.store import CacheStore, DiskStore, SharedMemoryStore, TieredStore
from revamper.store.codec import CODEC_VERSION
from revamper.store.manifest import transform_identity

CacheKind = Literal["memory", "disk"]


def cache_fingerprint(
    *,
    num_samples: int,
    reuse_factor: int,
    seed: int,
    partial_transform: Any,
    whole_sample: bool,
    cache_key: str | None,
) -> dict[str, Any]:
    """What a persistent cache's entries depend on; a cache made for anything else is discarded.

    The sample order and batch size do not matter (entries are per sample), but the eviction
    plan does (seed, reuse factor, data set length) and so does what the partial transform
    computes: ``cache_key`` names it when its description is not enough (a changed function
    body, new data behind the same length).
    """
    return {
        "num_samples": num_samples,
        "reuse_factor": reuse_factor,
        "seed": seed,
        "whole_sample": whole_sample,
        "partial": cache_key if cache_key is not None else transform_identity(partial_transform),
        "codec_version": CODEC_VERSION,
    }


def make_store(
    cache: CacheKind | CacheStore,
    *,
    cache_bytes: int | None,
    cache_dir: str | os.PathLike[str] | None,
    reuse_factor: int,
    fingerprint: dict[str, Any],
) -> tuple[CacheStore | None, bool]:
    """Build the store the loader's arguments describe.

    Returns:
        ``(store, owned)``: ``store`` is ``None`` when nothing is cached (``reuse_factor`` 1);
        ``owned`` says whether the loader created it (and so closes it).

    Raises:
        ValueError: For a combination that makes no sense, named in the message.
    """
    if isinstance(cache, CacheStore):
        if cache_bytes is not None or cache_dir is not None:
            raise ValueError(
                "cache_bytes and cache_dir configure the store the loader creates; you passed a "
                "store instance, so configure that store instead"
            )
        return cache, False
    if cache not in ("memory", "disk"):
        raise ValueError(f"cache must be 'memory', 'disk' or a CacheStore instance, got {cache!r}")
    if cache == "memory" and cache_dir is not None:
        raise ValueError("cache_dir is used only with cache='disk'")
    if cache == "disk" and cache_dir is None:
        raise ValueError("cache='disk' needs cache_dir, a directory on local disk (an SSD)")
    if reuse_factor == 1:
        return None, False  # every sample is recomputed every epoch: a cache would only cost
    if cache == "memory":
        return SharedMemoryStore(cache_bytes), True
    assert cache_dir is not None
    disk = DiskStore(
        cache_dir,
        num_samples=fingerprint["num_samples"],
        fingerprint=fingerprint,
        drop_after_read=cache_bytes is not None,
    )
    if cache_bytes is None:
        return disk, True
    return TieredStore(SharedMemoryStore(cache_bytes), disk), True
