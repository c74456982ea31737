"""The loader's constructor arguments: checked, and the run's seed settled (agreed between ranks).

Kept apart from :mod:`revamper.loader.loader` so that the class reads as what it does with its
arguments, not how it vets them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import IterableDataset

from revamper.distributed import DistributedSetup, agree
from revamper.loader.caching import CacheKind, cache_fingerprint, persisted_seed
from revamper.plan.seeding import Purpose, derive_seed
from revamper.store.base import CacheStore
from revamper.store.transform_identity import transform_identity

logger = logging.getLogger(__name__)


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[minimum, maximum]``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_callable(name: str, value: object) -> Any:
    """Return ``value`` if it is callable or ``None``, else raise a TypeError naming ``name``."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__} {value!r}")
    return value


def check_optional(name: str, value: object, kind: type) -> None:
    """Raise a TypeError naming ``name`` unless ``value`` is ``None`` or a ``kind``."""
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__} or None, got {value!r}")


def check_arguments(
    dataset: Any,
    *,
    numbers: Mapping[str, tuple[Any, int]],
    optional: Mapping[str, tuple[Any, int]],
    functions: Mapping[str, Any],
) -> int:
    """Check the data set and the arguments; return the data set's length.

    Args:
        dataset: The data set.
        numbers: ``name: (value, minimum)`` of int arguments.
        optional: Likewise, of int arguments that may be ``None``.
        functions: ``name: value`` of arguments that must be callable or ``None``.

    Raises:
        TypeError: For an argument of the wrong type (named in the message).
        ValueError: For an argument out of range, or an empty data set.
    """
    size = check_dataset(dataset)
    for name, (value, minimum) in numbers.items():
        check_int(name, value, minimum)
    for name, (value, minimum) in optional.items():
        if value is not None:
            check_int(name, value, minimum)
    for name, function in functions.items():
        check_callable(name, function)
    return size


def check_dataset(dataset: Any) -> int:
    """Return the length of a non-empty map-style data set, else raise."""
    if isinstance(dataset, IterableDataset):
        raise TypeError(
            "RevamperLoader needs a map-style dataset (with __getitem__ and __len__); "
            f"got the IterableDataset {type(dataset).__name__}"
        )
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(
            "dataset must be a map-style dataset with __getitem__ and __len__, got "
            f"{type(dataset).__name__}"
        )
    size = len(dataset)
    if size == 0:
        raise ValueError("dataset is empty: RevamperLoader needs at least one sample")
    return size


def process_group_size() -> int:
    """Ranks in the initialised default process group (1 without one)."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return int(distributed.get_world_size())
    return 1


def draw_seed(generator: torch.Generator | None) -> int:
    """A seed from ``generator`` or torch's global RNG (as torch's ``RandomSampler`` draws one).

    So ``torch.manual_seed()`` makes runs without an explicit seed repeatable.
    """
    return int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())


@dataclasses.dataclass(frozen=True)
class SeedChoice:
    """The run's seed and the workers' generator, and where the seed came from."""

    seed: int
    generator: torch.Generator | None
    given: bool
    """Whether the user passed the seed (a drawn one may give way to a loaded state's)."""


def settle_seed(
    seed: int | None,
    generator: torch.Generator | None,
    setup: DistributedSetup,
    *,
    cache: CacheKind | CacheStore,
    cache_dir: str | os.PathLike[str] | None,
    fingerprint: dict[str, Any],
    plan: Mapping[str, Any],
    group: Mapping[str, Any],
) -> SeedChoice:
    """Settle the run's seed; under ``torch.distributed``, also check that the ranks agree.

    Without a seed: a disk cache in ``cache_dir`` made for this run gives its own (so a restart
    keeps the cache), else one is drawn (rank 0's, for every rank). With a seed and no
    generator, the workers' generator is seeded from it (and the rank, under distributed
    training, so that ranks draw different augmentations).

    Args:
        seed: The ``seed`` argument.
        generator: The ``generator`` argument.
        setup: This rank's place in distributed training.
        cache: The ``cache`` argument.
        cache_dir: The ``cache_dir`` argument.
        fingerprint: :func:`cache_fingerprint`'s arguments, but the seed.
        plan: The plan's arguments that every rank must agree on besides the fingerprint's and
            the cache's (batch size, ``drop_last``, ...).
        group: What the ranks that share a cache must agree on besides (its budget, ...).

    Raises:
        ValueError: Without a seed, with ``rank`` and ``world_size`` but no process group.
        DistributedSetupError: On every rank, if the ranks disagree.
    """
    cache_seed: int | None = None

    def default_seed() -> int:
        # Draw even when a cache's seed is reused: torch's RNG then advances as it always does,
        # and model initialisation after this stays repeatable.
        nonlocal cache_seed
        drawn = draw_seed(generator)
        if isinstance(cache, str) and cache == "disk" and cache_dir is not None:
            cache_seed = persisted_seed(cache_dir, cache_fingerprint(seed=0, **fingerprint), setup)
        return drawn if cache_seed is None else cache_seed

    given = seed is not None
    if setup.communicate:
        agreement = {
            **plan,
            "seed": seed,
            "num_samples": fingerprint["num_samples"],
            "reuse_factor": fingerprint["reuse_factor"],
            "cache_scope": setup.cache_scope,
            "local_world_size": setup.local_world_size,
            "whole_sample": fingerprint["whole_sample"],
            "transform_keys": fingerprint["transform_keys"],
            "cache": cache if isinstance(cache, str) else type(cache).__name__,
            "partial_transform": fingerprint["cache_key"]
            or transform_identity(fingerprint["partial_transform"]),
        }
        group = {**group, "cache_dir": None if cache_dir is None else str(cache_dir)}
        seed = agree(setup, agreement, group, drawn_seed=default_seed() if seed is None else 0)
    elif seed is None and setup.distributed:
        raise ValueError(
            "seed is required with rank and world_size but no torch.distributed process "
            "group (the ranks must share it, and cannot agree on one without communicating)"
        )
    if seed is None:
        seed = default_seed()
    elif generator is None:
        generator = torch.Generator()
        generator.manual_seed(
            derive_seed(seed, Purpose.RANK, setup.rank) if setup.distributed else seed
        )
    if not given and seed == cache_seed:
        logger.info("seed=None: reusing seed %d, that of the disk cache in %s", seed, cache_dir)
    return SeedChoice(seed, generator, given)
