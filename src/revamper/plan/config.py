"""The parameters that fully determine a run's plan.

A :class:`PlanConfig` plus an epoch number is everything :func:`revamper.plan.plan_epoch` needs:
the plan is a pure function of the two, so any process (the main process, a worker, a resumed run)
recomputes exactly the same plan from them.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Final

import numpy as np
import numpy.typing as npt

MAX_REUSE_FACTOR: Final = 65535
"""Largest supported reuse factor: chunk ids are stored as ``uint16``."""

MAX_EPOCH: Final = 2**63 - 1
"""Largest supported epoch: generations are stored as ``int64``."""


IndexArray = npt.NDArray[np.signedinteger]
"""Sample ids (and positions among them): ``int32`` when they fit, else ``int64``."""


def index_dtype(num_samples: int) -> type[np.signedinteger]:
    """Return the dtype of sample ids for a dataset of ``num_samples``: int32 if it fits."""
    return np.int32 if num_samples < 2**31 else np.int64


def check_int(
    name: str, value: object, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Validate an integer argument and return it as a Python ``int``.

    ``bool`` is rejected even though it subclasses ``int`` (``True`` as a batch size is a bug, not
    a request for 1); numpy integers are accepted and converted.

    Args:
        name: The argument's name, used in error messages.
        value: The value to check.
        minimum: Smallest allowed value, or ``None`` for no lower bound.
        maximum: Largest allowed value, or ``None`` for no upper bound.

    Returns:
        ``value`` as a Python ``int``.

    Raises:
        TypeError: If ``value`` is not an integer (``bool`` and floats included).
        ValueError: If ``value`` lies outside ``[minimum, maximum]``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    result = int(value)
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {result}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {result}")
    return result


def _check_bool(name: str, value: object) -> bool:
    """Validate a flag and return it as a Python ``bool``.

    Raises:
        TypeError: If ``value`` is not a ``bool`` (``0``/``1`` are rejected: they hide typos such
            as passing the batch size positionally into a flag).
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """What a run's plans depend on, besides the epoch.

    Attributes:
        num_samples: N, the number of samples in the dataset (>= 1).
        reuse_factor: r, how many times a cached partial sample is used before it is recomputed
            (1 to 65535; 1 means no reuse, i.e. standard training).
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
            "drop_last": _check_bool("drop_last", self.drop_last),
            "shuffle": _check_bool("shuffle", self.shuffle),
            "balance_misses": _check_bool("balance_misses", self.balance_misses),
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
