"""The reuse factor of every epoch of a loader: a fixed r, or one chosen epoch by epoch.

``RevamperLoader(reuse_factor=3)`` runs every epoch at r = 3. ``reuse_factor="auto"`` (or a
:class:`~revamper.loader.reuse_control.ReuseControl` with its own settings) starts at r_0 = 1,
caches as if r could reach ``max_reuse_factor`` (R), and at the start of every epoch after the
first appends that epoch's r to the run's *schedule* r_1, r_2, ..., chosen from what the epoch
before measured (:func:`~revamper.loader.reuse_control.decide`). The planner takes the schedule
as part of the run's :class:`~revamper.plan.PlanConfig`; an epoch's plan depends only on the
values up to its own, which never change once chosen, so a resumed run (the schedule is in the
loader's state) recomputes every plan exactly.

Under distributed training each choice is one exchange of every rank's measurement
(:class:`~revamper.distributed.EpochExchange`) and one decision that every rank computes from
all of them: every rank runs the same r.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from typing import Any, Final, Literal

from revamper.distributed import DistributedSetup, EpochExchange
from revamper.loader.reuse_control import ControlState, Decision, ReuseControl, decide
from revamper.loader.reuse_model import CostModel, EpochMeasurement, fit
from revamper.loader.stats import EpochStats
from revamper.plan.limits import MAX_REUSE_FACTOR, check_int

logger = logging.getLogger(__name__)

MAX_AUTO_EPOCH: Final = 1_000_000
"""The last epoch ``reuse_factor="auto"`` runs. Its schedule holds one r per epoch, so an epoch
far ahead (from ``set_epoch`` or a loaded state) would cost time and memory in proportion."""

Auto = Literal["auto"]
ReuseSpec = int | Auto | ReuseControl
"""What ``reuse_factor`` accepts: an int r, ``"auto"``, or auto with settings."""


def usable_cores(setup: DistributedSetup) -> float:
    """The CPU cores this rank's loader may use: the process's affinity over its machine's ranks."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    ranks = setup.local_world_size if setup.distributed else 1
    return max(1.0, cores / max(1, ranks))


class ReusePolicy:
    """The reuse factor of each epoch, and (with ``"auto"``) its choice at epoch boundaries.

    Args:
        reuse_factor: An int r (every epoch), ``"auto"``, or a :class:`ReuseControl`.
        max_reuse_factor: R, the largest r of the run. With an int r: ``None`` (R = r) or at
            least r (a larger R caches what any r up to R could read; the plans then differ from
            a plain fixed r's). With auto: ``None`` for the default
            (:data:`~revamper.loader.reuse_control.DEFAULT_MAX_REUSE_FACTOR`).
        setup: This rank's place in distributed training.
        num_workers: The loader's worker processes (the decision's capacity).

    Raises:
        TypeError: For a ``reuse_factor`` or ``max_reuse_factor`` of the wrong type.
        ValueError: For one out of range, a ``max_reuse_factor`` that contradicts the
            ``ReuseControl``'s, or auto for ranks that cannot communicate (an explicit
            ``rank``/``world_size`` without a matching process group): each would choose its own r.
    """

    def __init__(
        self,
        reuse_factor: ReuseSpec,
        max_reuse_factor: int | None,
        *,
        setup: DistributedSetup,
        num_workers: int,
    ) -> None:
        self.control = _control(reuse_factor, max_reuse_factor)
        if self.control is None:
            self.initial = _int("reuse_factor", reuse_factor, 1)
            self.bound = _bound(self.initial, max_reuse_factor)
            self.max_reuse_factor = None if max_reuse_factor is None else self.bound
        else:
            if setup.distributed and not setup.communicate:
                raise ValueError(
                    f"reuse_factor='auto' with world_size={setup.world_size} needs the ranks to "
                    "agree on r at every epoch boundary, through an initialised torch.distributed "
                    f"process group whose rank and world size are this loader's (rank "
                    f"{setup.rank} of {setup.world_size}); initialise it before the loader, or "
                    "pass a fixed reuse_factor"
                )
            self.initial = 1
            self.bound = self.max_reuse_factor = self.control.max_reuse_factor
        self.values: list[int] = []
        self._setup = setup
        self._num_workers = num_workers
        self._cores = usable_cores(setup)
        self._state = ControlState()
        self._model: CostModel | None = None  # a fixed r's, for its predictions
        self._predicted: dict[int, float] = {}
        self._exchange: EpochExchange | None = None
        self._cold = False  # the next epoch measured is the first after a resume

    @property
    def auto(self) -> bool:
        """Whether r is chosen at run time."""
        return self.control is not None

    def connect(self) -> None:
        """Make the ranks' exchange (a collective under distributed training, with auto only)."""
        if self.control is not None and self._setup.communicate and self._exchange is None:
            self._exchange = EpochExchange(self._setup)

    def check_epoch(self, epoch: int) -> None:
        """Refuse an epoch beyond :data:`MAX_AUTO_EPOCH` with auto (a fixed r has no bound).

        Raises:
            ValueError: If it is.
        """
        if self.control is not None and epoch > MAX_AUTO_EPOCH:
            raise ValueError(
                f"epoch {epoch} is beyond what reuse_factor='auto' runs ({MAX_AUTO_EPOCH}: its "
                "schedule keeps one r per epoch); use a fixed reuse_factor for such a run"
            )

    def at(self, epoch: int) -> int:
        """The r of ``epoch`` as far as the schedule goes (r_0 at epoch 0, the last value after)."""
        if epoch == 0 or not self.values:
            return self.initial
        return self.values[min(epoch, len(self.values)) - 1]

    @property
    def schedule(self) -> tuple[int, ...]:
        """r_1, ..., r_k: the reuse factors chosen so far (empty for a fixed r)."""
        return tuple(self.values)

    def predicted_rate(self, epoch: int) -> float | None:
        """The production rate predicted for ``epoch`` when it was chosen (``None``: none)."""
        return self._predicted.get(epoch)

    def prepare(
        self, epoch: int, last: EpochStats | None, started_ahead: Collection[int] = ()
    ) -> bool:
        """Before ``epoch`` is planned: fix its r (choosing it, with auto); whether it changed.

        ``last`` is the statistics of the epoch this loader ran last (``None``: none yet).
        ``started_ahead``: the r at which the epoch would start with its first batch built
        (see :func:`~revamper.loader.reuse_control.decide`).
        An epoch already in the schedule (re-run, or resumed) keeps its r; epochs skipped by
        ``set_epoch`` take the r of the last epoch chosen. Under distributed training with auto,
        a collective for every epoch it chooses (every rank must start the same epochs).

        Raises:
            EpochExchangeError: If the ranks could not exchange their measurements.
        """
        self.check_epoch(epoch)
        try:
            measured = self._measure(last, epoch)
        except Exception as exc:
            if self.control is not None and self._exchange is not None and epoch > len(self.values):
                # Tell the other ranks, so they raise at once instead of waiting out the timeout.
                self._exchange.gather(None, epoch, error=f"rank {self._setup.rank}: {exc!r}")
            raise
        if self.control is None:
            self._predict_fixed(measured, epoch)
            return False
        if epoch == 0 or epoch <= len(self.values):
            return False
        previous = self.at(epoch)
        while len(self.values) < epoch - 1:
            self.values.append(previous)
        everyone: Sequence[EpochMeasurement | None] = [measured]
        if self._exchange is not None:
            everyone = self._exchange.gather(measured, epoch)
        decision, self._state = decide(self.control, self._state, everyone, epoch, started_ahead)
        self.values.append(decision.reuse_factor)
        rate = decision.predicted_rates[self._setup.rank if len(everyone) > 1 else 0]
        if rate > 0:
            self._predicted[epoch] = rate
        if decision.changed:
            _log(decision)
        return decision.reuse_factor != previous

    def peek(
        self, epoch: int, last: EpochStats | None, started_ahead: Collection[int] = ()
    ) -> tuple[int, ...] | None:
        """The schedule :meth:`prepare` would make for ``epoch`` now, changing nothing.

        ``None`` where it cannot be known without the other ranks (auto under distributed
        training: their measurements come in a collective at the epoch boundary), where
        ``last`` (an epoch still running) has measured less than half its batches or too
        little to predict from, or the epoch is beyond what auto runs. A fixed r: the (empty)
        schedule.
        """
        if self.control is None or epoch == 0 or epoch <= len(self.values):
            return self.schedule
        if self._exchange is not None or epoch > MAX_AUTO_EPOCH:
            return None
        measured = self._measurement(last, epoch)
        if last is None or measured is None or not measured.usable:
            return None
        if 2 * last.batches < last.planned_batches:
            return None  # too little of the epoch to choose from: choose at its end
        decision, _ = decide(self.control, self._state, [measured], epoch, started_ahead)
        filler = [self.at(epoch)] * (epoch - 1 - len(self.values))
        return (*self.values, *filler, decision.reuse_factor)

    def _measurement(self, last: EpochStats | None, epoch: int) -> EpochMeasurement | None:
        """``last`` as a measurement, if it is the epoch just before ``epoch``."""
        if last is None or last.epoch != epoch - 1:
            return None
        return EpochMeasurement.from_stats(
            last, num_workers=self._num_workers, cores=self._cores, cold=self._cold
        )

    def _measure(self, last: EpochStats | None, epoch: int) -> EpochMeasurement | None:
        """:meth:`_measurement`, noting when the cache has been met since a resume."""
        measured = self._measurement(last, epoch)
        if measured is not None and measured.planned_hits:  # cold until an epoch met the cache
            self._cold = False
        return measured

    def _predict_fixed(self, measured: EpochMeasurement | None, epoch: int) -> None:
        if measured is None or not measured.usable:
            return
        share = ReuseControl().bottleneck_share
        self._model = fit(measured, self._model, share)
        self._predicted[epoch] = self._model.rate(self.at(epoch))

    def state(self) -> list[int]:
        """The schedule as saved in the loader's state (a list of ints)."""
        return list(self.values)

    def load(self, values: Sequence[int]) -> None:
        """Take a saved schedule (validated by the caller): the choices continue from its end."""
        self.values = [int(r) for r in values]
        current = self.values[-1] if self.values else None
        self._state = ControlState(current=current)
        self._predicted.clear()
        self._cold = True

    def describe(self) -> str:
        """``"3"``, or ``"auto (R=4)"``."""
        return str(self.initial) if self.control is None else f"'auto' (max {self.bound})"

    def identity(self) -> dict[str, Any]:
        """What a disk cache's entries depend on: r_0 and R (not the growing schedule)."""
        return {"reuse_factor": self.initial, "max_reuse_factor": self.bound}


def _control(reuse_factor: object, max_reuse_factor: object) -> ReuseControl | None:
    if isinstance(reuse_factor, ReuseControl):
        if max_reuse_factor is not None and max_reuse_factor != reuse_factor.max_reuse_factor:
            raise ValueError(
                f"max_reuse_factor={max_reuse_factor!r} contradicts the ReuseControl's "
                f"max_reuse_factor={reuse_factor.max_reuse_factor}; pass it in one place"
            )
        return reuse_factor
    if isinstance(reuse_factor, str):
        if reuse_factor != "auto":
            raise ValueError(f"reuse_factor must be an int >= 1 or 'auto', got {reuse_factor!r}")
        if max_reuse_factor is None:
            return ReuseControl()
        return ReuseControl(max_reuse_factor=_int("max_reuse_factor", max_reuse_factor, 1))
    _int("reuse_factor", reuse_factor, 1)
    return None


def _bound(reuse_factor: int, max_reuse_factor: object) -> int:
    if max_reuse_factor is None:
        return reuse_factor
    return _int("max_reuse_factor", max_reuse_factor, reuse_factor)


def _int(name: str, value: object, minimum: int) -> int:
    try:
        number = check_int(name, value)  # numpy integers too, never bools
    except TypeError:
        if name != "reuse_factor":
            raise
        raise TypeError(
            f"reuse_factor must be an int or 'auto', got {type(value).__name__} {value!r}"
        ) from None
    if not minimum <= number <= MAX_REUSE_FACTOR:
        raise ValueError(f"{name} must be from {minimum} to {MAX_REUSE_FACTOR}, got {number}")
    return number


def _log(decision: Decision) -> None:
    was = "" if decision.previous is None else f" (was {decision.previous})"
    logger.info(
        "reuse_factor='auto': epoch %d runs at r=%d%s: %s",
        decision.epoch,
        decision.reuse_factor,
        was,
        decision.reason,
    )
