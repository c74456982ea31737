"""The pure planner: which samples each epoch consumes, in which order, and which are recomputed.

Numpy in, numpy out: no torch, no I/O, no dataset. Given N samples, reuse factor r, batch size B,
a seed and an epoch e, :func:`plan_epoch` returns an :class:`EpochPlan` such that:

- **Coverage.** Every sample is consumed exactly once per epoch, in a shuffled order (or 0..N-1
  with ``shuffle=False``). With ``drop_last``, N mod B samples sit out the epoch; when shuffling
  they are chosen so that the cache loses nothing it will need.
- **Balanced eviction.** One run-wide permutation cuts the samples into r chunks of N/r (+-1)
  (:func:`chunk_assignment`). Epoch 0 computes everything; epoch e >= 1 recomputes exactly chunk
  e mod r (:func:`miss_mask`). In steady state every cached entry is computed once and hit r - 1
  times; in the first cycle chunk j >= 1 is hit j - 1 times before its first recomputation.
- **A changing r.** With a ``reuse_schedule`` r_1, r_2, ... bounded by ``max_reuse_factor`` R,
  a pointer walks round the same permutation and epoch e recomputes the next floor or ceil of
  N / r_e samples, the oldest first (:mod:`revamper.plan.schedule`, :mod:`revamper.plan.rotation`).
  An epoch e >= 1 at r = 1 is outside the rotation: it neither reads nor writes the cache.
  No entry is used more than R times; a constant schedule gives exactly the fixed-r plans.
- **Generations.** :func:`entry_generation` gives the epoch in which each sample's cache entry
  was computed per the plan, so stores reject stale or foreign entries; :func:`reads_left` says
  whether an entry computed now would be read at all before its next recomputation (for a fixed
  r; every plan carries both as :meth:`EpochPlan.generations` and :attr:`EpochPlan.reads_left`).
- **Cache-aware shuffle.** Each batch of size s holds floor or ceil of |M| s / n misses, so full
  batches differ by at most one miss and every step costs about the same CPU.
- **Purity.** The plan depends only on (config, epoch), and of the schedule only on r_1 to r_e:
  any process recomputes it identically, and a resumed run recomputes the plan and skips the
  batches already done.
"""

from revamper.plan.config import PlanConfig
from revamper.plan.eviction import chunk_assignment, entry_generation, miss_mask, reads_left
from revamper.plan.plan import EpochPlan, PlannedBatch, plan_epoch
from revamper.plan.schedule import ReuseSchedule

__all__ = [
    "EpochPlan",
    "PlanConfig",
    "PlannedBatch",
    "ReuseSchedule",
    "chunk_assignment",
    "entry_generation",
    "miss_mask",
    "plan_epoch",
    "reads_left",
]
