"""The run's identity, spelled once: a loader's plans, cache, agreement and state derive from it.

A :class:`LoaderConfig` is frozen and built once from the loader's checked arguments (torchdata's
``StatefulDataLoader`` and FFCV carry one too). Everything that must match between two things
that meet is derived from it, never re-listed:

- :meth:`LoaderConfig.plan_config`: the planner's :class:`~revamper.plan.PlanConfig`;
- :meth:`LoaderConfig.cache_identity`: the fingerprint a persistent cache records in its
  manifest (a cache made for another identity is discarded);
- :meth:`LoaderConfig.agreement`: what every rank (and every rank sharing a cache) must agree
  on at construction (:func:`revamper.distributed.agree` compares it);
- :meth:`LoaderConfig.state_identity`: what a saved state must match to be loaded.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from revamper.distributed import DistributedSetup
from revamper.loader.layout import TransformKeys
from revamper.plan import PlanConfig
from revamper.store.codec import CODEC_VERSION
from revamper.store.transform_identity import transform_identity


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """A loader's run identity (its checked arguments), from which the rest is derived.

    Attributes:
        num_samples: The data set's length.
        reuse_factor: ``r`` (of epoch 0, under a reuse schedule).
        batch_size: Samples per batch.
        seed: The run's seed; ``None`` until the seed policy settled it
            (:mod:`revamper.loader.seed_policy`).
        drop_last: Whether the last incomplete batch is dropped.
        shuffle: Whether every epoch is shuffled.
        balance_misses: Whether the shuffle is cache-aware.
        setup: This rank's place in distributed training (rank layout, cache scope).
        whole_sample: Whether the transforms see the whole item.
        transform_keys: The fields of mapping items the transforms apply to, or ``None``.
        partial: What the partial transform computes: the ``cache_key``, or the transform's
            description.
        cache: The cache asked for: a store kind's name, or the class name of a store passed in.
        cache_bytes: The budget of the cache the loader creates, or ``None``.
        cache_dir: The directory of a persistent cache, or ``None``.
        allow_pickle: The stores' pickle policy (``None``: each store's default).
        reuse_schedule: ``r`` of epochs 1, 2, ... (empty: ``reuse_factor`` throughout).
        max_reuse_factor: The bound ``R`` on the schedule (``None``: ``reuse_factor``).
        codec_version: The version of the codec cache entries are encoded with.
    """

    num_samples: int
    reuse_factor: int
    batch_size: int
    seed: int | None
    drop_last: bool
    shuffle: bool
    balance_misses: bool
    setup: DistributedSetup
    whole_sample: bool
    transform_keys: TransformKeys | None
    partial: str
    cache: str
    cache_bytes: int | None = None
    cache_dir: str | os.PathLike[str] | None = None
    allow_pickle: bool | None = None
    reuse_schedule: tuple[int, ...] = ()
    max_reuse_factor: int | None = None
    codec_version: int = CODEC_VERSION

    @staticmethod
    def partial_identity(
        partial_transform: Any, cache_key: str | None, *, persistent: bool = True
    ) -> str:
        """What the partial transform computes: ``cache_key``, else its description.

        ``persistent`` says whether the cache outlives the run; only then is a transform whose
        parameters cannot be seen worth a warning (a memory cache is rebuilt every run).
        """
        if cache_key is not None:
            return cache_key
        return transform_identity(partial_transform, warn_opaque=persistent)

    def with_seed(self, seed: int) -> LoaderConfig:
        """This identity with the run's ``seed`` settled (or replaced by a loaded state's)."""
        return dataclasses.replace(self, seed=seed)

    @property
    def settled_seed(self) -> int:
        """The seed, once settled (a programming error before)."""
        if self.seed is None:
            raise RuntimeError("the loader's seed is not settled yet")
        return self.seed

    @property
    def caches(self) -> bool:
        """Whether anything is cached: never when no epoch reuses an entry (``R`` is 1)."""
        bound = self.reuse_factor if self.max_reuse_factor is None else self.max_reuse_factor
        return bound > 1

    def plan_config(self) -> PlanConfig:
        """The planner's parameters (the seed must be settled)."""
        return PlanConfig(
            num_samples=self.num_samples,
            reuse_factor=self.reuse_factor,
            batch_size=self.batch_size,
            seed=self.settled_seed,
            drop_last=self.drop_last,
            shuffle=self.shuffle,
            balance_misses=self.balance_misses,
            world_size=self.setup.world_size,
            rank=self.setup.rank,
            group_size=self.setup.group_size,
            reuse_schedule=self.reuse_schedule,
            max_reuse_factor=self.max_reuse_factor,
        )

    def cache_identity(self, seed: int | None = None) -> dict[str, Any]:
        """What a persistent cache's entries depend on (its manifest's fingerprint).

        The sample order and batch size do not matter (entries are per sample), but the
        eviction plan does (seed, reuse factor, data set length) and so does what the partial
        transform computes and which part of an item it applies to. The rank layout is added
        by the store's set-up (:func:`revamper.loader.store_setup.layout_fingerprint`). The
        growing reuse schedule is not part of it: generations already reject entries computed
        under another one.

        Args:
            seed: The seed to name instead of this identity's (a cache's seed is looked up
                before the seed is settled).
        """
        identity = {
            "num_samples": self.num_samples,
            "reuse_factor": self.reuse_factor,
            "seed": self.seed if seed is None else seed,
            "whole_sample": self.whole_sample,
            "transform_keys": None if self.transform_keys is None else list(self.transform_keys),
            "partial": self.partial,
            "codec_version": self.codec_version,
        }
        if self.max_reuse_factor not in (None, self.reuse_factor):
            identity["max_reuse_factor"] = self.max_reuse_factor  # absent for a fixed r
        return identity

    def agreement(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What all ranks must agree on, and what the ranks sharing one cache must agree on.

        The seed is this identity's (``None`` when the user passed none: rank 0's drawn seed is
        then everyone's).
        """
        fields: dict[str, Any] = {
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "shuffle": self.shuffle,
            "balance_misses": self.balance_misses,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "reuse_factor": self.reuse_factor,
            "cache_scope": self.setup.cache_scope,
            "local_world_size": self.setup.local_world_size,
            "whole_sample": self.whole_sample,
            "transform_keys": self.transform_keys,
            "cache": self.cache,
            "partial_transform": self.partial,
        }
        if self.reuse_schedule or self.max_reuse_factor is not None:
            fields["reuse_schedule"] = self.reuse_schedule
            fields["max_reuse_factor"] = self.max_reuse_factor
        group = {
            "cache_bytes": self.cache_bytes,
            "allow_pickle": self.allow_pickle,
            "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
        }
        return fields, group

    def state_identity(self, keys: tuple[str, ...]) -> dict[str, Any]:
        """The plan's ``keys`` (names of :class:`PlanConfig` fields) a saved state records."""
        plan = self.plan_config()
        return {key: getattr(plan, key) for key in keys}
