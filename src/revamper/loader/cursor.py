"""Where a loader stands between and inside epochs: the epoch cursor, in the main process only.

The plan-carrying batch sampler owns the cursor (:attr:`PlanBatchSampler.cursor`): the loader
moves it (:meth:`EpochCursor.seek` for a loaded state, :meth:`EpochCursor.set_epoch`), an epoch
takes it (:meth:`EpochCursor.begin`) and each delivered batch advances it
(:meth:`EpochRun.advance`); :meth:`EpochCursor.position` is what a state saves. Worker processes
never keep an epoch (an epoch counter kept in a data set is silently reset in each worker):
every batch's ticket carries its epoch from here.
"""

from __future__ import annotations

import dataclasses
import logging

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class EpochRun:
    """One started epoch: its number, the batch it started at, and the batches delivered."""

    epoch: int
    first_batch: int
    delivered: int = 0

    def advance(self) -> None:
        """One more batch of this epoch was delivered."""
        self.delivered += 1


class EpochCursor:
    """The next epoch to start and the batch it starts at, and the latest epoch started."""

    def __init__(self) -> None:
        self.next_epoch = 0
        self.next_batch = 0
        # The latest epoch says where the loader stands. The cursor must not hold the epoch's
        # iterator: a dropped iterator (after an exception, a break) would keep the workers alive.
        self.current: EpochRun | None = None

    def begin(self) -> EpochRun:
        """Take the next epoch (the cursor moves on to the start of the one after)."""
        run = EpochRun(self.next_epoch, self.next_batch)
        self.next_epoch, self.next_batch = run.epoch + 1, 0
        self.current = run
        return run

    def seek(self, epoch: int, batch: int) -> None:
        """Make the next epoch to start ``epoch``, from ``batch`` (a loaded state)."""
        self.next_epoch, self.next_batch = epoch, batch
        self.current = None

    def set_epoch(self, epoch: int, num_batches: int) -> None:
        """Make ``epoch`` the next to start; a position sought in that same epoch is kept."""
        if epoch != self.next_epoch or self.current is not None:
            self.next_batch = 0
        elif self.next_batch:
            logger.info(
                "set_epoch(%d) keeps the resumed position: the epoch starts at batch %d of %d",
                epoch,
                self.next_batch,
                num_batches,
            )
        self.seek(epoch, self.next_batch)

    def position(self) -> tuple[int, int]:
        """``(epoch, batch)`` of the next batch to deliver, or of the end of the epoch just run.

        After an epoch's last batch, that epoch with all its batches done (torchdata's
        convention), until another epoch starts or :meth:`set_epoch` moves on.
        """
        run = self.current
        if run is not None:
            return run.epoch, run.first_batch + run.delivered
        return self.next_epoch, self.next_batch
