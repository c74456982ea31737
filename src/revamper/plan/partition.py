"""Distributed plans: cache groups own fixed parts of the data set and deal epochs to their ranks.

With W ranks in groups of L ranks that share one cache (a machine's ranks, or L = 1 for a private
cache per rank), the plan of rank k at epoch e is computed, identically on every rank and with no
communication, as follows:

1. **Partition (run-wide).** The data set is cut into W / L parts of N L / W (+-1) samples, one
   per cache group, from a seeded permutation (contiguous blocks without ``shuffle``). A group
   only ever sees its part, so its cache stays useful.
2. **Eviction (per group).** Balanced eviction over the group's part, with the group's own
   seed: every epoch >= 1 recomputes n_g / r (+-1) of the group's samples.
3. **Equal shares.** Every rank takes S samples per epoch, ceil(N / W) or floor with
   ``drop_last``, as with ``DistributedSampler``, so every rank runs the same number of batches
   (a rank with fewer would leave the others waiting in a collective); ``drop_last`` also
   trims each rank's last partial batch. The group needs L S samples (L times the trimmed
   count with ``drop_last``): it drops the surplus (chosen over the whole group, those whose
   entries are needed least, as a single loader does) or repeats some samples (hits first: a
   repeat of a hit costs no computation).
4. **Dealing.** The group shuffles its misses and its hits separately and deals them out in
   turn, so every rank gets the same share of misses (within one); each rank then composes its
   own batches with the cache-aware shuffle (:mod:`revamper.plan.mixing`).

So the mechanism's invariants hold per group: balanced eviction, and miss-balanced batches on
every rank of the group.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from revamper.plan import dropping, mixing
from revamper.plan.config import PlanConfig, index_dtype
from revamper.plan.eviction import chunk_assignment, planned_misses
from revamper.plan.seeding import Purpose, derive_seed, generator

IndexArray = npt.NDArray[np.signedinteger]


def group_samples(
    num_samples: int, num_groups: int, group: int, seed: int, shuffle: bool
) -> IndexArray:
    """Return the sorted sample ids that cache group ``group`` owns for the whole run.

    Args:
        num_samples: N.
        num_groups: Number of cache groups (W / L).
        group: The group, 0 to ``num_groups - 1``.
        seed: The run's seed.
        shuffle: Partition from a seeded permutation (else contiguous blocks).

    Returns:
        A read-only array of N / num_groups (+-1) ids; the groups' parts are disjoint and
        together hold every sample.
    """
    return _parts(num_samples, num_groups, seed, shuffle)[group]


@functools.lru_cache(maxsize=4)
def _parts(num_samples: int, num_groups: int, seed: int, shuffle: bool) -> list[IndexArray]:
    dtype = index_dtype(num_samples)
    if shuffle:
        order = generator(seed, Purpose.PARTITION).permutation(num_samples).astype(dtype)
    else:
        order = np.arange(num_samples, dtype=dtype)
    parts = []
    for part in np.array_split(order, num_groups):
        part = np.sort(part)
        part.setflags(write=False)
        parts.append(part)
    return parts


def rank_share(
    config: PlanConfig, epoch: int
) -> tuple[IndexArray, npt.NDArray[np.bool_], npt.NDArray[np.uint16]]:
    """Return this rank's samples for ``epoch``, in consumption order, with misses and chunks.

    Args:
        config: The run's parameters (``world_size`` > 1).
        epoch: The epoch.

    Returns:
        ``(indices, planned_miss, chunks)``: ``config.num_used`` sample ids in the order the
        rank consumes them, whether each is a planned miss, and its eviction chunk within its
        group (from which the generation of its cache entry follows).
    """
    n, r, b = config.num_samples, config.reuse_factor, config.batch_size
    group, size, member = config.group, config.group_size, config.member
    shuffle = config.shuffle
    ids = group_samples(n, config.num_groups, group, config.seed, shuffle)
    group_seed = derive_seed(config.seed, Purpose.GROUP, group)
    chunks = chunk_assignment(ids.size, r, group_seed)
    miss = planned_misses(chunks, r, epoch)

    # Positions into the group's part: what the group consumes this epoch. Shuffled, the group
    # also chooses what drop_last trims from its ranks' last batches (L * num_used positions),
    # so the least needed samples of the whole group go; in order, each rank trims its tail.
    need = size * (config.num_used if shuffle else config.samples_per_rank)
    positions = _fit(chunks, miss, r, epoch, need, group_seed, shuffle)
    mine = _deal(positions, miss[positions], size, member, group_seed, epoch, shuffle)
    mine = mine[: config.num_used]

    mine_miss = miss[mine]
    if shuffle:
        rng = generator(derive_seed(config.seed, Purpose.RANK, config.rank), Purpose.ORDER, epoch)
        if config.balance_misses:
            mine, mine_miss = mixing.balanced_shuffle(mine, mine_miss, b, rng)
        else:
            mine, mine_miss = mixing.plain_shuffle(mine, mine_miss, rng)
    return ids[mine], mine_miss, chunks[mine]


def _fit(
    chunks: npt.NDArray[np.uint16],
    miss: npt.NDArray[np.bool_],
    r: int,
    epoch: int,
    need: int,
    group_seed: int,
    shuffle: bool,
) -> IndexArray:
    """Positions the group consumes: all, minus a surplus or plus repeats, ``need`` in all."""
    count = chunks.size
    positions = np.arange(count, dtype=index_dtype(max(count, need)))
    if count > need:
        if not shuffle:
            return positions[:need]
        priority = dropping.drop_priority(chunks, miss, r, epoch)
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
    size: int,
    member: int,
    group_seed: int,
    epoch: int,
    shuffle: bool,
) -> IndexArray:
    """This member's share: misses and hits dealt in turn, ``positions.size / size`` in all."""
    if not shuffle:
        return positions[member::size]
    rng = generator(group_seed, Purpose.DEAL, epoch)
    misses = rng.permutation(positions[miss])
    hits = rng.permutation(positions[~miss])
    share = positions.size // size
    miss_counts = np.array([misses[j::size].size for j in range(size)])
    hit_ends = np.cumsum(share - miss_counts)
    hit_start = int(hit_ends[member - 1]) if member else 0
    own_hits = hits[hit_start : int(hit_ends[member])]
    return np.concatenate([misses[member::size], own_hits])
