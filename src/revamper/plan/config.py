"""The parameters that fully determine a run's plan.

A :class:`PlanConfig` plus an epoch number is everything :func:`revamper.plan.plan_epoch` needs:
the plan is a pure function of the two, so any process (the main process, a worker, a resumed run)
recomputes exactly the same plan from them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from revamper.plan.limits import MAX_EPOCH, MAX_REUSE_FACTOR, check_bool, check_int
from revamper.plan.schedule import ReuseSchedule

__all__ = [
    "MAX_EPOCH",
    "MAX_REUSE_FACTOR",
    "IndexArray",
    "PlanConfig",
    "check_int",
    "index_dtype",
]

IndexArray = npt.NDArray[np.signedinteger]
"""Sample ids (and positions among them): ``int32`` when they fit, else ``int64``."""


def index_dtype(num_samples: int) -> type[np.signedinteger]:
    """Return the dtype of sample ids for a dataset of ``num_samples``: int32 if it fits."""
    return np.int32 if num_samples < 2**31 else np.int64


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """What a run's plans depend on, besides the epoch.

    Attributes:
        num_samples: N, the number of samples in the dataset (>= 1).
        reuse_factor: r, how many times a cached partial sample is used before it is recomputed
            (1 to 65535; 1 means no reuse, i.e. standard training). With a ``reuse_schedule``,
            r_0: the r the run starts from (it sets the eviction pointer's start, see
            :mod:`revamper.plan.schedule`), and the r of every epoch when the schedule is empty.
        batch_size: B, samples per batch (>= 1).
        seed: The run's seed; any Python int, negative or larger than 64 bits included (it is
            reduced modulo 2**64 before seeding numpy, so ``seed`` and ``seed + 2**64`` give the
            same plans).
        drop_last: Drop the last, partial batch of every epoch, like ``DataLoader(drop_last=True)``.
            With ``shuffle`` the dropped samples are chosen so that the cache loses nothing it will
            need (see :func:`revamper.plan.plan_epoch`). With ``drop_last`` and N < B an epoch has
            zero batches; that is allowed (it mirrors ``DataLoader``) but trains on nothing.
        shuffle: Shuffle every epoch. ``False`` consumes the samples in order 0..N-1; batches are
            then *not* balanced in misses.
        balance_misses: Use the cache-aware shuffle, which gives every batch the same share of
            recomputed samples (within one). ``False`` gives a plain shuffle, for comparison.
            Ignored when ``shuffle`` is ``False``.
        world_size: Ranks of distributed training (1: not distributed).
        rank: This rank, 0 to ``world_size - 1``.
        group_size: Ranks that share one cache (a machine's ranks with a machine-wide cache, 1
            with a private cache per rank); divides ``world_size``. Ranks ``g * group_size`` to
            ``(g + 1) * group_size - 1`` form cache group ``g``, which owns a fixed part of the
            data set (see :mod:`revamper.plan.partition`).
        reuse_schedule: r_1, ..., r_k, the reuse factors of epochs 1 to k (a changing r, as
            ``reuse_factor="auto"`` chooses it); epochs after k keep r_k, and an empty schedule
            (the default) runs every epoch at ``reuse_factor``. Epoch e >= 1 recomputes floor or
            ceil of N / r_e samples (of n_g / r_e for each cache group's part), the oldest
            entries first; an epoch e >= 1 at r = 1 neither reads nor writes the cache, and the
            next epoch at r > 1 goes on from the entries cached before it. An epoch's plan
            depends only on r_1 to r_e, so appending values for later epochs never changes an
            epoch planned already. A list is accepted and stored as a tuple.
        max_reuse_factor: R, the largest reuse factor the run may ever use (``reuse_factor`` to
            65535; ``None``, the default, means ``reuse_factor``: see :attr:`reuse_bound`). No
            entry is used more than R times between recomputations. A plan never assumes more
            about later epochs than r <= R, so an entry is skipped from the cache
            (``worth_caching``) only when it is recomputed next epoch whatever r that epoch
            gets; with R = r and a constant schedule the plans are exactly those of a fixed r.
    """

    num_samples: int
    reuse_factor: int
    batch_size: int
    seed: int
    drop_last: bool = False
    shuffle: bool = True
    balance_misses: bool = True
    world_size: int = 1
    rank: int = 0
    group_size: int = 1
    reuse_schedule: tuple[int, ...] = ()
    max_reuse_factor: int | None = None

    def __post_init__(self) -> None:
        """Validate every field and normalise numpy scalars to Python ones.

        Raises:
            TypeError: If a field has the wrong type; the message names the field.
            ValueError: If a field is out of range; the message names the field.
        """
        normalised = {
            "num_samples": check_int("num_samples", self.num_samples, 1),
            "reuse_factor": check_int("reuse_factor", self.reuse_factor, 1, MAX_REUSE_FACTOR),
            "batch_size": check_int("batch_size", self.batch_size, 1),
            "seed": check_int("seed", self.seed),
            "drop_last": check_bool("drop_last", self.drop_last),
            "shuffle": check_bool("shuffle", self.shuffle),
            "balance_misses": check_bool("balance_misses", self.balance_misses),
            "world_size": check_int("world_size", self.world_size, 1),
        }
        normalised["rank"] = check_int("rank", self.rank, 0, normalised["world_size"] - 1)
        normalised["group_size"] = check_int(
            "group_size", self.group_size, 1, normalised["world_size"]
        )
        if normalised["world_size"] % normalised["group_size"]:
            raise ValueError(
                f"group_size must divide world_size, got group_size={self.group_size} and "
                f"world_size={self.world_size}"
            )
        groups = normalised["world_size"] // normalised["group_size"]
        if normalised["num_samples"] < groups:
            raise ValueError(
                f"num_samples={self.num_samples} is smaller than the number of cache groups "
                f"({groups}: world_size {self.world_size} / {normalised['group_size']} ranks per "
                "cache), and each group needs a part of the data set of its own; use more data, "
                "fewer ranks, or one cache per machine"
            )
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        bound = self.reuse_factor if self.max_reuse_factor is None else self.max_reuse_factor
        schedule = ReuseSchedule(self.reuse_factor, self.reuse_schedule, bound)  # validates
        given = tuple(int(r) for r in self.reuse_schedule)
        object.__setattr__(self, "reuse_schedule", given)
        if self.max_reuse_factor is not None:  # None stays None: replace(reuse_factor=) works
            object.__setattr__(self, "max_reuse_factor", schedule.maximum)
        object.__setattr__(self, "_schedule", schedule)

    @property
    def schedule(self) -> ReuseSchedule:
        """The run's reuse factors in canonical form (equal schedules give equal plans)."""
        schedule: ReuseSchedule = self.__dict__["_schedule"]
        return schedule

    @property
    def reuse_bound(self) -> int:
        """R, the largest reuse factor of the run: ``max_reuse_factor``, or ``reuse_factor``."""
        return self.schedule.maximum

    def reuse_factor_at(self, epoch: int) -> int:
        """Return r_e, the reuse factor epoch ``epoch`` runs with (``reuse_factor`` at epoch 0).

        Raises:
            TypeError: If ``epoch`` is not an int.
            ValueError: If ``epoch`` is negative.
        """
        return self.schedule.at(epoch)

    @property
    def distributed(self) -> bool:
        """Whether more than one rank shares the data set."""
        return self.world_size > 1

    @property
    def num_groups(self) -> int:
        """Cache groups (each owns a fixed part of the data set)."""
        return self.world_size // self.group_size

    @property
    def group(self) -> int:
        """This rank's cache group."""
        return self.rank // self.group_size

    @property
    def member(self) -> int:
        """This rank's position in its cache group."""
        return self.rank % self.group_size

    @property
    def samples_per_rank(self) -> int:
        """Samples each rank gets per epoch, before ``drop_last`` trims its last batch.

        As with ``DistributedSampler``: ceil(N / world_size), or floor with ``drop_last``.
        """
        if self.world_size == 1 or not self.drop_last:
            return -(-self.num_samples // self.world_size)
        return self.num_samples // self.world_size

    @property
    def num_batches(self) -> int:
        """Batches per epoch (per rank): ceil(S / B), or floor(S / B) with ``drop_last``.

        S is :attr:`samples_per_rank` (N when not distributed); 0 batches when S < B with
        ``drop_last``.
        """
        if self.drop_last:
            return self.samples_per_rank // self.batch_size
        return -(-self.samples_per_rank // self.batch_size)

    @property
    def num_used(self) -> int:
        """Samples consumed per epoch (per rank): S, or S - (S mod B) with ``drop_last``."""
        if self.drop_last:
            return self.num_batches * self.batch_size
        return self.samples_per_rank
