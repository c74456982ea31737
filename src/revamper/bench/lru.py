"""What an LRU cache of the same size as the RAM budget would read from disk, for comparison.

A page cache in front of a disk store behaves roughly like an LRU: what was read or written last
stays. Refurbishing reads a fresh random permutation of the data set every epoch and writes
every recomputed entry, so an entry's reuse distance is about one epoch's worth of accesses, and
an LRU smaller than the cache keeps mostly what will not be read soon. This replays an epoch
plan through such an LRU to count the bytes it would fetch from disk, next to what the tiered
store actually read.
"""

from __future__ import annotations

import collections

from revamper.plan import PlanConfig, plan_epoch


def simulate_lru(
    config: PlanConfig, epochs: int, entry_bytes: float, capacity_bytes: float
) -> list[float]:
    """Bytes an LRU cache of ``capacity_bytes`` would read from disk in each epoch.

    Every access goes through the LRU: a planned miss writes its entry (when the plan keeps it),
    a hit reads it (from the LRU if there, else from disk, then it is in the LRU). Entries are
    taken to be ``entry_bytes`` each, as the built-in pipelines' are.

    Args:
        config: The loader's plan parameters.
        epochs: Epochs to replay, from epoch 0.
        entry_bytes: Size of one cache entry.
        capacity_bytes: The LRU's size (the RAM budget it is compared with).

    Returns:
        Bytes read from disk in each epoch (epoch 0 reads nothing).
    """
    slots = int(capacity_bytes // entry_bytes) if entry_bytes > 0 else 0
    lru: collections.OrderedDict[int, None] = collections.OrderedDict()
    out = []
    for epoch in range(epochs):
        plan = plan_epoch(config, epoch)
        keep = plan.reads_left > 0  # exact under a changing r too
        misses = 0
        for index, miss, kept in zip(
            plan.indices.tolist(), plan.planned_miss.tolist(), keep.tolist(), strict=True
        ):
            if miss:
                if not kept:
                    lru.pop(index, None)
                    continue
            elif index not in lru:
                misses += 1
            lru[index] = None
            lru.move_to_end(index)
            while len(lru) > slots:
                lru.popitem(last=False)
        out.append(misses * entry_bytes)
    return out
