"""The run-wide split of the data set between cache groups.

With W ranks in groups of L ranks that share one cache (a machine's ranks, or L = 1 for a private
cache per rank), the data set is cut into W / L parts of N L / W (+-1) samples, one per cache
group, from a seeded permutation (contiguous blocks without ``shuffle``). A group only ever sees
its part, so its cache stays useful; :mod:`revamper.plan.composition` composes each epoch of a
group's ranks from it. A single loader is the one group, and owns every sample.
"""

from __future__ import annotations

import functools

import numpy as np

from revamper.plan.config import IndexArray, index_dtype
from revamper.plan.seeding import Purpose, generator


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
    """Compute every group's part (cached: every rank and epoch of a run asks for the same)."""
    dtype = index_dtype(num_samples)
    if num_groups == 1:  # the single loader's case: a permutation, sorted, is 0..N-1
        whole = np.arange(num_samples, dtype=dtype)
        whole.setflags(write=False)
        return [whole]
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
