"""Whether the next epoch's first batches may start while this epoch's last ones are in flight.

With persistent workers, torch's DataLoader keeps up to ``prefetch_factor * num_workers``
batches dispatched. At the end of an epoch the workers run out of work while the consumer still
takes the last of them, and the next epoch starts only at the next ``iter()``: its consumer
waits while one worker builds the first batch alone (docs/benchmarks.md, 12e: up to 12% of a
short epoch). The loader can instead go on handing out the next epoch's tickets, so that its
first batches are built while the last ones of this epoch are consumed.

That must not change what any batch reads. A batch of the next epoch may run while batches of
this one are still in the workers, so the two must not touch one cache entry where either of
them writes it: a recomputation of the next epoch would replace an entry this epoch still reads
(an unplanned miss), or a read of the next epoch would come before this epoch's write of that
entry. :func:`may_overlap` checks exactly that, from the two epochs' tickets: the batches of the
next epoch that may be dispatched while a batch of this one is in flight, against that batch.
A read of an entry by both is no conflict. With r = 1 (nothing cached), every epoch overlaps;
with r >= 2 an epoch that writes entries shares some with the next one's first batches almost
always, and then the next epoch starts at ``iter()`` as torch's does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from revamper.loader.tickets import BatchTicket


def _accesses(tickets: Sequence[BatchTicket]) -> tuple[np.ndarray, np.ndarray]:
    """The indices ``tickets`` read or write in the cache, and those they may write.

    A planned hit reads its entry, and writes it when the read misses and the entry is worth
    caching; a planned miss writes it when it is worth caching.
    """
    if not tickets:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    indices = np.concatenate([t.indices for t in tickets])
    writes = np.concatenate([t.worth_caching for t in tickets])
    reads = ~np.concatenate([t.planned_miss for t in tickets])
    return indices[reads | writes], indices[writes]


def conflict(running: Sequence[BatchTicket], later: BatchTicket) -> bool:
    """Whether ``later`` touches an entry that ``running`` touches, one of them writing it."""
    touched, written = _accesses(running)
    later_touched, later_written = _accesses([later])
    return bool(np.isin(later_touched, written).any() or np.isin(later_written, touched).any())


def may_overlap(
    current: Sequence[BatchTicket], following: Sequence[BatchTicket], in_flight: int
) -> bool:
    """Whether the tickets ``following`` may be dispatched right after ``current``'s.

    Args:
        current: The last tickets of the running epoch, in the order they were dispatched (at
            least the last ``in_flight`` of them, when it has that many).
        following: The first tickets of the next epoch (those beyond ``in_flight`` are
            dispatched only once every batch of ``current`` was received, and are not checked).
        in_flight: The most batches the DataLoader keeps dispatched
            (``prefetch_factor * num_workers``).

    Returns:
        ``True`` if no ticket of ``following`` may run while a batch of ``current`` it
        conflicts with (see :func:`conflict`) is still being built.
    """
    if in_flight < 1:
        return False
    dispatched = len(current)
    for k, ticket in enumerate(following[:in_flight]):
        # The DataLoader dispatches ticket ``dispatched + k`` when it receives the batch
        # ``in_flight`` places before it; every batch of ``current`` from that one on may still
        # be running (the one being received is counted too: the check errs on the safe side).
        first_running = max(0, dispatched + k - in_flight)
        if first_running >= dispatched:
            break
        if conflict(current[first_running:], ticket):
            return False
    return True
