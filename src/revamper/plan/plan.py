"""The plan of one epoch, and the pure function that computes it.

:func:`plan_epoch` maps ``(config, epoch)`` to an :class:`EpochPlan`: the order in which the epoch
consumes its samples, which of them are planned misses, and where each batch starts. It performs
no I/O and draws all randomness from streams keyed by (seed, epoch, purpose), so any process can
recompute any epoch's plan (resume is O(1): recompute, then skip the batches already done).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from revamper.plan import mixing
from revamper.plan.composition import compose_epoch
from revamper.plan.config import MAX_EPOCH, MAX_REUSE_FACTOR, PlanConfig, check_int
from revamper.plan.eviction import generations, remaining_reads
from revamper.plan.validation import check_plan


class PlannedBatch(NamedTuple):
    """One batch of an :class:`EpochPlan` (see :meth:`EpochPlan.batch`)."""

    indices: npt.NDArray[np.signedinteger]
    planned_miss: npt.NDArray[np.bool_]
    generations: npt.NDArray[np.int64]
    worth_caching: npt.NDArray[np.bool_]


_DERIVED: npt.NDArray[np.uint16] = np.empty(0, dtype=np.uint16)
"""Marks an :class:`EpochPlan` built without ``reads_left``: derive it from the chunks."""

_DERIVED_GENERATIONS: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
"""Marks an :class:`EpochPlan` built without ``label_generations``: the fixed-r closed form."""


def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Return a read-only view of ``array`` (the caller's array keeps its own flags)."""
    view: npt.NDArray[Any] = array.view()
    view.setflags(write=False)
    return view


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class EpochPlan:
    """Which samples one epoch consumes, in which order, and which of them are recomputed.

    All arrays are read-only. Per sample used the plan holds 9 bytes (4-byte id when N < 2**31,
    1-byte miss flag, 2-byte chunk id, 2-byte reads left).

    Attributes:
        epoch: The epoch this plan is for.
        reuse_factor: r_e, the reuse factor this epoch runs with (the run's ``reuse_factor`` at
            epoch 0 and for a fixed r).
        indices: Sample ids in order of consumption (``int32`` if N < 2**31, else ``int64``).
        planned_miss: Whether each entry of ``indices`` is recomputed (and written to the cache)
            this epoch, rather than read from it.
        batch_bounds: ``int64`` offsets into ``indices``, ``num_batches + 1`` of them; batch k is
            ``indices[batch_bounds[k]:batch_bounds[k + 1]]``.
        chunks: ``uint16`` eviction chunk of each entry of ``indices``, from which the generation
            of its cache entry follows: ``entry_generation(chunks, max_reuse_factor, epoch)``.
            Under a reuse schedule a chunk is a slice label (see :mod:`revamper.plan.rotation`).
        num_samples: N, the size of the dataset (some samples may be dropped this epoch).
        max_reuse_factor: R, the run's bound on r and the modulus of the chunk ids; 0 (the
            default) means ``reuse_factor``, a fixed-r plan.
        reads_left: ``uint16`` per entry of ``indices``: how many later epochs may read the
            entry computed now before it is recomputed, whatever r <= R they get; 0 means it is
            not worth caching. By default derived from ``chunks`` as for a fixed r
            (:func:`revamper.plan.reads_left`).
        label_generations: ``int64``, R of them: the generation of the entries of each chunk
            id (the epoch that computed them; this epoch for its own chunk). By default the
            fixed-r closed form (:func:`revamper.plan.entry_generation`); under a reuse
            schedule with epochs at r = 1, which are outside the rotation, the schedule's
            (:meth:`revamper.plan.ReuseSchedule.label_generations`).
    """

    epoch: int
    reuse_factor: int
    indices: npt.NDArray[np.signedinteger]
    planned_miss: npt.NDArray[np.bool_]
    batch_bounds: npt.NDArray[np.int64]
    chunks: npt.NDArray[np.uint16]
    num_samples: int
    max_reuse_factor: int = 0
    reads_left: npt.NDArray[np.uint16] = dataclasses.field(default_factory=lambda: _DERIVED)
    label_generations: npt.NDArray[np.int64] = dataclasses.field(
        default_factory=lambda: _DERIVED_GENERATIONS
    )

    def __post_init__(self) -> None:
        """Check the scalars and the arrays' shapes, and make the arrays read-only views.

        Raises:
            TypeError: If a scalar field is not an int.
            ValueError: If a scalar is out of range, or the array lengths or the batch bounds are
                inconsistent.
        """
        check_int("epoch", self.epoch, 0, MAX_EPOCH)
        r = check_int("reuse_factor", self.reuse_factor, 1, MAX_REUSE_FACTOR)
        check_int("num_samples", self.num_samples, 1)
        bound = check_int("max_reuse_factor", self.max_reuse_factor, 0, MAX_REUSE_FACTOR) or r
        if bound < r:
            raise ValueError(f"max_reuse_factor={bound} is smaller than reuse_factor={r}")
        object.__setattr__(self, "max_reuse_factor", bound)
        if self.reads_left is _DERIVED:
            reads = remaining_reads(np.asarray(self.chunks), bound, self.epoch)
            object.__setattr__(self, "reads_left", reads.astype(np.uint16))
        if self.label_generations is _DERIVED_GENERATIONS:
            labels = np.arange(bound, dtype=np.int64)
            object.__setattr__(self, "label_generations", generations(labels, bound, self.epoch))
        table = np.asarray(self.label_generations)
        if table.shape != (bound,) or table.dtype != np.int64:
            raise ValueError(
                f"label_generations must be {bound} int64 generations (one per chunk id), got "
                f"shape {table.shape} and dtype {table.dtype}"
            )
        if int(table.min()) < 0 or int(table.max()) > self.epoch:
            raise ValueError(f"label_generations must lie in [0, epoch={self.epoch}]")
        object.__setattr__(self, "label_generations", table)
        n = self.indices.shape[0] if self.indices.ndim == 1 else -1
        shapes = (self.planned_miss.shape, self.chunks.shape, self.reads_left.shape)
        if shapes != ((n,),) * 3:
            raise ValueError(
                "indices, planned_miss, chunks and reads_left must be 1-d arrays of one length, "
                f"got shapes {self.indices.shape}, {', '.join(map(str, shapes))}"
            )
        bounds = self.batch_bounds
        if bounds.ndim != 1 or bounds.size == 0 or bounds[0] != 0 or bounds[-1] != n:
            raise ValueError(f"batch_bounds must run from 0 to len(indices)={n}, got {bounds}")
        if self.chunks.size and int(self.chunks.max()) >= bound:
            raise ValueError(f"chunk ids must lie in [0, max_reuse_factor={bound})")
        arrays = ("indices", "planned_miss", "batch_bounds", "chunks", "reads_left")
        for name in (*arrays, "label_generations"):
            object.__setattr__(self, name, _read_only(getattr(self, name)))

    def __reduce__(self) -> tuple[type[EpochPlan], tuple[object, ...]]:
        """Pickle through the constructor, so an unpickled plan's arrays are read-only too."""
        return (type(self), tuple(getattr(self, f.name) for f in dataclasses.fields(self)))

    def __repr__(self) -> str:
        return (
            f"EpochPlan(epoch={self.epoch}, reuse_factor={self.reuse_factor}, "
            f"num_samples={self.num_samples}, num_used={self.num_used}, "
            f"num_batches={self.num_batches}, num_misses={self.num_misses})"
        )

    @property
    def num_batches(self) -> int:
        """Number of batches in the epoch."""
        return int(self.batch_bounds.size) - 1

    @property
    def num_used(self) -> int:
        """Number of samples the epoch consumes."""
        return int(self.indices.size)

    @property
    def dropped_count(self) -> int:
        """Samples of the data set this plan does not consume.

        N mod B with ``drop_last``, else 0; under distributed training also every sample that
        the other ranks consume.
        """
        return self.num_samples - self.num_used

    @property
    def num_misses(self) -> int:
        """Number of planned misses among the samples consumed."""
        return int(np.count_nonzero(self.planned_miss))

    def batch(self, k: int) -> PlannedBatch:
        """Return batch ``k`` as ``(indices, planned_miss, generations, worth_caching)``.

        ``generations[i]`` is the epoch in which the cache entry of ``indices[i]`` was computed
        per the plan (the current epoch for a planned miss); a worker passes it to the store so
        that a stale entry is never served. ``worth_caching[i]`` says whether an entry computed
        for ``indices[i]`` now would be read before its next planned recomputation; a worker
        skips the cache write when it would not (chunk 1 at epoch 0, say). Both are computed
        for this batch only.

        Args:
            k: Batch number, 0 to ``num_batches - 1`` (negative numbers are rejected).

        Returns:
            Read-only views of the batch's ids and miss flags, a fresh ``int64`` array of
            generations and a fresh ``bool`` array of write flags.

        Raises:
            TypeError: If ``k`` is not an int.
            IndexError: If ``k`` is out of range.
        """
        k = check_int("k", k)
        if not 0 <= k < self.num_batches:
            raise IndexError(
                f"batch {k} out of range: epoch {self.epoch} has {self.num_batches} batches "
                f"(0 to {self.num_batches - 1})"
            )
        lo, hi = int(self.batch_bounds[k]), int(self.batch_bounds[k + 1])
        return PlannedBatch(
            self.indices[lo:hi],
            self.planned_miss[lo:hi],
            self.label_generations[self.chunks[lo:hi]],
            self.reads_left[lo:hi] > 0,
        )

    def generations(self) -> npt.NDArray[np.int64]:
        """Return the generation of every entry of ``indices`` (a fresh ``int64`` array).

        The epoch in which the plan computed each sample's cache entry: this epoch for a planned
        miss, an earlier one (0 in the first cycle) for a hit. :meth:`batch` gives the same per
        batch.
        """
        return self.label_generations[self.chunks]

    def miss_counts(self) -> npt.NDArray[np.int64]:
        """Return the number of planned misses in each batch (``int64``, one per batch)."""
        return mixing.miss_counts(self.planned_miss, self.batch_bounds)

    def dropped_indices(self) -> npt.NDArray[np.int64]:
        """Return the sorted ids of the samples this plan does not consume (see dropped_count)."""
        seen = np.zeros(self.num_samples, dtype=np.bool_)
        seen[self.indices] = True
        return np.flatnonzero(~seen)

    def validate(self, config: PlanConfig) -> None:
        """Check every invariant of the plan against the config it was made from.

        Meant for tests and debugging (it costs a few passes over the arrays).

        Args:
            config: The config the plan was computed from.

        Raises:
            ValueError: Describing the first violated invariant.
        """
        check_plan(self, config)


def plan_epoch(config: PlanConfig, epoch: int) -> EpochPlan:
    """Compute the plan of one epoch, a pure function of ``(config, epoch)``.

    Epoch 0 computes every sample; epoch e >= 1 recomputes the samples of eviction chunk e mod r
    (under a reuse schedule: the next floor or ceil of N / r_e samples of the rotation, or all
    of them, cached for none, at r = 1, see :mod:`revamper.plan.schedule`) and serves the rest
    from the cache. With ``shuffle`` the order is the cache-aware shuffle (every batch holds the
    same share of misses, within one) or, with ``balance_misses=False``, a plain shuffle;
    without ``shuffle`` it is 0..N-1.

    With ``drop_last``, N mod B samples sit out the epoch. Without ``shuffle`` they are the tail,
    as in ``DataLoader``. With ``shuffle`` they are chosen so the cache loses nothing it needs:
    first samples recomputed at epoch e + 1 anyway (chunk (e + 1) mod r), then other hits, then
    misses, randomly within each class (see :mod:`revamper.plan.dropping`); they are removed
    before the batches are composed.

    With ``world_size`` > 1 the plan is this rank's share of its cache group's epoch: every rank
    gets the same number of samples and batches. A single loader is the group of one rank that
    owns every sample; both are composed by :func:`revamper.plan.composition.compose_epoch`.

    Args:
        config: The run's parameters.
        epoch: The epoch, an int >= 0.

    Returns:
        The epoch's plan.

    Raises:
        TypeError: If ``config`` is not a :class:`PlanConfig` or ``epoch`` is not an int.
        ValueError: If ``epoch`` is negative (or beyond 2**63 - 1).
    """
    if not isinstance(config, PlanConfig):
        raise TypeError(f"config must be a PlanConfig, got {type(config).__name__}")
    epoch = check_int("epoch", epoch, 0, MAX_EPOCH)
    indices, planned_miss, chunks, reads = compose_epoch(config, epoch)
    return EpochPlan(
        epoch=epoch,
        reuse_factor=config.schedule.at(epoch),
        indices=indices,
        planned_miss=planned_miss,
        batch_bounds=mixing.batch_bounds(indices.size, config.batch_size),
        chunks=chunks,
        num_samples=config.num_samples,
        max_reuse_factor=config.schedule.maximum,
        reads_left=reads,
        label_generations=config.schedule.label_generations(epoch),
    )
