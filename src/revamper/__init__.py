"""revamper: data refurbishing for PyTorch.

Cache the expensive first part of a random augmentation pipeline, reuse each cached sample
``reuse_factor`` times, and re-run the cheap final part with fresh randomness on every use
(Lee et al., "Refurbish Your Training Data", USENIX ATC 2021).

Quick start::

    from revamper import RevamperLoader

    loader = RevamperLoader(
        dataset, batch_size=64, shuffle=True, num_workers=2,
        partial_transform=decode_and_crop, final_transform=flip_and_randaugment,
        reuse_factor=3,
    )
    for epoch in range(epochs):
        for images, targets in loader:
            ...
"""

from collections.abc import Mapping
from typing import Any

from revamper.baselines import echoing_loader, standard_loader
from revamper.distributed import DistributedSetupError, EpochExchangeError
from revamper.errors import (
    CacheInUseError,
    CodecError,
    PickleNotAllowedError,
    SampleError,
    UnsafeCacheError,
)
from revamper.loader import EpochStats, LoaderStats, ReuseControl, RevamperLoader
from revamper.loader.layout import Transform
from revamper.loader.pipeline import use_pipeline_chooser
from revamper.plan import EpochPlan, PlanConfig, plan_epoch
from revamper.store import (
    MISS,
    ArenaStore,
    CacheStore,
    DiskStore,
    SharedMemoryStore,
    StoreStats,
    TieredStore,
    make_store,
    store_kinds,
)
from revamper.transforms import Chain

__version__ = "0.2.0"
"""The package's version: the one place it is written (``pyproject.toml`` reads it from here)."""


def _tuner_choice(
    dataset: Any,
    transforms: Any,
    cache_bytes: int | None,
    min_diversity: float,
    loader_kwargs: Mapping[str, Any],
) -> tuple[Transform, Transform, int]:
    """:meth:`RevamperLoader.from_pipeline`'s choice, made by the tuner (imported on first use).

    The package root is the one place that joins the core and a tool: the loader defines the
    port (:func:`~revamper.loader.pipeline.use_pipeline_chooser`), the tuner fills it.
    """
    from revamper.tune.tuned_loader import choose_pipeline

    return choose_pipeline(dataset, transforms, cache_bytes, min_diversity, loader_kwargs)


use_pipeline_chooser(_tuner_choice)

__all__ = [
    "MISS",
    "ArenaStore",
    "CacheInUseError",
    "CacheStore",
    "Chain",
    "CodecError",
    "DiskStore",
    "DistributedSetupError",
    "EpochExchangeError",
    "EpochPlan",
    "EpochStats",
    "LoaderStats",
    "PickleNotAllowedError",
    "PlanConfig",
    "ReuseControl",
    "RevamperLoader",
    "SampleError",
    "SharedMemoryStore",
    "StoreStats",
    "TieredStore",
    "UnsafeCacheError",
    "__version__",
    "echoing_loader",
    "make_store",
    "plan_epoch",
    "standard_loader",
    "store_kinds",
]
