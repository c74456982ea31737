"""The reuse schedule: the reuse factor of every epoch, and the eviction pointer it drives.

A run may change its reuse factor between epochs (``reuse_factor="auto"`` does). Balanced
eviction then becomes a *rotation*: the run's one seeded permutation of the samples is read as a
circle, and a pointer walks round it. Epoch e >= 1 recomputes the next slice of the circle, of
n / r_e samples, so every entry waits its turn and the oldest ones go first.

The pointer is kept exactly, as a fraction of a turn: F_0 = 1 / r_0 and F_e = F_{e-1} + 1 / r_e,
where r_0 is the run's ``reuse_factor`` and r_1, r_2, ... its schedule. Over n samples the slice
of epoch e is the positions [ceil(n F_{e-1}), ceil(n F_e)) (mod n) of the permutation, so it
holds floor or ceil of n / r_e samples, and after epoch e the run has computed exactly
n + ceil(n F_e) - ceil(n F_0) samples: the rounding never drifts. Epoch 0 computes everything and
counts as the last of r_0 slices of width 1 / r_0 (epochs -r_0 + 1 to 0, all of generation 0).

With a constant schedule F_e = (e + 1) / r: the slices are the r chunks of fixed-r balanced
eviction, the slice of epoch e is chunk e mod r, and the plans are those of a fixed ``r``.

**An epoch at r = 1 is outside the rotation.** Epoch e >= 1 at r_e = 1 recomputes every sample,
and like a fixed r = 1 it neither reads the cache nor writes it, so the pointer stays where it
was and every entry keeps the reads it had left: the next epoch at r > 1 goes on from the
entries cached before, as if the r = 1 epochs had not been. Writing the r = 1 epoch's samples
instead, in case r goes up, would cost a cache write for most samples of every r = 1 epoch:
that made ``reuse_factor="auto"`` at r = 1 slower than a fixed r = 1 (docs/benchmarks.md, 12c).
So the rotation runs over the *rotation steps*, epoch 0 (step 0) and the epochs at r > 1 in turn
(steps 1, 2, ...): F, the slices and their labels above count steps, not epochs, and
:attr:`ReuseSchedule.rotation` is the schedule of the steps. An entry's generation is still the
epoch that computed it (:meth:`ReuseSchedule.label_generations`). Epoch 0 keeps its entries
whatever r_0 is (the first choice of r reads them).

Every r_e is at most the schedule's ``maximum`` R. The pointer then advances at least a whole
turn in R steps, so no entry is used more than R times (computed once, hit at most R - 1 times),
and the slices that computed the entries alive at step j are among the R latest, j - R + 1 to j.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from revamper.plan.limits import MAX_EPOCH, MAX_REUSE_FACTOR, check_int


class _Run(NamedTuple):
    """Epochs over which r stays the same: F_g = pointer + (g - start) / step for g >= start."""

    start: int
    pointer: Fraction
    step: int


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


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

    :meth:`pointer`, :meth:`boundaries` and :meth:`continuation` walk this schedule's own
    epochs; the planner walks them on :attr:`rotation`, whose epochs are the rotation steps.

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
    _steps: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)

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
        runs = [_Run(0, Fraction(1, initial), values[0] if values else initial)]
        for epoch in range(1, len(values)):
            if values[epoch] != runs[-1].step:
                last = runs[-1]
                pointer = last.pointer + Fraction(epoch - last.start, last.step)
                runs.append(_Run(epoch, pointer, values[epoch]))
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "maximum", maximum)
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "_runs", tuple(runs))
        object.__setattr__(self, "_starts", tuple(run.start for run in runs))
        steps = [0]  # steps[e]: the rotation steps among epochs 1..e
        for r in values:
            steps.append(steps[-1] + (r > 1))
        object.__setattr__(self, "_steps", tuple(steps))

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

    def in_rotation(self, epoch: int) -> bool:
        """Whether ``epoch`` reads and writes the cache: epoch 0, and every epoch at r > 1."""
        return epoch == 0 or self.at(epoch) > 1

    @functools.cached_property
    def rotation(self) -> ReuseSchedule:
        """The schedule of the rotation steps: r_0, then the r of every epoch at r > 1 in turn.

        Its epochs are this schedule's steps (:meth:`step`); it has no epoch at r = 1 but
        (perhaps) its epoch 0.
        """
        values = tuple(r for r in self.values if r > 1)
        if values == self.values:
            return self
        return ReuseSchedule(self.initial, values, self.maximum)

    def step(self, epoch: int) -> int:
        """The rotation step of ``epoch``: how many epochs 1..e ran at r > 1 (0 for epoch 0)."""
        e = check_int("epoch", epoch, 0, MAX_EPOCH)
        known = len(self.values)
        if e <= known:
            return self._steps[e]
        return self._steps[known] + (e - known) * (self.at(known + 1) > 1)

    def epoch_of(self, step: int) -> int:
        """The epoch of rotation step ``step`` (0 for step 0): the inverse of :meth:`step`.

        Raises:
            ValueError: If the schedule has no such step (it ends at r = 1).
        """
        j = check_int("step", step, 0, MAX_EPOCH)
        if j > self._steps[-1] and self.at(len(self.values) + 1) == 1:
            raise ValueError(f"the schedule has no rotation step {j}: it ends at r = 1")
        return int(self._epochs_of(np.array([j], dtype=np.int64))[0])

    def label_generations(self, epoch: int) -> npt.NDArray[np.int64]:
        """The generation of the entries of each slice label 0..R-1 that ``epoch`` may read.

        At rotation step j a label c names the slice of step j - ((j - c) mod R) (clipped at 0:
        epoch 0's slices), and its entries were computed in that step's epoch. An epoch outside
        the rotation reads nothing: every label is its own epoch (its samples are all misses).

        Returns:
            A read-only ``int64`` array of R generations, indexed by label.
        """
        e = check_int("epoch", epoch, 0, MAX_EPOCH)
        bound = self.maximum
        if not self.in_rotation(e):
            table = np.full(bound, e, dtype=np.int64)
        else:
            j = self.step(e)
            labels = np.arange(bound, dtype=np.int64)
            table = self._epochs_of(np.maximum(j - (j - labels) % bound, 0))
        table.setflags(write=False)
        return table

    def _epochs_of(self, steps: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """:meth:`epoch_of` for an array of steps, each one the schedule has (unchecked)."""
        known = len(self.values)
        counts = np.array(self._steps, dtype=np.int64)
        inside = steps <= counts[known]
        return np.where(
            inside,
            np.searchsorted(counts, steps, side="left"),
            known + steps - counts[known],
        ).astype(np.int64)

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
        can move after ``epoch``. An entry is surely recomputed at epoch e + k only if even this
        slowest pointer reaches it, so these give the most reads an entry can still serve.

        Args:
            num_samples: n (>= 1).
            epoch: The current epoch e.

        Returns:
            ``R - 1`` non-decreasing offsets from the current pointer, each in [0, n].
        """
        n, bound = num_samples, self.maximum
        current = self.pointer(epoch)
        p, q = current.numerator, current.denominator
        here = _ceil_div(n * p, q)
        return [_ceil_div(n * p * bound + n * k * q, q * bound) - here for k in range(1, bound)]
