"""``reuse_factor="auto"``: choose each epoch's r from what the epochs before it measured.

Every reuse of a partially augmented sample trades diversity for loader speed, and the speed is
worth having only while the consumer (the training step) waits for data. So at every epoch
boundary the loader predicts, from the last epoch's measurements (:mod:`revamper.loader.
reuse_model`), the wall time per sample of the next epoch at every r from 1 to
``max_reuse_factor``, and takes the **smallest r whose predicted epoch time is within
``tolerance`` of the best r's**, with the loader's production taken ``margin`` slower than
predicted. When the loader keeps up without reuse, that is r = 1; when no r keeps up, it is the
smallest r that is (nearly) as fast as the fastest.

Why a margin. A per-epoch measurement is noisy: on a machine shared with other jobs the CPU
cost of a sample moves by a few per cent from one epoch to the next (see docs/benchmarks.md),
and within an epoch batches differ in cost (image sizes; misses are balanced within one per
batch). A loader whose mean production only just matches the consumer still makes it wait
whenever a run of slow batches empties the prefetch queue. Taking production 10% slower than
predicted covers both, and costs at most one step of r too high near the edge (which a probe,
below, then corrects). The tolerance (4%) makes auto prefer diversity when a higher r would
save less than that, and the consumer counts as waiting from the same share of an epoch
(``bottleneck_share``): going up for a smaller wait would gain less than the tolerance. Why 4%:
trading up to 5% of the epoch time for diversity is what issue 15 asks of auto (the smallest r
within 5% of the fastest), less about 1% for what the prediction does not see (on two cores the
busier workers of a lower r slow the main process's own work by 1-2% of an epoch:
docs/benchmarks.md, 12d). At 3% auto ran r = 2 where r = 1 was 4.5-4.8% slower than the fastest.

Why hysteresis. The measurement of an epoch at r moves the prediction for r - 1 and r + 1, so
a choice at the edge could flap between them epoch after epoch. So r goes **up** only when the
consumer actually waited for the workers in the last epoch (a measured stall, never a
prediction alone: an epoch in which the loader kept up proves its r enough), and goes **down**
on a prediction only when the lower r is predicted to keep up with ``margin + hysteresis`` to
spare. The first choice, after epoch 0 (which computes everything whatever r is), has neither
condition: it is the prediction, except that it tries r = 1 first where r = 1 is predicted to
lose at most :data:`FIRST_PROBE_BAND` to the best and a wait can judge it (worker processes, a
consumer that takes time): epoch 0 ran cold, its prediction can put the first r too high, and
coming down from there took up to four epochs in the sweeps of docs/benchmarks.md (12g), where
the trial costs one epoch at most that much slower. Whatever the first choice, its r gets a
second epoch before r goes up unless the first lost more than :data:`SECOND_EPOCH_BAND` to
batches not built in time: every r is judged by the faster of two epochs, and one can be slowed
by another job.

What counts as waiting. Every epoch starts with the consumer waiting while one worker builds
the first batch alone; the part of that wait a larger r would save (as the model predicts it,
and at most what was measured) counts. The consumer's time inside ``next()`` is partly the
hand-off of a batch that was already built (it crosses from its worker to the main process),
which it pays at any r. So a wait counts as a wait for the loader when the batch had not left
its worker yet (:attr:`~revamper.loader.stats.EpochStats.starved_seconds`: each batch is
stamped as it is sent),
and the wait for built batches counts only when the workers were busy nearly all the epoch (a
busy worker is slow to hand a batch over: see :meth:`~revamper.loader.reuse_model.
EpochMeasurement.loader_bound`), and then only beyond the hand-off per sample that the last
epoch which kept up measured (part of every hand-off is paid at any r). Otherwise the hand-off
is part of the consumer's own time per batch.

Why probes. The margin and the hysteresis err on the side of speed: a prediction made while
the loader was the bottleneck (epoch 0, or a busy moment) can keep r one step above what keeps
up, and no measurement at r can show that r - 1 would have been enough. So when the consumer
did not wait for the workers in the last epoch (less than ``bottleneck_share``) and r - 1 is
predicted, without any margin, to lose at most ``tolerance + hysteresis`` to the best, the next
epoch tries r - 1 (the first probe of a run up to 50%: the prediction it corrects comes from a
cold first epoch, see :data:`FIRST_PROBE_BAND`). If the consumer then
waits, r goes back to the r above (one epoch lost at most that share: an epoch at r = 1
neither reads nor writes the cache, so the r above goes on from the entries cached before it);
a probe that keeps up
stays, and may be followed by the next one down. Whenever r goes up (after a probe, or later
because the machine got busier), it stays for twice as many epochs as the last time before any
move down, probe or prediction (2, 4, 8, ... up to 64): an r at the edge, or noise around the
hysteresis, costs a handful of changes over a run, not one per epoch.

Why measured epochs beat predictions. Near r = 1's edge part of the consumer's wait is paid at
every r (a batch's way from its worker, the main process's work on cores the workers share),
which the cost model cannot see: it promises a gain from going up that no epoch delivers. So the
last two epochs measured at each r are kept (:mod:`revamper.loader.reuse_evidence`), each r is
judged by the faster of them (another job on the machine slows an epoch, never speeds it up),
and, at the same demand and for 16 epochs: a lower r measured (within half the tolerance) as
fast is taken at once; a higher r measured to gain less than the tolerance is not tried again,
nor an r between it and the current one, and the wait counts as not the loader's (a lower r is
then probed, unless measured slower); and a lower r whose two recent epochs both lost more than
the tolerance is not probed again (one epoch may have been slowed by another job). And a higher
r is judged against the current r's measured epoch time, not its prediction with margin, where
the faster of its recent epochs lost less than the margin to batches not built in time: the
margin guesses a shortfall of up to 10% for an r that was not measured, and this one's was
measured. (In the sweeps of docs/benchmarks.md, 12g, the first choice's trial of r = 1 waited
5-6% for hand-offs, none of it for batches not built yet, and the margin made that look like
a shortfall of 10%; in 12i r = 1 lost 6-10% to batches not built in time and looked 17% slower
than the consumer's pace. Auto went up for an epoch that was no faster.) Where the current r
lost more (the loader is short at it), the margin stays on both sides: every r's production
is then taken alike.

Under distributed training every rank measures its own loader, the ranks exchange their
measurements (:mod:`revamper.distributed.reuse_exchange`) and each computes the same decision
from all of them with :func:`decide`: the largest r any rank needs (every rank waits for the
slowest), lowered only when every rank can afford it.

Everything here is pure: numbers in, a :class:`Decision` and the next :class:`ControlState`
out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Sequence

from revamper.loader.reuse_evidence import KEPT_PER_R, Evidence, Observed, observe, remember
from revamper.loader.reuse_model import CostModel, EpochMeasurement, fit, loader_bound
from revamper.plan.limits import MAX_REUSE_FACTOR

DEFAULT_MAX_REUSE_FACTOR = 4
"""The default bound on an automatic r: the top of the paper's range (2 to 4)."""

FIRST_PROBE_BAND = 1.5
"""The first probe of a run tries r - 1 if it is predicted to lose at most this much (50%).

Until then the cost model's unseen overhead comes from the first epoch measured, which runs
cold: epoch 0 computes and writes every sample into fresh memory, and after a resume the first
epoch starts the workers and fills the cache again. In the sweeps of docs/benchmarks.md (12e)
its predictions were within 10% of what each r delivered in 53 of 64 runs, but as low as 0.57
of it, and an epoch that keeps up cannot correct that (the consumer sets its pace): in one run
auto stayed at r = 2 for six epochs where r = 1 kept up. One probe costs at most one slower
epoch per run.
"""

SECOND_EPOCH_BAND = 0.25
"""The first r chosen gets a second epoch before r goes up if its first lost at most this much.

Each r's speed is the faster of its two recent epochs (:data:`~revamper.loader.
reuse_evidence.KEPT_PER_R`): on a shared machine one epoch can be slowed by another job. The
first epoch chosen is the only one its r has no second epoch for yet, and going up after it
also starts the probes' back-off. In the three sweeps of docs/benchmarks.md (12h) the first
choice's trial of r = 1 waited 4-18% of epoch 1 for batches not built yet at step times where
r = 1 kept up in the epochs after, and auto ran `11311111` or `11411111`; within one run of a
fixed r = 1 the slowest of epochs 2-7 took up to 1.27x the fastest's in the same sweeps (21% of
it lost), with nothing else of ours running. Where r = 1 is really short by up to 25% of an
epoch, the second epoch costs that once per run; beyond it (at step 0 the trial waits over
90%) r goes up at once.
"""

MAX_PROBE_INTERVAL = 64
"""The most epochs r stays after a move up before it may go down (the wait doubles up to it)."""


@dataclasses.dataclass(frozen=True)
class ReuseControl:
    """How ``reuse_factor="auto"`` chooses r (see the module's description).

    Attributes:
        max_reuse_factor: The largest r it may choose (R), 1 to 65535.
        margin: The loader's production is taken this much slower than predicted.
        tolerance: Among the r whose predicted epoch time is within this share of the best,
            the smallest is chosen.
        hysteresis: The extra margin a lower r needs before r goes down.
        bottleneck_share: The consumer counts as having waited for data when it waited for
            the workers this share of an epoch (after its first batch), or more.
        probe: Whether to try r - 1 when the consumer did not wait (see the module).
    """

    max_reuse_factor: int = DEFAULT_MAX_REUSE_FACTOR
    margin: float = 0.10
    tolerance: float = 0.04
    hysteresis: float = 0.10
    bottleneck_share: float = 0.04
    probe: bool = True

    def __post_init__(self) -> None:
        r = self.max_reuse_factor
        if isinstance(r, bool) or not isinstance(r, int):
            raise TypeError(f"max_reuse_factor must be an int, got {type(r).__name__} {r!r}")
        if not 1 <= r <= MAX_REUSE_FACTOR:
            raise ValueError(f"max_reuse_factor must be from 1 to {MAX_REUSE_FACTOR}, got {r}")
        for name in ("margin", "tolerance", "hysteresis", "bottleneck_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
            if not (math.isfinite(value) and 0 <= value <= 10):
                raise ValueError(f"{name} must be from 0 to 10, got {value!r}")
        if not isinstance(self.probe, bool):
            raise TypeError(f"probe must be a bool, got {type(self.probe).__name__}")


@dataclasses.dataclass(frozen=True)
class ControlState:
    """What the choice carries from one epoch boundary to the next.

    Attributes:
        current: The r of the last epoch chosen (``None`` before the first choice).
        models: Each rank's cost model (``None`` for a rank not measured yet), in rank order.
        probed: The r the last probe went down to (``None``: no probe yet).
        probed_from: The r that probe went down from (``None`` for the first choice's trial of
            r = 1, which no measured r kept up above).
        probe_interval: Epochs r stays, after it next goes up, before it may go down.
        next_probe: The first epoch r may go down in (a probe or a prediction).
        observed: The last epochs measured at each r, by r (:func:`revamper.loader.
            reuse_evidence.remember`).
        first_epoch: The epoch the first choice was made for (``None`` before it, and after a
            resume): its r is judged over two epochs (:data:`SECOND_EPOCH_BAND`).
    """

    current: int | None = None
    models: tuple[CostModel | None, ...] = ()
    probed: int | None = None
    probed_from: int | None = None
    probe_interval: int = 2
    next_probe: int = 0
    observed: tuple[Observed, ...] = ()
    first_epoch: int | None = None


@dataclasses.dataclass(frozen=True)
class Decision:
    """The r chosen for an epoch, and why.

    Attributes:
        epoch: The epoch it is for.
        reuse_factor: The r chosen.
        previous: The r of the epoch before (``None`` at the first choice).
        reason: One line saying why, for the log.
        predicted_rates: Each rank's predicted production rate at the chosen r (samples/s;
            0 where a rank measured nothing usable).
        demand_rates: Each rank's consumer demand (samples/s; ``inf`` for a consumer that
            takes no time).
    """

    epoch: int
    reuse_factor: int
    previous: int | None
    reason: str
    predicted_rates: tuple[float, ...]
    demand_rates: tuple[float, ...]

    @property
    def changed(self) -> bool:
        """Whether r differs from the previous epoch's (or this is the first choice)."""
        return self.previous != self.reuse_factor


def smallest_sufficient(
    model: CostModel, step: float, bound: int, margin: float, tol: float
) -> int:
    """The smallest r in ``[1, bound]`` whose predicted epoch time is within ``tol`` of the best.

    Args:
        model: The rank's cost model.
        step: The consumer's seconds per sample.
        bound: R, the largest r allowed.
        margin: How much slower than predicted the loader's production is taken.
        tol: The share of the best epoch time an r may lose and still be chosen.
    """
    times = [model.epoch_seconds(r, step, margin) for r in range(1, bound + 1)]
    return _smallest_within(times, tol)


def _smallest_within(times: Sequence[float], tol: float) -> int:
    """The smallest r whose epoch time in ``times`` (r = 1 first) is within ``tol`` of the best."""
    best = min(times)
    return next(r for r, t in enumerate(times, 1) if t <= best * (1.0 + tol))


def decide(
    control: ReuseControl,
    state: ControlState,
    measurements: Sequence[EpochMeasurement | None],
    epoch: int,
    started_ahead: Collection[int] = (),
) -> tuple[Decision, ControlState]:
    """Choose the r of ``epoch`` from every rank's measurement of the epoch before.

    Args:
        control: The settings.
        state: What the previous boundary left (:class:`ControlState`).
        measurements: Each rank's measurement of its last epoch, in rank order (``None``: the
            rank ran no epoch since the last choice).
        epoch: The epoch to choose r for.
        started_ahead: The r at which ``epoch`` would start with its first batch built (the
            loader chooses before the epoch before ends, and starts it ahead: see
            :mod:`revamper.loader.epoch_overlap`); at those its first batch costs no wait.
            The prediction takes only r = 1 from it (:func:`steadily_ahead`); measured
            epochs are compared as the next epoch would start.

    Returns:
        The decision and the state for the next boundary.
    """
    models = list(state.models) + [None] * (len(measurements) - len(state.models))
    fitted: list[tuple[int, EpochMeasurement, CostModel, bool]] = []
    steady = steadily_ahead(started_ahead)
    for rank, measured in enumerate(measurements):
        if measured is not None and measured.usable:
            previous = models[rank]
            model = fit(measured, previous, control.bottleneck_share)
            models[rank] = model
            paced = loader_bound(measured, previous, control.bottleneck_share)
            judged = dataclasses.replace(model, started_ahead=steady) if steady else model
            fitted.append((rank, measured, judged, paced))
    current = state.current
    multi = len(measurements) > 1
    now = observe(measurements) if len(fitted) == len(measurements) else None
    observed = remember(state.observed, now)
    evidence = None
    if current is not None and now is not None and now.reuse_factor == current:
        # Measured epochs are compared as the next one would start (at the r started ahead
        # without a first batch to wait for), not as the chosen r's later epochs would: the
        # first batch of those is a prediction, and evidence should outvote a move only by
        # what was measured. (Judged with the later epochs' first batch, a first epoch at
        # r = 3 slowed after the trial of r = 1 kept auto at r = 1 for the whole window where
        # r = 1 was 18-26% slower: docs/benchmarks.md, 12i (d).)
        ahead = frozenset(started_ahead)
        first_batch = _first_batch(
            [dataclasses.replace(model, started_ahead=ahead) for _, _, model, _ in fitted]
        )
        evidence = Evidence(now, observed, epoch, control.tolerance, first_batch, control.margin)
    # Where the current r's faster recent epoch lost less than the margin to batches not built
    # in time, what it measured is the r's epoch time.
    pace = None  # (that epoch's speed as a share of this one's)
    if evidence is not None and evidence.now.delivered > 0:
        fastest = evidence.current
        if fastest.starved < control.margin:  # (a share of the epoch, as the margin is)
            pace = min(1.0, fastest.delivered / evidence.now.delivered)
    ranks = [
        _Rank(rank, measured, model, control, paced, pace)
        for rank, measured, model, paced in fitted
    ]
    after = state
    if not ranks:
        chosen = current if current is not None else 1
        reason = "no epoch measured enough (two batches) to predict from: r stays"
    elif current is None:
        need = max(ranks, key=lambda rank: rank.up)
        chosen = need.up
        reason = need.why(f"first choice, from epoch {need.measured.epoch}", chosen, multi)
        after = dataclasses.replace(state, first_epoch=epoch)
        if control.probe and chosen > 1 and all(r.may_try_first(1) for r in ranks):
            # Epoch 0 ran cold: r = 1 is measured warm first, unless it is predicted far off.
            chosen = 1
            trial = f"first choice, from epoch {need.measured.epoch} (which ran cold): trying r=1"
            reason = need.why(trial, need.up, multi)
            after = dataclasses.replace(after, probed=1, probed_from=None)
    else:
        chosen, reason, after = _move(control, state, ranks, multi, epoch, evidence)
    chosen = min(control.max_reuse_factor, max(1, chosen))
    demands = [math.inf] * len(measurements)
    for entry in ranks:
        step = entry.measured.step_per_sample
        demands[entry.rank] = 1.0 / step if step > 0 else math.inf
    rates = tuple(model.rate(chosen) if model is not None else 0.0 for model in models)
    decision = Decision(epoch, chosen, current, reason, rates, tuple(demands))
    after = dataclasses.replace(after, current=chosen, models=tuple(models), observed=observed)
    return decision, after


def steadily_ahead(started_ahead: Collection[int]) -> frozenset[int]:
    """Of the r at which the next epoch would start ahead, those its later epochs would too.

    An epoch at r = 1 touches no cache entry, so after one the next epoch starts ahead at any
    r; but the epochs after that at an r >= 2 share entries with the one before them and start
    at ``iter()`` (:mod:`revamper.loader.epoch_overlap`; the loader assumes so, see
    ``RevamperLoader._ahead_at``). An r is chosen to stay for a while, so an r >= 2 is judged as
    its later epochs run: with a first batch to wait for. Judged by the next epoch alone, going
    up from r = 1 looked free of it: in the sweeps of docs/benchmarks.md (12h) every epoch at a
    fixed r >= 2 waited 0.09-0.21 s for its first batch at 80 ms per batch (6-14% of the epoch),
    every fixed r >= 2 ran 5-9% slower than r = 1, and auto went up from r = 1 for an epoch
    whenever r = 1 waited a few per cent for batches not built in time.
    """
    return frozenset(r for r in started_ahead if r == 1)


def _first_batch(models: Sequence[CostModel]) -> Callable[[int], float]:
    """The predicted cost of the next epoch's first batch at an r, on the slowest rank."""
    return lambda r: max(model.first_batch_seconds(r) for model in models)


def _move(
    control: ReuseControl,
    state: ControlState,
    ranks: Sequence[_Rank],
    multi: bool,
    epoch: int,
    evidence: Evidence | None,
) -> tuple[int, str, ControlState]:
    """From ``state.current``: up, down, a probe one below (see the module), or stay.

    Down if a lower r was measured to be as fast; up if a rank's consumer waited and needs
    more, unless a higher r was measured to be no faster; down if every rank can afford it;
    else a probe one below if no consumer waited.

    Going down needs no measurement beyond the prediction: the hysteresis band keeps it from
    flapping, and a lower r that a consumer which waited is predicted to afford is one that is
    (within the tolerance) as fast.
    """
    current = state.current
    assert current is not None

    # Measured beats predicted: a lower r as fast as this one is taken whatever this epoch
    # waited for (it was no faster for it), and a higher r that was no faster is not tried.
    if evidence is not None and (as_fast := evidence.as_fast_below()):
        why = f"a lower r was as fast ({evidence.describe(as_fast)})"
        return as_fast.reuse_factor, why, state

    waited = [rank for rank in ranks if rank.waited and rank.gains_beyond(current)]
    need = max(waited, key=lambda rank: rank.up, default=None)
    if need is not None and need.up > current:
        if evidence is not None and _second_epoch(state, evidence):
            what = (
                f"the consumer waited in the first epoch chosen, {evidence.now.starved:.0%} of it "
                f"for batches not built yet: a second epoch at r={current} judges it (one epoch "
                "may have been slowed)"
            )
            return current, need.why(what, current, multi), state
        target = need.up
        if state.probed == current and state.probed_from is not None:
            target = state.probed_from
        bound = control.max_reuse_factor
        if evidence is not None and (refuted := evidence.refutes(current + 1, target, bound)):
            why = (
                f"the consumer waited, but a higher r was no faster ({evidence.describe(refuted)})"
            )
            # Then the wait is not the loader's, and a lower r may be as fast: try it, unless it
            # was measured slower or is predicted to lose more than a first probe may.
            lower = current - 1
            if (
                control.probe
                and lower >= 1
                and evidence.slower(lower) is None
                and all(rank.time_share(lower) <= FIRST_PROBE_BAND for rank in ranks)
            ):
                probing = dataclasses.replace(state, probed=lower, probed_from=current)
                return lower, f"{why}: probing a lower r", probing
            return current, f"{why}: r stays", state
        # Going up: the next probe waits (twice as long as the last wait), and a probe that
        # made the consumer wait goes back to the r above it, which kept up when it was last
        # measured (if it no longer does, the next epoch shows it).
        interval = min(MAX_PROBE_INTERVAL, state.probe_interval * 2)
        after = dataclasses.replace(
            state, probe_interval=interval, next_probe=epoch + state.probe_interval
        )
        if state.probed == current and state.probed_from is not None:
            back = state.probed_from
            why = need.why("the consumer waited: back from the probe", back, multi)
            return back, why, after
        return need.up, need.why("the consumer waited", need.up, multi), after
    if epoch < state.next_probe:  # r went up lately: it stays a while before any move down
        return current, "r went up lately: it stays", state
    lowest = max(ranks, key=lambda rank: rank.down)
    if lowest.down < current:
        why = lowest.why("a lower r keeps up with room to spare", lowest.down, multi)
        return lowest.down, why, state
    first = state.probed is None
    tried = evidence.slower(current - 1) if evidence is not None else None
    if tried is not None and evidence is not None:
        return current, f"r stays: a lower r was slower ({evidence.describe(tried)})", state
    if control.probe and current > 1 and all(rank.may_probe(current - 1, first) for rank in ranks):
        slowest = max(ranks, key=lambda rank: rank.time_share(current - 1))
        why = slowest.why("the consumer did not wait: probing a lower r", current - 1, multi)
        return current - 1, why, dataclasses.replace(state, probed=current - 1, probed_from=current)
    if any(rank.up > current for rank in ranks):
        return current, "the loader kept up (the consumer did not wait): r stays", state
    if need is not None:
        what = f"the consumer waited, but no higher r is predicted faster than r={current} ran"
        return current, need.why(f"{what}: r stays", current, multi), state
    return current, "r stays", state


def _second_epoch(state: ControlState, evidence: Evidence) -> bool:
    """Whether the first epoch chosen was just measured, alone at its r, losing at most the band.

    The loss is the share of that epoch the consumer waited for batches not built yet (on the
    rank that waited most): what a higher r could have saved in it.
    """
    now = evidence.now
    return (
        state.first_epoch is not None
        and now.epoch == state.first_epoch
        and len(evidence.seen(now.reuse_factor)) < KEPT_PER_R
        and now.starved <= SECOND_EPOCH_BAND
    )


class _Rank:
    """One rank's measurement, fitted model and the r it needs (``up``) and affords (``down``).

    ``pace``: where the faster recent epoch at the current r lost less than the margin to
    batches not built in time (on every rank: :attr:`~revamper.loader.reuse_evidence.Observed.
    starved`), that epoch's time as a share of this one's (1: this one was the faster); ``None``
    where the loader was shorter than that, or the epoch is no evidence of its r (epoch 0, the
    first after a resume).
    """

    def __init__(
        self,
        rank: int,
        measured: EpochMeasurement,
        model: CostModel,
        control: ReuseControl,
        loader_set_pace: bool,
        pace: float | None = None,
    ) -> None:
        self.rank = rank
        self.measured = measured
        self.model = model
        bound, tol = control.max_reuse_factor, control.tolerance
        # Where the consumer always waits (serial loading, or a step that takes no time), a
        # measured wait says nothing and the margin opens no band: the band is on the times.
        self._banded = measured.serial or measured.step_per_sample <= 0
        step = measured.step_per_sample if self._banded else measured.consumer_per_sample
        self._times = [model.epoch_seconds(r, step, control.margin) for r in range(1, bound + 1)]
        current, share = measured.reuse_factor, control.bottleneck_share
        if pace is not None and not self._banded and current <= bound:
            # The current r's faster recent epoch lost less than the margin to batches not
            # built in time: the margin guesses what an r that was not measured may lose, and
            # this one's loss was measured (and what the consumer waited for beyond it was the
            # hand-off, which a higher r pays too).
            self._times[current - 1] = self._measured_seconds(pace)
            # Against a measured time, a higher r is judged by its prediction without the
            # margin: what going up can save is the measured loss, and the margin on a higher
            # r (which produces faster) only hid it. (Found by the property test of
            # tests/test_reuse_control.py over machines: at max_reuse_factor=3 auto stayed at
            # r = 2, 8% slower than r = 3, because r = 3's production only just exceeded the
            # consumer's pace and the margin made it look short.) A higher r's later epochs
            # still pay their first batch (steadily_ahead), which keeps r = 1 where it is only
            # a few per cent short and every higher r waits for its first batch.
            for r in range(current + 1, bound + 1):
                self._times[r - 1] = model.epoch_seconds(r, step, 0.0)
        self._bare = [model.epoch_seconds(r, step, 0.0) for r in range(1, bound + 1)]
        self._up_threshold = min(self._times) * (1.0 + tol + control.hysteresis)
        self._probe_band = 1.0 + tol + control.hysteresis
        self.up = _smallest_within(self._times, tol)
        self.down = smallest_sufficient(
            model, step, bound, control.margin + control.hysteresis, tol
        )
        self._first_wait = self._first_batch_wait(bound)
        self.waited = loader_set_pace or self._first_wait >= share

    def _measured_seconds(self, pace: float) -> float:
        """Wall seconds per sample of an epoch at the measured r, as its epochs ran.

        After the first batch at ``pace`` times this epoch's speed (the faster recent epoch at
        this r: :attr:`~revamper.loader.reuse_evidence.Evidence.current`), and the first batch
        as the model predicts it for the epoch being chosen (built ahead or not).
        """
        m = self.measured
        later = m.delivered_seconds * pace * (m.samples - m.first_batch_samples)
        return (later + self.model.first_batch_seconds(m.reuse_factor)) / m.samples

    def _first_batch_wait(self, bound: int) -> float:
        """The share of the epoch the consumer waited for its first batch beyond the fastest r's.

        At most what the model explains (the first batch at the epoch's r): a wait that also
        covers starting the workers (``persistent_workers=False``) is no wait reuse shortens.
        """
        m, model = self.measured, self.model
        if m.serial or m.wall_seconds <= 0 or m.reuse_factor in model.started_ahead:
            return 0.0  # (at an r started ahead the next epoch does not wait for its first)
        fastest = min(
            model.first_batch_seconds(r)
            for r in range(1, bound + 1)
            if r not in model.started_ahead
        )
        explained = min(m.first_wait_seconds, model.first_batch_seconds(m.reuse_factor))
        return max(0.0, explained - fastest) / m.wall_seconds

    def gains_beyond(self, current: int) -> bool:
        """Whether going up from ``current`` is worth it (always, where a wait is informative).

        Where the consumer always waits (``num_workers=0``, or a step that takes no time), the
        measured wait cannot tell "this r is not enough", and the margin scales every r's
        prediction alike, so it opens no band: there, going up needs the current r to lose
        more than ``tolerance + hysteresis`` to the best, or noise of a few per cent around the
        tolerance would move r up and down epoch after epoch.
        """
        if not self._banded:
            return True
        index = min(max(current, 1), len(self._times)) - 1
        return self._times[index] > self._up_threshold

    def time_share(self, reuse_factor: int) -> float:
        """The predicted epoch time at ``reuse_factor``, without margin, over the best r's."""
        index = min(max(reuse_factor, 1), len(self._bare)) - 1
        best = min(self._bare)
        return self._bare[index] / best if best > 0 else math.inf

    def may_try_first(self, reuse_factor: int) -> bool:
        """Whether the first choice may try ``reuse_factor`` before the prediction's r.

        Where a wait is informative (it judges the trial), and ``reuse_factor`` is predicted to
        lose at most :data:`FIRST_PROBE_BAND` to the best.
        """
        return not self._banded and self.time_share(reuse_factor) <= FIRST_PROBE_BAND

    def may_probe(self, reuse_factor: int, first: bool) -> bool:
        """Whether this rank allows a probe of ``reuse_factor``.

        It does when its consumer did not wait (and a wait would be informative) and that r
        is predicted to lose at most ``tolerance + hysteresis`` to the best; for the ``first``
        probe of a run, at most :data:`FIRST_PROBE_BAND`.
        """
        if self._banded or self.waited:
            return False
        band = max(self._probe_band, FIRST_PROBE_BAND) if first else self._probe_band
        return self.time_share(reuse_factor) <= band

    def why(self, what: str, chosen: int, multi: bool) -> str:
        """``what``, with the figures of this rank's measurement that made the choice."""
        m = self.measured
        where = f" (rank {self.rank})" if multi else ""
        step = m.step_per_sample
        asks = f"asks {1 / step:.0f} samples/s" if step > 0 else "takes no time per batch"
        first = ""
        if self._first_wait:
            first = f"; {self._first_wait:.0%} on its first batch, beyond the fastest r"
        return (
            f"{what}{where}: at r={m.reuse_factor} the consumer waited {m.wait_share:.0%} of "
            f"epoch {m.epoch} ({m.starved_share:.0%} for batches not sent yet{first}) and "
            f"{asks}; predicted production at r={chosen}: {self.model.rate(chosen):.0f} samples/s"
        )
