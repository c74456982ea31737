"""The batch sampler that turns each epoch's plan into tickets, in the main process."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler

from revamper.loader.cursor import EpochCursor, EpochRun
from revamper.loader.tickets import BatchTicket
from revamper.plan import EpochPlan, PlanConfig, plan_epoch
from revamper.plan.seeding import batch_seed
from revamper.store.base import CacheStore


class PlanBatchSampler(Sampler[BatchTicket]):
    """Yields the :class:`BatchTicket` of every batch of one epoch's plan.

    The sampler owns the loader's :class:`~revamper.loader.cursor.EpochCursor`, from which
    epochs are begun; :meth:`start` points the sampler at a begun epoch, and ``iter()`` runs it
    (from the batch it began at), computing that epoch's plan at once (not lazily), so the epoch
    is fixed when the DataLoader iterator is created, and the epoch counter lives in the main
    process only (worker processes never keep one). As the DataLoader takes each ticket, some
    batches ahead of the one being consumed, the sampler tells the store which entries that
    batch will read, so a disk store can start reading them.

    Args:
        config: The plan's parameters.
        store: The cache to send read-ahead hints to, or ``None``.
    """

    def __init__(self, config: PlanConfig, store: CacheStore | None = None) -> None:
        super().__init__()
        self.config = config
        self.store = store
        self.cursor = EpochCursor()
        self._running: EpochRun | None = None

    def __len__(self) -> int:
        return self.config.num_batches

    def start(self, run: EpochRun) -> None:
        """Make the next ``iter()`` run ``run``'s epoch from its first batch (a begun epoch)."""
        self._running = run

    def __iter__(self) -> Iterator[BatchTicket]:
        run = self._running
        epoch, first_batch = (run.epoch, run.first_batch) if run else self.cursor.position()
        return _tickets(self.config, plan_epoch(self.config, epoch), first_batch, self.store)


def _tickets(
    config: PlanConfig, plan: EpochPlan, first_batch: int, store: CacheStore | None
) -> Iterator[BatchTicket]:
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
            batch_seed(config.seed, plan.epoch, config.rank, number),
        )
