"""Which samples an epoch drops under ``drop_last``.

``DataLoader(drop_last=True)`` drops the last partial batch: N mod B samples go unused each epoch.
With a shuffled plan we are free to choose *which* samples those are, and we choose them so that
the cache loses nothing it will need. In order of preference, the dropped samples are:

0. samples recomputed at epoch e + 1 whatever its reuse factor (chunk (e + 1) mod r for a fixed
   r; no reads left, see :mod:`revamper.plan.rotation`). At epoch 0 they are recomputed at
   epoch 1 anyway, so skipping them costs no cache entry; at epoch e >= 1 they are hits whose
   entry is evicted at epoch e + 1, so skipping them forgoes one reuse but never leaves a later
   hit without an entry;
1. other hits (skipping one forgoes a reuse);
2. misses (skipping one leaves its entry unwritten, so its later hits become unplanned misses).

Within a class the choice is uniformly random. If class 0 holds at least B samples (with a fixed
r: every chunk does; with a schedule bounded by R: N / R >= B), it always suffices (N mod B < B)
and a ``drop_last`` run never hits an entry that was never computed. With r == 1 every sample is
a miss recomputed next epoch, so any sample may be dropped.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

EVICTED_NEXT: int = 0
"""Priority class of samples whose chunk is recomputed at the next epoch (dropped first)."""
OTHER_HIT: int = 1
"""Priority class of the other hits."""
MISS: int = 2
"""Priority class of planned misses (dropped last)."""


def drop_priority(
    chunks: npt.NDArray[np.integer],
    miss: npt.NDArray[np.bool_],
    reuse_factor: int,
    epoch: int,
) -> npt.NDArray[np.uint8]:
    """Return every candidate's drop class (lower is dropped first).

    Args:
        chunks: Chunk id of each candidate sample.
        miss: Whether each candidate is a planned miss at ``epoch``.
        reuse_factor: r.
        epoch: The current epoch.

    Returns:
        A ``uint8`` array of :data:`EVICTED_NEXT`, :data:`OTHER_HIT` or :data:`MISS`.
    """
    priority = np.full(miss.shape, OTHER_HIT, dtype=np.uint8)
    priority[miss] = MISS
    priority[chunks == (epoch + 1) % reuse_factor] = EVICTED_NEXT
    return priority


def drop_classes(
    reads: npt.NDArray[np.integer], miss: npt.NDArray[np.bool_]
) -> npt.NDArray[np.uint8]:
    """Return every candidate's drop class from its reads left (lower is dropped first).

    The general form of :func:`drop_priority`: a sample with no reads left is recomputed at the
    next epoch whatever its reuse factor (:data:`EVICTED_NEXT`, misses included); otherwise
    misses are :data:`MISS` and hits :data:`OTHER_HIT`. For a fixed r it equals
    :func:`drop_priority`, since no reads are left exactly for chunk (e + 1) mod r.

    Args:
        reads: Reads left of each candidate (see :func:`revamper.plan.rotation.evict`).
        miss: Whether each candidate is a planned miss at the current epoch.

    Returns:
        A ``uint8`` array of :data:`EVICTED_NEXT`, :data:`OTHER_HIT` or :data:`MISS`.
    """
    priority = np.full(miss.shape, OTHER_HIT, dtype=np.uint8)
    priority[miss] = MISS
    priority[reads == 0] = EVICTED_NEXT
    return priority


def choose_dropped(
    priority: npt.NDArray[np.uint8], num_drop: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Pick ``num_drop`` candidates to drop, lowest priority class first, randomly within a class.

    Args:
        priority: Drop class of each candidate (see :func:`drop_priority`).
        num_drop: How many to drop, 0 to ``len(priority)``.
        rng: The epoch's generator for this purpose.

    Returns:
        Sorted positions (into ``priority``) of the dropped candidates.
    """
    chosen: list[npt.NDArray[np.int64]] = []
    remaining = num_drop
    for level in (EVICTED_NEXT, OTHER_HIT, MISS):
        if remaining == 0:
            break
        members = np.flatnonzero(priority == level)
        if members.size > remaining:
            members = rng.choice(members, size=remaining, replace=False, shuffle=False)
        chosen.append(members.astype(np.int64, copy=False))
        remaining -= members.size
    if not chosen:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen))
