"""Balanced eviction: which samples are recomputed at which epoch.

One permutation of the N sample ids, drawn once per run from the run's seed, is cut into r chunks
whose sizes differ by at most one. Epoch 0 computes every sample; at epoch e >= 1 exactly the
samples of chunk ``e mod r`` are evicted and recomputed (*planned misses*), the rest are served
from the cache (*hits*). So every epoch >= 1 recomputes N/r samples (+-1) instead of all of them
every r-th epoch, and in steady state every cached entry is used exactly r times: computed once,
then hit r - 1 times. During the first cycle chunk j >= 1 is recomputed at epoch j, so its
epoch-0 entry serves only j - 1 hits (chunk 0 serves r - 1); chunk 1's epoch-0 entry serves none,
so it is not worth writing (:func:`reads_left`).

These are the closed forms for a fixed r. A run whose r changes between epochs generalises them
to a pointer that walks round the same permutation (:mod:`revamper.plan.rotation`); with a
constant schedule its chunks, misses, generations and reads left are exactly these.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from revamper.plan.config import MAX_EPOCH, MAX_REUSE_FACTOR, check_int
from revamper.plan.seeding import Purpose, generator, normalise_seed

CHUNK_DTYPE = np.uint16
"""dtype of chunk ids (hence the reuse factor's upper bound of 65535)."""


def chunk_assignment(num_samples: int, reuse_factor: int, seed: int) -> npt.NDArray[np.uint16]:
    """Return the eviction chunk of every sample of a run.

    Args:
        num_samples: N, the number of samples (>= 1).
        reuse_factor: r, the number of chunks (1 to 65535).
        seed: The run's seed, any Python int.

    Returns:
        A read-only ``uint16`` array of length N whose entry i is the chunk (0 to r - 1) of sample
        i. Chunk sizes differ by at most one (with r > N some chunks are empty). The result is
        cached: repeated calls with the same arguments return the same array object.

    Raises:
        TypeError: If an argument is not an int.
        ValueError: If an argument is out of range.
    """
    n = check_int("num_samples", num_samples, 1)
    r = check_int("reuse_factor", reuse_factor, 1, MAX_REUSE_FACTOR)
    s = normalise_seed(check_int("seed", seed))
    return _chunk_assignment(n, r, s)


@functools.lru_cache(maxsize=4)
def _chunk_assignment(num_samples: int, reuse_factor: int, seed: int) -> npt.NDArray[np.uint16]:
    """Compute :func:`chunk_assignment` for validated, normalised arguments (cached)."""
    chunks = np.empty(num_samples, dtype=CHUNK_DTYPE)
    if reuse_factor == 1:
        chunks[:] = 0
    else:
        # Chunk j takes positions [ceil(j N / r), ceil((j + 1) N / r)) of a random permutation:
        # sizes are floor or ceil of N / r and membership is random.
        order = generator(seed, Purpose.EVICTION).permutation(num_samples)
        bounds = -(-np.arange(reuse_factor + 1, dtype=np.int64) * num_samples // reuse_factor)
        sizes = np.diff(bounds)
        chunks[order] = np.repeat(np.arange(reuse_factor, dtype=CHUNK_DTYPE), sizes)
    chunks.setflags(write=False)
    return chunks


def _check_chunks(chunks: npt.ArrayLike, reuse_factor: int) -> npt.NDArray[np.integer]:
    """Return ``chunks`` as an integer ndarray after checking every id lies in [0, r).

    Raises:
        TypeError: If ``chunks`` is not an integer array.
        ValueError: If a chunk id is negative or >= ``reuse_factor``.
    """
    array = np.asarray(chunks)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"chunks must be an integer array, got dtype {array.dtype}")
    if array.size and (int(array.min()) < 0 or int(array.max()) >= reuse_factor):
        raise ValueError(
            f"chunks must lie in [0, reuse_factor={reuse_factor}), "
            f"got values in [{array.min()}, {array.max()}]"
        )
    return array


def miss_mask(chunks: npt.ArrayLike, reuse_factor: int, epoch: int) -> npt.NDArray[np.bool_]:
    """Return which samples are planned misses (recomputed) at an epoch.

    Args:
        chunks: Chunk ids of some samples (e.g. from :func:`chunk_assignment`).
        reuse_factor: r.
        epoch: The epoch (>= 0).

    Returns:
        A ``bool`` array shaped like ``chunks``: all ``True`` at epoch 0, ``chunks == e mod r`` at
        epoch e >= 1 (so all ``True`` when r == 1).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range (a chunk id >= r included).
    """
    r = check_int("reuse_factor", reuse_factor, 1, MAX_REUSE_FACTOR)
    e = check_int("epoch", epoch, 0, MAX_EPOCH)
    return planned_misses(_check_chunks(chunks, r), r, e)


def entry_generation(chunks: npt.ArrayLike, reuse_factor: int, epoch: int) -> npt.NDArray[np.int64]:
    """Return the epoch in which each sample's current cache entry was computed, per the plan.

    For a planned miss at ``epoch`` that is ``epoch`` itself (the entry is being computed now);
    for a hit it is the latest earlier epoch e' with e' == 0 or (e' >= 1 and e' mod r == chunk).
    In closed form e' = e - ((e - chunk) mod r), replaced by 0 when below 1. Workers pass it to
    the store so that an entry of any other generation (stale, interrupted, foreign) is rejected.

    Args:
        chunks: Chunk ids of some samples, each in [0, r).
        reuse_factor: r.
        epoch: The current epoch (>= 0).

    Returns:
        An ``int64`` array shaped like ``chunks``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range (a chunk id >= r included).
    """
    r = check_int("reuse_factor", reuse_factor, 1, MAX_REUSE_FACTOR)
    e = check_int("epoch", epoch, 0, MAX_EPOCH)
    return generations(_check_chunks(chunks, r), r, e)


def planned_misses(
    chunks: npt.NDArray[np.integer], reuse_factor: int, epoch: int
) -> npt.NDArray[np.bool_]:
    """:func:`miss_mask` without argument checks, for callers that validated them already."""
    if epoch == 0 or reuse_factor == 1:
        return np.ones(chunks.shape, dtype=np.bool_)
    return np.asarray(chunks == (epoch % reuse_factor), dtype=np.bool_)


def generations(
    chunks: npt.NDArray[np.integer], reuse_factor: int, epoch: int
) -> npt.NDArray[np.int64]:
    """:func:`entry_generation` without argument checks, for callers that validated them already."""
    if epoch == 0:
        return np.zeros(chunks.shape, dtype=np.int64)
    if reuse_factor == 1:
        return np.full(chunks.shape, epoch, dtype=np.int64)
    # (e - c) mod r computed as (e mod r - c) mod r, so a huge epoch cannot overflow int64.
    lag = (np.int64(epoch % reuse_factor) - chunks.astype(np.int64)) % reuse_factor
    result: npt.NDArray[np.int64] = np.int64(epoch) - lag
    result[result < 1] = 0
    return result


def reads_left(chunks: npt.ArrayLike, reuse_factor: int, epoch: int) -> npt.NDArray[np.int64]:
    """Return how many later epochs read each sample's entry before it is next recomputed.

    The next recomputation of chunk c after epoch e is the first epoch e' > e with
    e' mod r == c, that is e + d with d = (c - e) mod r, or e + r when d is 0; the entry is read
    at the d - 1 (or r - 1) epochs in between. An entry with no reads left is not worth writing:
    chunk 1 at epoch 0 (recomputed at epoch 1), every entry with r = 1, and an entry recomputed
    after an unplanned miss in the last epoch before its planned recomputation.

    Args:
        chunks: Chunk ids of some samples, each in [0, r).
        reuse_factor: r.
        epoch: The current epoch (>= 0).

    Returns:
        An ``int64`` array shaped like ``chunks``, each value in [0, r - 1].

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range (a chunk id >= r included).
    """
    r = check_int("reuse_factor", reuse_factor, 1, MAX_REUSE_FACTOR)
    e = check_int("epoch", epoch, 0, MAX_EPOCH)
    return remaining_reads(_check_chunks(chunks, r), r, e)


def remaining_reads(
    chunks: npt.NDArray[np.integer], reuse_factor: int, epoch: int
) -> npt.NDArray[np.int64]:
    """:func:`reads_left` without argument checks, for callers that validated them already."""
    gap = (chunks.astype(np.int64) - np.int64(epoch % reuse_factor)) % reuse_factor
    gap[gap == 0] = reuse_factor
    result: npt.NDArray[np.int64] = gap - 1
    return result
