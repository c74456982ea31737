"""Checking an :class:`~revamper.plan.EpochPlan` against every invariant the mechanism promises.

Used by the tests and by :meth:`EpochPlan.validate` for users' debugging. Each check raises a
``ValueError`` naming the first violated invariant (no ``assert``: it must work under ``-O``).

The checks read a plan through :class:`PlanView` (its arrays and scalars), derive every count
from those and recompute the schedule from the config; so they depend on no plan type, and the
plan's module calls them without an import circle.
"""

from __future__ import annotations

from typing import NoReturn, Protocol

import numpy as np
import numpy.typing as npt

from revamper.plan.config import IndexArray, PlanConfig, index_dtype
from revamper.plan.dropping import drop_classes
from revamper.plan.eviction import CHUNK_DTYPE
from revamper.plan.mixing import miss_counts
from revamper.plan.rotation import READS_DTYPE, evict


class PlanView(Protocol):
    """What the checks read of a plan: an :class:`~revamper.plan.EpochPlan`'s fields."""

    @property
    def epoch(self) -> int:
        """The epoch the plan is for."""

    @property
    def reuse_factor(self) -> int:
        """The reuse factor r_e of the plan's epoch."""

    @property
    def max_reuse_factor(self) -> int:
        """The run's bound R on the reuse factor (the modulus of the chunk ids)."""

    @property
    def num_samples(self) -> int:
        """The data set size N."""

    @property
    def indices(self) -> IndexArray:
        """Sample ids in order of consumption."""

    @property
    def label_generations(self) -> npt.NDArray[np.int64]:
        """The generation of the entries of each chunk id."""

    @property
    def planned_miss(self) -> npt.NDArray[np.bool_]:
        """Whether each entry of ``indices`` is recomputed this epoch."""

    @property
    def batch_bounds(self) -> npt.NDArray[np.int64]:
        """Offsets of the batches into ``indices``."""

    @property
    def chunks(self) -> npt.NDArray[np.uint16]:
        """Eviction chunk of each entry of ``indices``."""

    @property
    def reads_left(self) -> npt.NDArray[np.uint16]:
        """Reads left of each entry of ``indices``."""


def _fail(message: str) -> NoReturn:
    raise ValueError(f"invalid plan: {message}")


def check_plan(plan: PlanView, config: PlanConfig) -> None:
    """Raise ``ValueError`` describing the first invariant ``plan`` violates for ``config``.

    Invariants: metadata matches the config; dtypes; batch layout (B per batch, only the last one
    short, ``config.num_batches`` batches); coverage (each sample at most once, exactly N - (N mod
    B) with ``drop_last`` else all N); chunks, miss flags and reads left follow the eviction
    schedule (the rotation of :mod:`revamper.plan.rotation`, fixed-r chunks for a fixed r); order
    is 0..N-1 without shuffling; dropped samples respect the drop priority when shuffling; every
    batch holds floor or ceil of |M| * size / n misses under the cache-aware shuffle.

    Args:
        plan: The plan to check.
        config: The config it was computed from.

    Raises:
        ValueError: If an invariant does not hold.
    """
    n, r = config.num_samples, config.reuse_factor_at(plan.epoch)
    if (plan.num_samples, plan.reuse_factor) != (n, r):
        _fail(f"plan is for N={plan.num_samples}, r={plan.reuse_factor}; config has N={n}, r={r}")
    bound = config.reuse_bound
    if plan.max_reuse_factor != bound:
        _fail(f"plan is for max_reuse_factor={plan.max_reuse_factor}; config has {bound}")
    if config.distributed:
        _check_layout(plan, config)
        if config.shuffle and config.balance_misses:
            _check_balance(plan)
        # Coverage (each sample once) holds over all ranks' plans together, which one rank's
        # plan cannot show; tests/test_plan_distributed.py checks the union.
        return
    dtypes = (
        plan.indices.dtype,
        plan.planned_miss.dtype,
        plan.batch_bounds.dtype,
        plan.chunks.dtype,
        plan.reads_left.dtype,
    )
    if dtypes != (
        np.dtype(index_dtype(n)),
        np.dtype(np.bool_),
        np.dtype(np.int64),
        np.dtype(CHUNK_DTYPE),
        np.dtype(READS_DTYPE),
    ):
        _fail(f"dtypes (indices, planned_miss, batch_bounds, chunks, reads_left) are {dtypes}")

    _check_layout(plan, config)
    indices = plan.indices
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= n):
        _fail(f"sample ids must lie in [0, {n}), got [{indices.min()}, {indices.max()}]")
    seen = np.zeros(n, dtype=np.bool_)
    seen[indices] = True
    if int(np.count_nonzero(seen)) != indices.size:
        _fail("a sample appears more than once in the epoch")

    everything = evict(n, config.schedule, config.seed, plan.epoch)
    if not np.array_equal(plan.chunks, everything.chunks[indices]):
        _fail("chunks differ from the run's eviction chunk assignment")
    if not np.array_equal(plan.planned_miss, everything.miss[indices]):
        _fail(f"planned_miss differs from the eviction schedule of epoch {plan.epoch}")
    if not np.array_equal(plan.reads_left, everything.reads[indices]):
        _fail(f"reads_left differs from the eviction schedule of epoch {plan.epoch}")
    if not np.array_equal(plan.label_generations, config.schedule.label_generations(plan.epoch)):
        _fail(f"label_generations differ from the reuse schedule's at epoch {plan.epoch}")

    if not config.shuffle:
        if not np.array_equal(indices, np.arange(indices.size)):
            _fail("without shuffle the order must be 0, 1, ..., num_used - 1")
        return
    if plan.indices.size < n:  # some samples sit out the epoch
        priority = drop_classes(everything.reads, everything.miss)
        if int(priority[~seen].max()) > int(priority[seen].min(initial=255)):
            _fail("a sample was dropped while one of a lower drop class was kept")
    if config.balance_misses:
        _check_balance(plan)


def _check_layout(plan: PlanView, config: PlanConfig) -> None:
    """Check the batch bounds: ``num_batches`` batches of B, only the last one possibly short."""
    b = config.batch_size
    used, batches = int(plan.indices.size), int(plan.batch_bounds.size) - 1
    if used != config.num_used:
        _fail(f"the epoch uses {used} samples, expected {config.num_used}")
    if batches != config.num_batches:
        _fail(f"the epoch has {batches} batches, expected {config.num_batches}")
    sizes = np.diff(plan.batch_bounds)
    if sizes.size and (np.any(sizes[:-1] != b) or not 1 <= int(sizes[-1]) <= b):
        _fail(f"batch sizes must be {b} except a shorter, non-empty last batch")


def _check_balance(plan: PlanView) -> None:
    """Check every batch of size s holds floor or ceil of m * s / n misses."""
    n, m = int(plan.indices.size), int(np.count_nonzero(plan.planned_miss))
    if n == 0:
        return
    sizes = np.diff(plan.batch_bounds)
    counts = miss_counts(plan.planned_miss, plan.batch_bounds)
    low = (m * sizes.astype(object)) // n
    high = -((-m * sizes.astype(object)) // n)
    bad = np.flatnonzero((counts < low) | (counts > high))
    if bad.size:
        k = int(bad[0])
        _fail(
            f"batch {k} holds {counts[k]} misses; with {m} misses over {n} samples a batch of "
            f"{sizes[k]} must hold {low[k]} to {high[k]}"
        )
