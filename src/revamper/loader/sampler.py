"""The batch sampler that turns each epoch's plan into tickets, in the main process."""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Iterator

from torch.utils.data import Sampler

from revamper.loader.cursor import EpochCursor, EpochRun
from revamper.loader.epoch_overlap import may_overlap
from revamper.loader.tickets import BatchTicket
from revamper.plan import EpochPlan, PlanConfig, plan_epoch
from revamper.plan.seeding import batch_seed
from revamper.store.base import CacheStore

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NextEpoch:
    """How the sampler goes on into the next epoch once the running one's tickets are out.

    See :mod:`revamper.loader.epoch_overlap`.

    Attributes:
        propose: The next epoch and its plan config if it may start now, else ``None``.
        accept: Told that the epoch and config it proposed start now (with ``"auto"``, the
            loader records its choice of r); ``False`` if they do not hold any more.
        in_flight: The most batches the DataLoader keeps dispatched.
    """

    propose: Callable[[], tuple[int, PlanConfig] | None]
    accept: Callable[[int, PlanConfig], bool]
    in_flight: int


class PlanBatchSampler(Sampler[BatchTicket]):
    """Yields the :class:`BatchTicket` of every batch of one epoch's plan.

    The sampler owns the loader's :class:`~revamper.loader.cursor.EpochCursor`, from which
    epochs are begun; :meth:`start` points the sampler at a begun epoch, and ``iter()`` runs it
    (from the batch it began at), computing that epoch's plan at once (not lazily), so the epoch
    is fixed when the DataLoader iterator is created, and the epoch counter lives in the main
    process only (worker processes never keep one). As the DataLoader takes each ticket, some
    batches ahead of the one being consumed, the sampler tells the store which entries that
    batch will read, so a disk store can start reading them.

    With :attr:`ahead` set (persistent workers), once the running epoch's tickets are out the
    same iterator goes on with the next epoch's, when its first batches cannot change what a
    batch still in flight reads (:mod:`revamper.loader.epoch_overlap`): the workers build them
    while the consumer takes the last batches, and the next epoch's first batch is ready.

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
        self.ahead: NextEpoch | None = None
        self.halted = False
        """Set when the loader closes: the tickets stop, so that the workers run out of work."""
        self._last_plan: tuple[tuple[PlanConfig, int], EpochPlan] | None = None

    def __len__(self) -> int:
        return self.config.num_batches

    def start(self, run: EpochRun) -> None:
        """Make the next ``iter()`` run ``run``'s epoch from its first batch (a begun epoch)."""
        self._running = run

    def __iter__(self) -> Iterator[BatchTicket]:
        run = self._running
        epoch, first_batch = (run.epoch, run.first_batch) if run else self.cursor.position()
        tickets = _tickets(self.config, self._plan(self.config, epoch), first_batch, self.store)
        if self.ahead is None:
            return tickets
        return self._then_next_epoch(tickets, self.ahead)

    def _plan(self, config: PlanConfig, epoch: int) -> EpochPlan:
        """``epoch``'s plan, made once.

        The last plan made is kept: a next epoch planned to see whether it could start ahead,
        and then could not, is not planned again at its ``iter()``.
        """
        kept = self._last_plan
        if kept is not None and kept[0] == (config, epoch):
            return kept[1]
        plan = plan_epoch(config, epoch)
        self._last_plan = ((config, epoch), plan)
        return plan

    def _then_next_epoch(
        self, tickets: Iterator[BatchTicket], ahead: NextEpoch
    ) -> Iterator[BatchTicket]:
        recent: deque[BatchTicket] = deque(maxlen=max(1, ahead.in_flight))
        following: Iterator[BatchTicket] | None = tickets
        while following is not None:  # one epoch after another, while each may start early
            for ticket in following:
                if self.halted:
                    return
                recent.append(ticket)
                yield ticket
            if self.halted:
                return
            following = self._following(list(recent), ahead)

    def _following(
        self, recent: list[BatchTicket], ahead: NextEpoch
    ) -> Iterator[BatchTicket] | None:
        """The next epoch's tickets, if it may start now; ``None`` to wait for its ``iter()``.

        Called inside the DataLoader's ``__next__`` of the running epoch, so nothing here may
        raise into it: whatever fails leaves the next epoch to start as without this.
        """
        try:
            proposal = ahead.propose()
            if proposal is None:
                return None
            epoch, config = proposal
            if recent and epoch <= recent[-1].epoch:
                return None  # that epoch is out already (an epoch shorter than in_flight)
            plan = self._plan(config, epoch)
            first = [
                _ticket(config, plan, number)
                for number in range(min(ahead.in_flight, plan.num_batches))
            ]
            if self.store is not None and not may_overlap(recent, first, ahead.in_flight):
                return None
            if not ahead.accept(epoch, config):
                return None
        except Exception:  # the epoch then starts at its iter(), which raises what is wrong
            logger.debug("the next epoch waits for its iter(): its plan failed", exc_info=True)
            return None
        return _tickets(config, plan, 0, self.store)


def _ticket(config: PlanConfig, plan: EpochPlan, number: int) -> BatchTicket:
    batch = plan.batch(number)
    return BatchTicket(
        plan.epoch,
        number,
        batch.indices,
        batch.planned_miss,
        batch.generations,
        batch.worth_caching,
        batch_seed(config.seed, plan.epoch, config.rank, number),
    )


def _tickets(
    config: PlanConfig, plan: EpochPlan, first_batch: int, store: CacheStore | None
) -> Iterator[BatchTicket]:
    for number in range(first_batch, plan.num_batches):
        ticket = _ticket(config, plan, number)
        if store is not None:
            hits = ~ticket.planned_miss
            try:  # a hint: a store that cannot take it (closed, say) must not stop the tickets
                store.prefetch(ticket.indices[hits].tolist(), ticket.generations[hits].tolist())
            except Exception:
                logger.debug("the store refused a read-ahead hint", exc_info=True)
        yield ticket
