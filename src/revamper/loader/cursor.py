"""Where a loader stands between and inside epochs: the epoch counter, in the main process only.

Worker processes never keep an epoch (an epoch counter kept in a data set is silently reset in
each worker); every batch's ticket carries its epoch from here.
"""

from __future__ import annotations

import logging

from revamper.loader.stats import EpochStats, LoaderStats

logger = logging.getLogger(__name__)


class Position:
    """The next epoch to start, the batch it starts at, and the latest epoch started.

    Args:
        stats: The loader's per-epoch statistics, where each started epoch gets its entry.
    """

    def __init__(self, stats: LoaderStats) -> None:
        self._stats = stats
        self.next_epoch = 0
        self.resume_batch = 0
        # The latest epoch's stats say where it stands. The loader must not hold the epoch's
        # iterator: a dropped iterator (after an exception, a break) would keep the workers alive.
        self.current: EpochStats | None = None

    def start(self, num_batches: int) -> EpochStats:
        """Take the next epoch (the counter moves on) and return its fresh statistics."""
        epoch, first_batch = self.next_epoch, self.resume_batch
        self.next_epoch, self.resume_batch = epoch + 1, 0
        stats = self._stats._start(epoch, num_batches - first_batch)
        stats.first_batch = first_batch
        self.current = stats
        return stats

    def set_epoch(self, epoch: int, num_batches: int) -> None:
        """Make ``epoch`` the next to start; a resumed position in that same epoch is kept."""
        if epoch != self.next_epoch or self.current is not None:
            self.resume_batch = 0
        elif self.resume_batch:
            logger.info(
                "set_epoch(%d) keeps the resumed position: the epoch starts at batch %d of %d",
                epoch,
                self.resume_batch,
                num_batches,
            )
        self.next_epoch = epoch
        self.current = None

    def resume(self, epoch: int, batch: int) -> None:
        """Make the next epoch to start ``epoch``, from ``batch`` (a loaded state)."""
        self.next_epoch, self.resume_batch = epoch, batch
        self.current = None

    def where(self) -> tuple[int, int]:
        """``(epoch, batch)`` of the next batch to deliver, or of the end of the epoch just run.

        After an epoch's last batch, that epoch with all its batches done (torchdata's
        convention), until another epoch starts or :meth:`set_epoch` moves on.
        """
        current = self.current
        if current is not None:
            return current.epoch, current.first_batch + current.batches
        return self.next_epoch, self.resume_batch
