"""Balanced eviction under a reuse schedule: the rotating pointer, sample by sample.

:mod:`revamper.plan.schedule` places the slice of every rotation step (epoch 0 and each epoch at
r > 1) on the circle of the run's one seeded permutation; this module turns that into per-sample
arrays for one epoch e at rotation step j:

- **chunks**: the *slice label* of each sample: g mod R, where g is the step whose slice last
  computed the sample (g <= 0 for epoch 0's slices) and R the schedule's bound. The entries alive
  at step j come from the slices of steps j - R + 1 to j, so the label names g uniquely, and the
  entry's generation is the epoch of step ``max(g, 0) = j - ((j - c) mod R)``, clipped at 0
  (:meth:`ReuseSchedule.label_generations`). Without epochs at r = 1 after epoch 0 the steps are
  the epochs, and this is the closed form of :func:`revamper.plan.eviction.entry_generation`
  with r = R. With a constant schedule at R the labels are exactly the fixed-r eviction chunks.
- **miss**: every sample at epoch 0; from step 1 on, the samples of step j's own slice.
- **reads**: the most later steps that can read each sample's entry before it is recomputed,
  whatever reuse factors r <= R the epochs after e get: the count if every later step ran at R,
  the slowest the pointer can move (:meth:`ReuseSchedule.continuation`). 0 means the entry is
  recomputed at step j + 1 in any case: not worth writing, and the first to drop under
  ``drop_last``. The count depends on r_1 to r_e only, so an epoch's plan never changes when later
  values are appended, and any later choice of r <= R finds every entry it plans to hit (one that
  is not recomputed at step j + 1 was not surely recomputed there, so its reads were > 0 and it
  was written).

An epoch at r = 1 after epoch 0 is outside the rotation: every sample is a miss labelled with
the epoch's own label, and none is worth writing (reads 0); it moves no pointer.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from revamper.plan.config import IndexArray, index_dtype
from revamper.plan.eviction import CHUNK_DTYPE
from revamper.plan.schedule import ReuseSchedule
from revamper.plan.seeding import Purpose, generator, normalise_seed

READS_DTYPE = np.uint16
"""dtype of the reads left (at most R - 1 <= 65534)."""


class Eviction(NamedTuple):
    """The eviction state of one epoch over the n samples of a cache group (read-only arrays)."""

    chunks: npt.NDArray[np.uint16]
    """Slice label of each sample (its eviction chunk)."""
    miss: npt.NDArray[np.bool_]
    """Whether each sample is recomputed this epoch."""
    reads: npt.NDArray[np.uint16]
    """The most later epochs that read each sample's entry before its next recomputation."""


def evict(num_samples: int, schedule: ReuseSchedule, seed: int, epoch: int) -> Eviction:
    """Return the eviction state of ``epoch`` for ``num_samples`` samples (cached).

    O(n + R) per call plus O(runs) Fraction arithmetic: the cost never grows with the epoch.

    Args:
        num_samples: n, the samples of the cache group (>= 1, validated).
        schedule: The run's reuse schedule.
        seed: The seed of the eviction permutation (the group's seed), any Python int.
        epoch: The epoch (0 to 2**63 - 1, validated).

    Returns:
        Read-only per-sample arrays; repeated calls with the same arguments return the same
        arrays.
    """
    if not schedule.in_rotation(epoch):
        return _outside(num_samples, schedule.maximum, epoch)
    return _evict(num_samples, schedule.rotation, normalise_seed(seed), schedule.step(epoch))


@functools.lru_cache(maxsize=2)
def _outside(num_samples: int, bound: int, epoch: int) -> Eviction:
    """An epoch at r = 1 outside the rotation: all misses, labelled as its own, none kept."""
    chunks = np.full(num_samples, epoch % bound, dtype=CHUNK_DTYPE)
    miss = np.ones(num_samples, dtype=np.bool_)
    reads = np.zeros(num_samples, dtype=READS_DTYPE)
    for array in (chunks, miss, reads):
        array.setflags(write=False)
    return Eviction(chunks, miss, reads)


@functools.lru_cache(maxsize=2)
def _evict(num_samples: int, schedule: ReuseSchedule, seed: int, epoch: int) -> Eviction:
    """Compute :func:`evict` at rotation step ``epoch`` of ``schedule``, a rotation schedule.

    Cached: the plan and its checks share it. ``schedule`` has no epoch at r = 1 after epoch 0,
    so its epochs are the steps.
    """
    n, bound = num_samples, schedule.maximum
    first = epoch - bound + 1  # the oldest slice that may still hold live entries
    ends = schedule.boundaries(n, first - 1, epoch)  # ceil(n F_g), g = first - 1 .. epoch
    base = ends[-1] - n  # the live part of the unrolled circle is [base, ends[-1])
    clipped = [min(max(end - base, 0), n) for end in ends]
    lengths = np.diff(np.array(clipped, dtype=np.int64))

    # Position p of the permutation sits at t = (p - base) mod n on the live circle, from its
    # oldest position (t = 0) to its newest (t = n - 1): arcs of slices first .. epoch in turn.
    if bound == 1:  # one slice holding every sample: no permutation needed
        at: IndexArray = np.zeros(n, dtype=index_dtype(n))
    else:
        at = _eviction_position(n, seed) - base % n
        at[at < 0] += n
    labels = ((np.arange(bound, dtype=np.int64) + first % bound) % bound).astype(CHUNK_DTYPE)
    arc = np.searchsorted(np.cumsum(lengths).astype(at.dtype), at, side="right")
    chunks = labels[arc]
    # Epoch 0 computes everything; later, the newest arc is epoch e's own slice.
    miss = np.ones(n, dtype=np.bool_) if epoch == 0 else at >= n - int(lengths[-1])
    later = np.array(schedule.continuation(n, epoch), dtype=at.dtype)  # each in [0, n]
    reads = np.searchsorted(later, at, side="right").astype(READS_DTYPE)
    for array in (chunks, miss, reads):
        array.setflags(write=False)
    return Eviction(chunks, miss, reads)


@functools.lru_cache(maxsize=4)
def _eviction_position(num_samples: int, seed: int) -> IndexArray:
    """Each sample's position in the run-wide permutation the pointer walks (read-only).

    The permutation is the fixed-r chunks' one: chunk j holds its positions
    [ceil(j n / r), ceil((j + 1) n / r)).
    """
    order = generator(seed, Purpose.EVICTION).permutation(num_samples)
    dtype = index_dtype(num_samples)
    position = np.empty(num_samples, dtype=dtype)
    position[order] = np.arange(num_samples, dtype=dtype)
    position.setflags(write=False)
    return position


def clear_caches() -> None:
    """Forget every cached eviction state (for tests that recompute plans cold)."""
    _evict.cache_clear()
    _outside.cache_clear()
    _eviction_position.cache_clear()
