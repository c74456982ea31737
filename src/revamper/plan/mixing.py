"""Cache-aware batch composition: the order in which an epoch consumes its samples.

A plain shuffle lets the recomputed samples (misses) bunch into some batches, so some steps cost
much more CPU than others and the accelerator stalls on them. The balanced composition gives every
batch the same share of misses:

1. shuffle the miss set M and the hit set H separately;
2. give batch k, which ends at offset end_k of the n samples used, a cumulative quota of
   Q_k = floor(|M| * end_k / n + 1/2) misses (round half up, not to even), i.e. Q_k - Q_{k-1}
   misses, and fill the rest of the batch from H;
3. shuffle within each batch, so a miss is equally likely at any position.

Because floor(x + t) - floor(t) is floor(x) or ceil(x), a batch of size s then holds
floor(|M| s / n) or ceil(|M| s / n) misses: full batches differ by at most one, and the short last
batch gets its proportional share. Batch membership and the within-batch order are both uniformly
random given those counts.

Every function takes the *set of sample ids* to order (not just N), so every member of a cache
group orders its share with the same code (:mod:`revamper.plan.composition`). Everything is
vectorised: no Python loop runs over samples or batches.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from revamper.plan.config import IndexArray, index_dtype

_INT64_MAX = 2**63 - 1


def batch_bounds(num_used: int, batch_size: int) -> npt.NDArray[np.int64]:
    """Return the offsets of consecutive batches of ``batch_size`` over ``num_used`` samples.

    Args:
        num_used: Samples to split (>= 0).
        batch_size: B (>= 1).

    Returns:
        ``int64`` array ``[0, B, 2B, ..., num_used]`` of length ceil(num_used / B) + 1; only the
        last batch may be shorter than B.
    """
    bounds = np.arange(0, num_used + batch_size, batch_size, dtype=np.int64)
    bounds[-1] = num_used  # the one entry in [num_used, num_used + B)
    return bounds


def miss_counts(
    planned_miss: npt.NDArray[np.bool_], bounds: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Return the number of planned misses in each batch.

    Args:
        planned_miss: Whether each sample, in consumption order, is a planned miss.
        bounds: Batch offsets into it (see :func:`batch_bounds`).

    Returns:
        ``int64`` counts, one per batch.
    """
    cumulative = np.concatenate([[0], np.cumsum(planned_miss, dtype=np.int64)])
    return np.diff(cumulative[bounds])


def cumulative_quota(
    total: int, ends: npt.NDArray[np.int64], num_used: int
) -> npt.NDArray[np.int64]:
    """Return floor(total * end / num_used + 1/2) for every end, in exact integer arithmetic.

    Args:
        total: The number of items to spread (0 to ``num_used``).
        ends: Batch end offsets, each 0 to ``num_used``.
        num_used: The number of samples the ends refer to (>= 1).

    Returns:
        The cumulative number of items due by each end, as ``int64``.
    """
    if 2 * total * num_used + num_used <= _INT64_MAX:
        return (2 * total * ends + num_used) // (2 * num_used)
    # Only for N beyond about 2**31: Python ints cannot overflow.
    exact = (2 * total * ends.astype(object) + num_used) // (2 * num_used)
    return np.asarray(exact, dtype=np.int64)


def plain_shuffle(
    ids: IndexArray, miss: npt.NDArray[np.bool_], rng: np.random.Generator
) -> tuple[IndexArray, npt.NDArray[np.bool_]]:
    """Shuffle uniformly, ignoring misses (``balance_misses=False``, for comparison).

    Args:
        ids: Sample ids to order.
        miss: Whether each id is a planned miss.
        rng: The epoch's generator for the order.

    Returns:
        ``(indices, planned_miss)`` in consumption order.
    """
    perm = rng.permutation(ids.size)
    return ids[perm], miss[perm]


def balanced_shuffle(
    ids: IndexArray, miss: npt.NDArray[np.bool_], batch_size: int, rng: np.random.Generator
) -> tuple[IndexArray, npt.NDArray[np.bool_]]:
    """Shuffle so that every batch holds its cumulative-quota share of misses (see module doc).

    Args:
        ids: Sample ids to order.
        miss: Whether each id is a planned miss.
        batch_size: B; batches are consecutive runs of B of the result (the last may be short).
        rng: The epoch's generator for the order.

    Returns:
        ``(indices, planned_miss)`` in consumption order.
    """
    n = ids.size
    if n == 0:
        return ids.copy(), miss.copy()
    pool = np.concatenate([rng.permutation(ids[miss]), rng.permutation(ids[~miss])])
    num_miss = int(np.count_nonzero(miss))

    bounds = batch_bounds(n, batch_size)
    starts, ends = bounds[:-1], bounds[1:]
    miss_due = cumulative_quota(num_miss, ends, n)
    hit_due = ends - miss_due
    miss_before = np.concatenate([[0], miss_due[:-1]])
    hit_before = np.concatenate([[0], hit_due[:-1]])
    miss_count = miss_due - miss_before
    hit_count = hit_due - hit_before

    # slot_source[p] = position in `pool` of the sample that fills slot p. Batch k takes pool
    # misses [miss_before_k, miss_due_k) into its first slots, then pool hits.
    source_dtype = index_dtype(n)
    slot_source = np.empty(n, dtype=source_dtype)
    miss_slots = np.repeat(starts - miss_before, miss_count) + np.arange(num_miss)
    hit_slots = np.repeat(starts + miss_count - hit_before, hit_count) + np.arange(n - num_miss)
    slot_source[miss_slots] = np.arange(num_miss, dtype=source_dtype)
    slot_source[hit_slots] = np.arange(num_miss, n, dtype=source_dtype)

    # Shuffle within each batch: every full batch is a row of a (K, B) view.
    full = (n // batch_size) * batch_size
    if full:
        rows = slot_source[:full].reshape(-1, batch_size)
        rng.permuted(rows, axis=1, out=rows)
    rng.shuffle(slot_source[full:])
    return pool[slot_source], slot_source < num_miss
