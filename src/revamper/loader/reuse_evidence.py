"""What each r was measured to deliver, for ``reuse_factor="auto"`` to trust over a prediction.

The cost model (:mod:`revamper.loader.reuse_model`) predicts what a higher r would save from
the loader's own timers. Near the edge, where the loader at r = 1 only just keeps up, part of
what the consumer waits for is not production at all: a batch's way from its worker to the
step, the main process's own work on cores the workers share. Every r pays that, so the
prediction promises a gain from going up that no epoch delivers; in docs/benchmarks.md (12f)
auto moved between r = 1 and r = 2 at such a step time, where a fixed r = 1 was as fast as any
r. Once an epoch at the other r has run, the loader has measured what the prediction guesses.

So the control keeps, per r, the last :data:`KEPT_PER_R` epochs it ran at that r
(:class:`Observed`), and compares measured epoch times, each r's by the faster of its recent
epochs at the same demand: on a machine shared with other jobs what else runs makes an epoch
slower, never faster (one epoch at r = 1 in the sweeps of docs/benchmarks.md, 12g, took 1.27 s
where that r's other epochs took 1.02-1.04 s), and one slow epoch taken as its r's speed kept
auto off the fastest r for the whole window. The control does not go up to an r that was
measured to be no faster than the current r by at least the tolerance, and it goes down to a
lower r that was measured to be (nearly, within half the tolerance) as fast, without waiting out
the probes' back-off; nor does it probe a lower r whose recent epochs (two: one may have been
slowed) were measured to lose more than the tolerance. The band between half the tolerance and
the tolerance keeps two r whose times differ by about the tolerance from alternating. Evidence
counts only against the same demand (the consumer's step per sample within the tolerance: the
consumer sets the pace of an epoch that keeps up) and only for :data:`EVIDENCE_EPOCHS` epochs,
after which a move it would block is tried again, so that a machine whose load changed is
measured again.

Epoch times are compared without their first batch, whose wait depends on how the epoch
started (built ahead, or at ``iter()``), not on r alone; the first batch of the epoch being
chosen is then added as the cost model predicts it at each r.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from revamper.loader.reuse_model import EpochMeasurement

KEPT_PER_R = 2
"""How many recent epochs at each r are kept; the faster one is the r's measured speed.

Two: one epoch slowed by another job is outvoted by the next epoch at that r, while an r whose
epochs were all slowed (the machine got busier) is measured slower after two epochs.
"""

EVIDENCE_EPOCHS = 16
"""How many epochs a measurement at an r stays evidence for or against moving to it.

A move the evidence blocks is tried again after that, at a cost of at most one epoch at
another r per 16 epochs (its measurement renews the evidence).
"""


@dataclasses.dataclass(frozen=True)
class Observed:
    """One epoch at one r as the consumer saw it (over every rank: the slowest sets the pace).

    Attributes:
        reuse_factor: The r it ran at.
        epoch: The epoch.
        delivered: Wall seconds per sample after the first batch (the slowest rank's).
        step: The consumer's seconds per sample outside the loader (the largest rank's).
        samples: Samples measured after the first batch (the largest rank's; fewer than the
            epoch's where r was chosen before the epoch ended).
        starved: The share of the epoch after its first batch the consumer waited for batches
            not built yet (the largest rank's): below the bottleneck share, the loader kept up;
            below the margin, it was measured to lose that little.
    """

    reuse_factor: int
    epoch: int
    delivered: float
    step: float
    samples: int
    starved: float = 0.0

    def seconds(self, samples: int, first_batch: float) -> float:
        """Wall seconds of ``samples`` after a first batch that costs ``first_batch``."""
        return self.delivered * samples + first_batch


def observe(measurements: Sequence[EpochMeasurement | None]) -> Observed | None:
    """The epoch every rank just measured, or ``None`` where it is no evidence of its r.

    ``None`` for epoch 0 (it computes every sample, whatever its r), the first epoch after a
    resume (it meets an empty cache), a rank that measured nothing usable, or ranks that
    disagree on the epoch or its r.
    """
    if not measurements or any(m is None or not m.usable or m.cold for m in measurements):
        return None
    ranks = [m for m in measurements if m is not None]
    first = ranks[0]
    if first.epoch == 0 or any(
        (m.epoch, m.reuse_factor) != (first.epoch, first.reuse_factor) for m in ranks
    ):
        return None
    return Observed(
        reuse_factor=first.reuse_factor,
        epoch=first.epoch,
        delivered=max(m.delivered_seconds for m in ranks),
        step=max(m.step_per_sample for m in ranks),
        samples=max(m.samples - m.first_batch_samples for m in ranks),
        starved=max(m.starved_share for m in ranks),
    )


def remember(known: tuple[Observed, ...], now: Observed | None) -> tuple[Observed, ...]:
    """``known`` with ``now`` added, keeping the last :data:`KEPT_PER_R` epochs at each r.

    Sorted by r, then epoch. Epochs older than :data:`EVIDENCE_EPOCHS` before ``now`` go.
    """
    if now is None:
        return known
    recent = [
        seen
        for seen in known
        if seen.epoch != now.epoch and now.epoch - seen.epoch <= EVIDENCE_EPOCHS
    ]
    same = sorted((s for s in recent if s.reuse_factor == now.reuse_factor), key=_epoch)
    others = [s for s in recent if s.reuse_factor != now.reuse_factor]
    kept = [*others, *same[max(0, len(same) - (KEPT_PER_R - 1)) :], now]
    return tuple(sorted(kept, key=lambda seen: (seen.reuse_factor, seen.epoch)))


def _epoch(seen: Observed) -> int:
    return seen.epoch


@dataclasses.dataclass(frozen=True)
class Evidence:
    """The measured epochs a move from the current r can be judged by.

    Attributes:
        now: The epoch just measured, at the current r.
        known: The recent epochs measured at each r (:func:`remember`; ``now`` among them).
        epoch: The epoch being chosen for.
        tolerance: :attr:`~revamper.loader.reuse_control.ReuseControl.tolerance`.
        first_batch: The predicted cost of the chosen epoch's first batch at an r (the largest
            over the ranks): 0 at an r whose epoch would start with it built.
        margin: :attr:`~revamper.loader.reuse_control.ReuseControl.margin`: an epoch that lost
            less than this share to batches not built in time was measured to lose that little.
    """

    now: Observed
    known: tuple[Observed, ...]
    epoch: int
    tolerance: float
    first_batch: Callable[[int], float]
    margin: float = 0.10

    def _comparable(self, seen: Observed) -> bool:
        """Whether ``seen`` is recent and was measured against the same demand as ``now``."""
        if seen.epoch == self.now.epoch:
            return True
        if self.epoch - seen.epoch > EVIDENCE_EPOCHS:
            return False
        steps = (seen.step, self.now.step)
        return abs(steps[0] - steps[1]) <= self.tolerance * max(steps)

    def at(self, reuse_factor: int) -> Observed | None:
        """The fastest recent epoch at ``reuse_factor`` at the same demand (``None``: none).

        For the current r, ``now`` or an earlier epoch at it.
        """
        return min(self.seen(reuse_factor), key=lambda s: s.delivered, default=None)

    def seen(self, reuse_factor: int) -> list[Observed]:
        """The recent epochs at ``reuse_factor`` at the same demand (and ``now``, at its r)."""
        seen = [s for s in self.known if s.reuse_factor == reuse_factor and self._comparable(s)]
        if reuse_factor == self.now.reuse_factor and self.now not in seen:
            seen.append(self.now)
        return seen

    @property
    def current(self) -> Observed:
        """The current r's measured speed: the faster of ``now`` and its recent epochs."""
        best = self.at(self.now.reuse_factor)
        assert best is not None
        return best

    def _ratio(self, seen: Observed) -> float:
        """``seen``'s epoch time over the current r's, each with the first batch it would cost.

        Both over the same number of samples: the larger of the two measured (an epoch chosen
        ahead is measured before its end).
        """
        current = self.current
        samples = max(seen.samples, current.samples)
        now = current.seconds(samples, self.first_batch(current.reuse_factor))
        other = seen.seconds(samples, self.first_batch(seen.reuse_factor))
        return other / now if now > 0 else 1.0

    def _measured(self, low: int, high: int) -> list[Observed]:
        """The fastest recent epoch at each r from ``low`` to ``high`` that has one, by r."""
        found = (self.at(r) for r in sorted({s.reuse_factor for s in self.known}))
        return [s for s in found if s is not None and low <= s.reuse_factor <= high]

    def no_faster(self, low: int, high: int) -> Observed | None:
        """The highest r in ``[low, high]`` measured to gain less than the tolerance, if any.

        ``None`` where the highest r of that range measured (recently, at the same demand)
        gained the tolerance or more, or none was measured: the prediction decides.
        """
        seen = self._measured(low, high)
        return self._gains_too_little(seen[-1]) if seen else None

    def _gains_too_little(self, seen: Observed) -> Observed | None:
        """``seen`` if its epoch time is not at least the tolerance below the current r's."""
        return seen if self._ratio(seen) > 1.0 - self.tolerance else None

    def refutes(self, low: int, high: int, bound: int) -> Observed | None:
        """A measured epoch showing that going up to an r in ``[low, high]`` gains too little.

        The highest r in that range that was measured decides (:meth:`no_faster`). Where none
        was, the lowest measured r above it, up to ``bound``, does: a larger r produces
        faster, so if even it gained less than the tolerance, the wait is not the loader's. (In
        the sweeps of docs/benchmarks.md, 12h, auto went from r = 1 to r = 3 and back, epoch
        after epoch, where r = 4 had been measured no faster than r = 1.)
        """
        if inside := self._measured(low, high):
            return self._gains_too_little(inside[-1])
        above = self._measured(high + 1, bound)
        return self._gains_too_little(above[0]) if above else None

    def as_fast_below(self) -> Observed | None:
        """The smallest lower r measured to lose at most half the tolerance, if any.

        A lower r whose epoch lost more than the margin to batches not built in time, and more
        (by the tolerance) than the current r's did, is no evidence: the loader was short at
        it, so an epoch time as long at the current r says that epoch was slowed by something
        else, which a second epoch at it shows. (In a sweep of docs/benchmarks.md, 12j, the
        first epoch at r = 3 after the trial of r = 1 waited 22% for such batches, the trial
        30%, and auto went back to r = 1 for an epoch 20-40% slower than r = 3's.)
        """
        current = self.current
        for seen in self._measured(1, self.now.reuse_factor - 1):
            if seen.starved > max(self.margin, current.starved + self.tolerance):
                continue
            if self._ratio(seen) <= 1.0 + self.tolerance / 2:
                return seen
        return None

    def slower(self, reuse_factor: int) -> Observed | None:
        """The faster epoch at ``reuse_factor`` if its recent epochs lost more than the tolerance.

        Only once :data:`KEPT_PER_R` epochs were measured at it: one epoch may have been slowed
        by another job, and an r measured slower is not probed again for a while. (In the
        sweeps of docs/benchmarks.md, 12g, auto ran r = 2 from epoch 5 on, where r = 1 was
        within 5% of the fastest r, because r = 1's only epoch, the first choice's trial, had
        waited 24%.)
        """
        seen = self.seen(reuse_factor)
        if reuse_factor == self.now.reuse_factor or len(seen) < KEPT_PER_R:
            return None
        fastest = min(seen, key=lambda s: s.delivered)
        return fastest if self._ratio(fastest) > 1.0 + self.tolerance else None

    def describe(self, seen: Observed) -> str:
        """How ``seen`` compares with ``now``, for the log."""
        current = self.current
        return (
            f"measured at r={seen.reuse_factor} in epoch {seen.epoch}: "
            f"{self._ratio(seen):.3f}x the epoch time of r={current.reuse_factor} in epoch "
            f"{current.epoch}"
        )
