"""The reuse schedule: the reuse factor of every epoch, and the eviction pointer it drives.

A run may change its reuse factor between epochs (``reuse_factor="auto"`` does). Balanced
eviction then becomes a *rotation*: the run's one seeded permutation of the samples is read as a
circle, and a pointer walks round it. Epoch e >= 1 recomputes the next slice of the circle, of
n / r_e samples (all n right after an r = 1 epoch: below), so every entry waits its turn and the
oldest ones go first.

The pointer is kept exactly, as a fraction of a turn: F_0 = 1 / r_0 and F_e = F_{e-1} + 1 / r_e,
where r_0 is the run's ``reuse_factor`` and r_1, r_2, ... its schedule (1 / r_e is 1 right
after an r = 1 epoch). Over n samples the slice of epoch e is the positions
[ceil(n F_{e-1}), ceil(n F_e)) (mod n) of the permutation, so it holds floor or ceil of n / r_e
samples, and after epoch e the run has computed exactly
n + ceil(n F_e) - ceil(n F_0) samples: the rounding never drifts. Epoch 0 computes everything and
counts as the last of r_0 slices of width 1 / r_0 (epochs -r_0 + 1 to 0, all of generation 0).

With a constant schedule F_e = (e + 1) / r: the slices are the r chunks of fixed-r balanced
eviction, the slice of epoch e is chunk e mod r, and the plans are those of a fixed ``r``.

**An epoch at r = 1 caches nothing.** Epoch e >= 1 at r_e = 1 recomputes every sample and,
like a fixed r = 1, writes none of them. Writing them anyway, in case r goes up next epoch, would
cost a cache write for most samples of every r = 1 epoch: that made ``reuse_factor="auto"`` at
r = 1 slower than a fixed r = 1 (docs/benchmarks.md, 12c). So the epoch after an r = 1 epoch
e >= 1 finds nothing cached and recomputes everything, as epoch 0 does, whatever its own r: its
slice is a whole turn (F_{e+1} = F_e + 1), and its entries serve the epochs after it. Epoch 0
keeps its entries (the first choice of r reads them). Going up from r = 1 thus costs one epoch
that computes everything; staying at r = 1 costs no write at all.

Every r_e is at most the schedule's ``maximum`` R. The pointer then advances at least a whole
turn in R epochs, so no entry is used more than R times (computed once, hit at most R - 1 times),
and the slices that computed the entries alive at epoch e are among the R latest, e - R + 1 to e.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple

from revamper.plan.limits import MAX_EPOCH, MAX_REUSE_FACTOR, check_int


class _Run(NamedTuple):
    """Epochs over which r stays the same: F_g = pointer + (g - start) / step for g >= start."""

    start: int
    pointer: Fraction
    step: int


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _slice_steps(initial: int, values: Sequence[int]) -> list[int]:
    """s_1, ..., s_{k+1}: epoch e's slice is 1 / s_e of a turn; s_{k+1} holds for every later e.

    s_e is r_e, except 1 (a whole turn) right after an r = 1 epoch e - 1 >= 1, which kept
    nothing (see the module's description).
    """
    factors = [*values, values[-1] if values else initial]  # r_1, ..., r_k, r_{k+1} = r_k
    return [1 if e >= 2 and factors[e - 2] == 1 else r for e, r in enumerate(factors, 1)]


def _checked_values(values: object, maximum: int) -> list[int]:
    """Return the schedule's values as Python ints after checking each lies in [1, maximum]."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(
            "reuse_schedule must be a tuple of ints (r for epochs 1, 2, ...), got "
            f"{type(values).__name__} {values!r}"
        )
    checked = []
    for k, value in enumerate(values):
        r = check_int(f"reuse_schedule[{k}] (r of epoch {k + 1})", value, 1)
        if r > maximum:
            raise ValueError(
                f"reuse_schedule[{k}] (r of epoch {k + 1}) is {r}, above max_reuse_factor="
                f"{maximum}; raise max_reuse_factor (it defaults to reuse_factor)"
            )
        checked.append(r)
    return checked


@dataclasses.dataclass(frozen=True)
class ReuseSchedule:
    """The reuse factor of every epoch of a run, in a canonical form.

    Two schedules are equal exactly when they give every epoch the same reuse factor and bound
    (trailing repeats are dropped: ``values`` ``(2, 3, 3)`` is ``(2, 3)``, ``(3,)`` after an
    ``initial`` 3 is ``()``), so equal schedules give equal plans.

    Attributes:
        initial: r_0, the run's ``reuse_factor``: the r of every epoch when ``values`` is empty,
            and the width 1 / r_0 of epoch 0's last slice (the pointer's start).
        values: r_1, ..., r_k for epochs 1 to k; epochs after k keep r_k.
        maximum: R, the largest reuse factor the run may ever use (>= ``initial`` and every
            value). A plan never assumes more about the future than this bound, so any later
            r_e <= R keeps every planned hit valid.
    """

    initial: int
    values: tuple[int, ...]
    maximum: int
    _runs: tuple[_Run, ...] = dataclasses.field(init=False, repr=False, compare=False)
    _starts: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate the schedule, drop trailing repeats and precompute the pointer's runs.

        Raises:
            TypeError: If ``values`` is not a sequence of ints, or a number is not an int.
            ValueError: If ``initial`` or a value lies outside [1, ``maximum``], or
                ``maximum`` outside [1, 65535]; the message names the field of
                :class:`~revamper.plan.PlanConfig` at fault.
        """
        initial = check_int("reuse_factor", self.initial, 1, MAX_REUSE_FACTOR)
        maximum = check_int("max_reuse_factor", self.maximum, 1, MAX_REUSE_FACTOR)
        if maximum < initial:
            raise ValueError(
                f"max_reuse_factor={maximum} is smaller than reuse_factor={initial}; the bound "
                "must cover every reuse factor of the run"
            )
        values = _checked_values(self.values, maximum)
        while values and values[-1] == (values[-2] if len(values) > 1 else initial):
            values.pop()
        steps = _slice_steps(initial, values)
        runs = [_Run(0, Fraction(1, initial), steps[0])]
        for epoch in range(1, len(steps)):  # steps[epoch] is epoch + 1's
            if steps[epoch] != runs[-1].step:
                last = runs[-1]
                pointer = last.pointer + Fraction(epoch - last.start, last.step)
                runs.append(_Run(epoch, pointer, steps[epoch]))
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "maximum", maximum)
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "_runs", tuple(runs))
        object.__setattr__(self, "_starts", tuple(run.start for run in runs))

    @property
    def is_fixed(self) -> bool:
        """Whether every epoch uses ``initial`` and the bound is ``initial``: a fixed-r run."""
        return not self.values and self.maximum == self.initial

    def at(self, epoch: int) -> int:
        """Return r_e, the reuse factor of ``epoch`` (r_0 = ``initial`` for epoch 0)."""
        e = check_int("epoch", epoch, 0, MAX_EPOCH)
        if e == 0:
            return self.initial
        if not self.values:
            return self.initial
        return self.values[min(e, len(self.values)) - 1]

    def keeps(self, epoch: int) -> bool:
        """Whether the entries ``epoch`` computes may be read later (not at r = 1 after epoch 0).

        See the module's description: an epoch e >= 1 at r = 1 writes nothing to the cache.
        """
        return epoch == 0 or self.at(epoch) > 1

    def recomputes_all(self, epoch: int) -> bool:
        """Whether ``epoch`` recomputes every sample: epoch 0, r = 1, or after an r = 1 epoch."""
        return epoch == 0 or self.at(epoch) == 1 or not self.keeps(epoch - 1)

    def _run(self, epoch: int) -> _Run:
        """The run holding ``epoch``; epochs below 0 (epoch 0's slices) step by r_0."""
        if epoch < 0:
            return _Run(0, self._runs[0].pointer, self.initial)
        return self._runs[bisect.bisect_right(self._starts, epoch) - 1]

    def pointer(self, epoch: int) -> Fraction:
        """Return F_e, the pointer after ``epoch`` in turns (any int, below 0 included)."""
        run = self._run(epoch)
        return run.pointer + Fraction(epoch - run.start, run.step)

    def boundaries(self, num_samples: int, first: int, last: int) -> list[int]:
        """Return ceil(n F_g) for g = ``first`` to ``last``: where each epoch's slice ends.

        Exact integer arithmetic, one Fraction per run crossed: O(last - first + runs).

        Args:
            num_samples: n, the samples on the circle (>= 1).
            first: The first epoch (may be negative: epoch 0's slices).
            last: The last epoch (>= ``first``).

        Returns:
            ``last - first + 1`` non-decreasing Python ints (positions on the unrolled circle).
        """
        n = num_samples
        result: list[int] = []
        epoch = first
        while epoch <= last:
            run = self._run(epoch)
            if epoch < 0:
                stop = min(last, -1)
            else:
                index = bisect.bisect_right(self._starts, epoch)
                stop = last if index == len(self._starts) else min(last, self._starts[index] - 1)
            p, q, s = run.pointer.numerator, run.pointer.denominator, run.step
            offset, slope, denominator = n * p * s, n * q, q * s
            result.extend(
                _ceil_div(offset + (g - run.start) * slope, denominator)
                for g in range(epoch, stop + 1)
            )
            epoch = stop + 1
        return result

    def continuation(self, num_samples: int, epoch: int) -> list[int]:
        """Return where the slices of epochs e + 1 to e + R - 1 would end if every r were R.

        That is ceil(n (F_e + k / R)) - ceil(n F_e) for k = 1 to R - 1: the slowest the pointer
        can move after ``epoch`` (all n after an epoch that keeps nothing: :meth:`keeps`). An
        entry is surely recomputed at epoch e + k only if even this slowest pointer reaches it,
        so these give the most reads an entry can still serve.

        Args:
            num_samples: n (>= 1).
            epoch: The current epoch e.

        Returns:
            ``R - 1`` non-decreasing offsets from the current pointer, each in [0, n].
        """
        n, bound = num_samples, self.maximum
        if not self.keeps(epoch):  # the next epoch recomputes everything, whatever its r
            return [n] * (bound - 1)
        current = self.pointer(epoch)
        p, q = current.numerator, current.denominator
        here = _ceil_div(n * p, q)
        return [_ceil_div(n * p * bound + n * k * q, q * bound) - here for k in range(1, bound)]
