"""The one composition of an epoch: chunks, misses, what to drop or repeat, the deal, the order.

Every loader, a single one included, is a member of a *cache group*: the ranks that share one
cache, and with it a fixed part of the data set (:mod:`revamper.plan.partition`). A single loader
is the group of one that owns every sample. A member's samples for epoch e are composed in four
stages, identically in every process and with no communication:

1. **Eviction (per group).** Balanced eviction over the group's part, with the group's seed:
   the rotating pointer over one run-wide permutation gives every sample its chunk (slice
   label), whether epoch e recomputes it, and its reads left (:mod:`revamper.plan.rotation`).
   Every epoch e >= 1 recomputes floor or ceil of n_g / r_e of them; with a fixed r these are
   the chunks of :mod:`revamper.plan.eviction`. The schedule is the same for every group.
2. **Fitting.** Every rank takes S samples per epoch, ceil(N / W) or floor with ``drop_last``,
   as with ``DistributedSampler``, so every rank runs the same number of batches (a rank with
   fewer would leave the others waiting in a collective); ``drop_last`` also trims each rank's
   last partial batch. The group needs L S samples (L ranks; L times the trimmed count with
   ``drop_last``). Shuffled, it drops the surplus chosen over the whole group, those whose entries
   are needed least (:mod:`revamper.plan.dropping`), or repeats some samples, hits first (a
   repeat of a hit costs no computation). In order, each rank trims its own tail.
3. **Dealing** (distributed groups only). The group shuffles its misses and its hits separately
   and deals them out in turn, so every rank gets the same share of misses (within one). A
   single loader takes its epoch whole.
4. **Order.** Each member orders its share with the cache-aware shuffle, or a plain one, from its
   own stream (:mod:`revamper.plan.mixing`); without ``shuffle`` the share stays in order.

Where the single loader and a rank differ is said once, in :func:`member_of`: the single loader
owns ``0..N-1``, draws every stream from the run's seed and is not dealt to, where a rank draws
from seeds derived for its group and for itself. Seeds, streams and the deal are part of the
plan's definition (disk caches, resumed runs and the other ranks rely on them): changing one
changes every plan, which ``tests/test_plan_golden.py`` catches.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from revamper.plan import dropping, mixing
from revamper.plan.config import IndexArray, PlanConfig, index_dtype
from revamper.plan.partition import group_samples
from revamper.plan.rotation import evict
from revamper.plan.seeding import Purpose, derive_seed, generator


class Share(NamedTuple):
    """One member's samples of one epoch, in consumption order."""

    indices: IndexArray
    """Sample ids."""
    planned_miss: npt.NDArray[np.bool_]
    """Whether each is recomputed this epoch."""
    chunks: npt.NDArray[np.uint16]
    """Each one's eviction chunk within its group (its cache entry's generation follows)."""
    reads: npt.NDArray[np.uint16]
    """Each one's reads left: later epochs that may read its entry before it is recomputed."""


@dataclasses.dataclass(frozen=True)
class Member:
    """A loader's place in its cache group: the group's samples, the seeds of its streams.

    Attributes:
        samples: The sorted sample ids the group owns for the whole run.
        group_seed: Seed of the group's eviction chunks and of its drop, pad and deal streams.
        order_seed: Seed of this member's order.
        size: Ranks in the group (L).
        position: This member's position in the group, 0 to L - 1.
        dealt: Whether the group deals its epoch to its members (every distributed group does,
            even one of a single rank; a single loader takes its epoch whole).
    """

    samples: IndexArray
    group_seed: int
    order_seed: int
    size: int
    position: int
    dealt: bool


def member_of(config: PlanConfig) -> Member:
    """Return the cache-group membership that ``config`` describes.

    Args:
        config: The run's parameters.

    Returns:
        The group of one owning every sample under the run's seed for a single loader; for a rank
        of a distributed run its group's part and the seeds derived for the group and the rank.
    """
    samples = group_samples(
        config.num_samples, config.num_groups, config.group, config.seed, config.shuffle
    )
    if not config.distributed:
        return Member(samples, config.seed, config.seed, size=1, position=0, dealt=False)
    return Member(
        samples=samples,
        group_seed=derive_seed(config.seed, Purpose.GROUP, config.group),
        order_seed=derive_seed(config.seed, Purpose.RANK, config.rank),
        size=config.group_size,
        position=config.member,
        dealt=True,
    )


def compose_epoch(config: PlanConfig, epoch: int) -> Share:
    """Compose this loader's samples of ``epoch`` (see the module docstring for the stages).

    Args:
        config: The run's parameters.
        epoch: The epoch (>= 0, already validated).

    Returns:
        ``config.num_used`` sample ids in the order the loader consumes them, whether each is a
        planned miss, its eviction chunk within its group and its reads left.
    """
    member = member_of(config)
    shuffle = config.shuffle
    chunks, miss, reads = evict(member.samples.size, config.schedule, member.group_seed, epoch)

    # Positions into the group's part: what the group consumes this epoch. Shuffled, the group
    # also chooses what drop_last trims from its ranks' last batches (L * num_used positions),
    # so the least needed samples of the whole group go; in order, each rank trims its tail.
    need = member.size * (config.num_used if shuffle else config.samples_per_rank)
    positions = _fit(miss, reads, epoch, need, member.group_seed, shuffle)
    if member.dealt:
        positions = _deal(positions, miss[positions], member, epoch, shuffle)
    mine = positions[: config.num_used]

    mine_miss = miss[mine]
    if shuffle:
        rng = generator(member.order_seed, Purpose.ORDER, epoch)
        if config.balance_misses:
            mine, mine_miss = mixing.balanced_shuffle(mine, mine_miss, config.batch_size, rng)
        else:
            mine, mine_miss = mixing.plain_shuffle(mine, mine_miss, rng)
    return Share(member.samples[mine], mine_miss, chunks[mine], reads[mine])


def _fit(
    miss: npt.NDArray[np.bool_],
    reads: npt.NDArray[np.uint16],
    epoch: int,
    need: int,
    group_seed: int,
    shuffle: bool,
) -> IndexArray:
    """Positions the group consumes: all, minus a surplus or plus repeats, ``need`` in all."""
    count = miss.size
    positions = np.arange(count, dtype=index_dtype(max(count, need)))
    if count > need:
        if not shuffle:
            return positions[:need]
        priority = dropping.drop_classes(reads, miss)
        rng = generator(group_seed, Purpose.DROP, epoch)
        keep = np.ones(count, dtype=np.bool_)
        keep[dropping.choose_dropped(priority, count - need, rng)] = False
        return positions[keep]
    if count < need:
        missing = need - count
        if not shuffle:
            repeats = np.resize(positions, missing)
        else:
            rng = generator(group_seed, Purpose.PAD, epoch)
            hits, misses = rng.permutation(positions[~miss]), rng.permutation(positions[miss])
            repeats = np.resize(np.concatenate([hits, misses]), missing)
        return np.concatenate([positions, repeats.astype(positions.dtype)])
    return positions


def _deal(
    positions: IndexArray,
    miss: npt.NDArray[np.bool_],
    member: Member,
    epoch: int,
    shuffle: bool,
) -> IndexArray:
    """This member's share: misses and hits dealt in turn, ``positions.size / size`` in all."""
    size, position = member.size, member.position
    if not shuffle:
        return positions[position::size]
    rng = generator(member.group_seed, Purpose.DEAL, epoch)
    misses = rng.permutation(positions[miss])
    hits = rng.permutation(positions[~miss])
    share = positions.size // size
    miss_counts = np.array([misses[j::size].size for j in range(size)])
    hit_ends = np.cumsum(share - miss_counts)
    hit_start = int(hit_ends[position - 1]) if position else 0
    own_hits = hits[hit_start : int(hit_ends[position])]
    return np.concatenate([misses[position::size], own_hits])
