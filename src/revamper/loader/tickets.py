"""The unit of work the main process hands a worker: one planned batch."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class BatchTicket:
    """One batch of the epoch plan, as the sampler yields it and a worker receives it.

    Attributes:
        epoch: The epoch the batch belongs to (set in the main process, never in workers).
        batch: The batch's position in the epoch.
        indices: Sample indices, in the order the batch delivers them.
        planned_miss: Whether each sample is to be computed (``True``) or read from the cache.
        generations: The generation each sample's cache entry has (hits) or gets (misses).
        worth_caching: Whether a sample computed now should be written to the cache (it is
            read again before its next planned recomputation).
        augment_seed: What the transforms' RNGs are seeded with for this batch
            (:func:`~revamper.plan.seeding.batch_seed`), or ``None`` to leave them alone.
    """

    epoch: int
    batch: int
    indices: np.ndarray[Any, np.dtype[np.integer[Any]]]
    planned_miss: np.ndarray[Any, np.dtype[np.bool_]]
    generations: np.ndarray[Any, np.dtype[np.integer[Any]]]
    worth_caching: np.ndarray[Any, np.dtype[np.bool_]]
    augment_seed: int | None = None

    def __len__(self) -> int:
        return len(self.indices)
