"""The epoch-boundary exchange: every rank's measurement to every rank, with a bounded wait.

With ``reuse_factor="auto"`` every rank must run the same r in every epoch (the ranks' plans
are parts of one run-wide plan), and the r must suit the slowest rank's loader (every rank
waits for it in the training step's all-reduce). So at each epoch boundary the ranks gather
what each measured in ONE ``all_gather_object`` and each computes the same decision from all
of them (a pure function of the gathered list): one decision, no broadcast to wait for.

The gather runs on a private gloo group made when the loader is built (a collective then,
like the construction-time handshake), so that:

- it needs no accelerator and never queues behind the training's NCCL work;
- it has its own timeout: if a rank crashed, hangs, stopped iterating or started another
  epoch, the others raise :class:`EpochExchangeError` (a dead peer usually at once, a hung one
  after the timeout) instead of waiting for ever;
- a rank that failed to measure sends its error instead, and every rank raises the same error.
"""

from __future__ import annotations

import datetime
from typing import Any

import torch.distributed as dist

from revamper.distributed.agreement import format_ranks
from revamper.distributed.setup import DistributedSetup

DEFAULT_TIMEOUT = datetime.timedelta(minutes=10)
"""How long a rank waits for the others at an epoch boundary (NCCL's default collective timeout:
a DDP job whose ranks are that far apart fails in its own all-reduce anyway)."""


class EpochExchangeError(RuntimeError):
    """The ranks could not share their measurements at an epoch boundary.

    Attributes:
        epoch: The epoch whose r was being chosen.
        ranks: The ranks concerned (those that reported an error, or all of a mismatch).
    """

    def __init__(self, message: str, *, epoch: int, ranks: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.ranks = ranks


class EpochExchange:
    """Gathers one picklable value from every rank at each epoch boundary.

    Building one is a collective when ``setup.communicate``: every rank must build it, in the
    same order relative to other collectives (the loader does, in its constructor).

    Args:
        setup: This rank's place in distributed training.
        timeout: How long a gather may wait for the other ranks.
    """

    def __init__(
        self, setup: DistributedSetup, timeout: datetime.timedelta = DEFAULT_TIMEOUT
    ) -> None:
        self._setup = setup
        self._timeout = timeout
        self._group: Any = None
        if setup.communicate:
            self._group = dist.new_group(backend="gloo", timeout=timeout)

    @property
    def communicates(self) -> bool:
        """Whether gathers involve other ranks (else they return this rank's value alone)."""
        return self._group is not None

    def gather(self, value: Any, epoch: int, error: str | None = None) -> list[Any]:
        """Every rank's ``value`` for the boundary before ``epoch``, in rank order.

        Args:
            value: This rank's contribution (picklable).
            epoch: The epoch the values are for; every rank must pass the same.
            error: Instead of a value, what went wrong on this rank (every rank then raises).

        Raises:
            EpochExchangeError: On every rank that got this far, if a rank failed, did not
                arrive within the timeout, reported an error, or was at another epoch.
        """
        if self._group is None:
            if error is not None:
                raise EpochExchangeError(error, epoch=epoch, ranks=(self._setup.rank,))
            return [value]
        world = self._setup.world_size
        gathered: list[Any] = [None] * world
        try:
            dist.all_gather_object(gathered, (epoch, value, error), group=self._group)
        except Exception as exc:  # gloo raises RuntimeError (DistBackendError) subclasses
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise EpochExchangeError(
                f"RevamperLoader (reuse_factor='auto'): rank {self._setup.rank} could not "
                f"share its measurements with the other ranks before epoch {epoch} (waited at "
                f"most {self._timeout}): another rank failed, stopped iterating the loader, or "
                f"is at another epoch. Every rank must iterate the same epochs. "
                f"({type(exc).__name__}: {first_line})",
                epoch=epoch,
            ) from exc
        return _checked(gathered, epoch)


def _checked(gathered: list[Any], epoch: int) -> list[Any]:
    """The values of the ``(epoch, value, error)`` triples, once all agree and none failed."""
    failed = [rank for rank, (_, _, error) in enumerate(gathered) if error is not None]
    if failed:
        details = "; ".join(f"rank {rank}: {gathered[rank][2]}" for rank in failed)
        raise EpochExchangeError(
            f"RevamperLoader (reuse_factor='auto'): {format_ranks(failed)} failed to measure "
            f"the epoch before epoch {epoch}: {details}",
            epoch=epoch,
            ranks=tuple(failed),
        )
    epochs = [e for e, _, _ in gathered]
    if len(set(epochs)) > 1:
        where = ", ".join(f"rank {rank} at epoch {e}" for rank, e in enumerate(epochs))
        raise EpochExchangeError(
            f"RevamperLoader (reuse_factor='auto'): the ranks must start the same epoch "
            f"together (call set_epoch with the same epoch on every rank), but {where}",
            epoch=epoch,
            ranks=tuple(range(len(epochs))),
        )
    return [value for _, value, _ in gathered]
