"""The batch sampler that turns each epoch's plan into tickets, in the main process."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler

from revamper.loader.tickets import BatchTicket
from revamper.plan import EpochPlan, PlanConfig, plan_epoch
from revamper.store.base import CacheStore


class PlanBatchSampler(Sampler[BatchTicket]):
    """Yields the :class:`BatchTicket` of every batch of one epoch's plan.

    The loader sets :attr:`epoch` (and :attr:`first_batch`, to resume mid-epoch) before each
    epoch; ``iter()`` computes that epoch's plan at once (not lazily), so the epoch is fixed when
    the DataLoader iterator is created, and the epoch counter lives in the main process only
    (worker processes never keep one). As the DataLoader takes each ticket, some batches ahead
    of the one being consumed, the sampler tells the store which entries that batch will read,
    so a disk store can start reading them.

    Args:
        config: The plan's parameters.
        store: The cache to send read-ahead hints to, or ``None``.
    """

    def __init__(self, config: PlanConfig, store: CacheStore | None = None) -> None:
        super().__init__()
        self.config = config
        self.store = store
        self.epoch = 0
        self.first_batch = 0

    def __len__(self) -> int:
        return self.config.num_batches

    def __iter__(self) -> Iterator[BatchTicket]:
        plan = plan_epoch(self.config, self.epoch)
        return _tickets(plan, self.first_batch, self.store)


def _tickets(plan: EpochPlan, first_batch: int, store: CacheStore | None) -> Iterator[BatchTicket]:
    for number in range(first_batch, plan.num_batches):
        batch = plan.batch(number)
        if store is not None:
            hits = ~batch.planned_miss
            store.prefetch(batch.indices[hits].tolist(), batch.generations[hits].tolist())
        yield BatchTicket(
            plan.epoch,
            number,
            batch.indices,
            batch.planned_miss,
            batch.generations,
            batch.worth_caching,
        )
