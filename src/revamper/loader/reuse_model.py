"""What an epoch measured, and the production rate it predicts at every reuse factor.

``reuse_factor="auto"`` (:mod:`revamper.loader.reuse_control`) chooses each epoch's r from
these predictions. The model is DESIGN.md section 3's cost model with each term measured by the
loader's own timers in the last epoch, plus two things the timers cannot see, calibrated from
the epoch's wall time:

- **CPU per sample at r**: an epoch at r recomputes a share ``1/r`` of the samples (the plan's
  rotation guarantees it, within one sample), and a planned hit whose entry was gone (a full
  cache) is computed too, so with ``q`` the share of planned hits that failed (not measured in
  the first epoch after a resume, whose planned hits all fail once in a new memory cache)::

      cpu(r) = (1/r + (1 - 1/r) q) (miss + [r > 1] write) + (1 - 1/r) read + common

  ``miss`` is load + partial transform per computed sample, ``write`` a cache write per entry
  written (an epoch at r = 1 writes none: :mod:`revamper.plan.schedule`), ``read`` a cache read
  per planned hit (before any epoch with hits has measured one: the write's cost, as the codec
  does about the same work both ways), ``common`` the final transform and collation.
- **Wall seconds, not only CPU seconds**: the workers also time each stage by the clock, which
  counts what a worker waited for (a core taken by another process or worker, I/O), and the
  production rate depends on that as much as on the CPU work. So the costs above are the
  workers' wall seconds when measured (CPU seconds otherwise, e.g. statistics made elsewhere).
- **The first batch**: an epoch starts with the consumer waiting while one worker builds the
  first batch alone, ``B cpu(r)`` seconds for B samples, which a larger r shortens too. With a
  few dozen batches per epoch that is several per cent of the epoch at r = 1 (docs/benchmarks.md,
  12c), so the predicted epoch time (:meth:`CostModel.epoch_seconds`) includes it.
- **Production seconds per sample**: ``(cost(r) + overhead) / capacity``. ``capacity`` is the
  number of workers (their wall times already include waiting for a core; with CPU times only,
  ``min(num_workers, cores)``); ``overhead`` is what the workers' clocks miss, per sample (the
  hand-off of batches between processes, the main process's own work). It is calibrated
  whenever the consumer waited (the loader was then the bottleneck, so the epoch's wall time is
  its production time), and otherwise only lowered to what the epoch proves (the loader
  produced at least as fast as it delivered). Without worker processes (``num_workers=0``) the
  main process produces each batch while the consumer waits, so the wait is the production
  time.

Everything here is pure arithmetic on picklable numbers: the ranks of distributed training
exchange :class:`EpochMeasurement` objects and each computes the same prediction.
"""

from __future__ import annotations

import dataclasses
import math

from revamper.loader.stats import EpochStats

BUSY_WORKERS = 0.9
"""The share of an epoch the workers must be busy for every wait to count (see
:meth:`EpochMeasurement.loader_bound`)."""


@dataclasses.dataclass(frozen=True)
class EpochMeasurement:
    """What one epoch on one rank measured, as the choice of r needs it.

    Attributes:
        epoch: The epoch measured.
        reuse_factor: The r it ran with.
        samples: Samples delivered.
        batches: Batches delivered.
        computed: Samples computed (planned plus unplanned misses).
        planned_hits: Samples the plan meant to read from the cache (hits plus unplanned
            misses).
        unplanned_misses: Planned hits that had to be computed.
        cpu_miss: Worker CPU seconds loading, partially transforming and caching samples.
        cpu_write: Of those, the cache writes.
        cpu_read: Worker CPU seconds in cache reads.
        cpu_common: Worker CPU seconds in the final transform and collation.
        wall_seconds: From the epoch's start to its last batch.
        wait_seconds: The consumer's time inside ``next()`` waiting for batches.
        first_wait_seconds: Of those, the wait for the first batch (start-up).
        step_seconds: The consumer's time between batches, over ``steps`` intervals.
        steps: Intervals measured.
        first_batch_samples: Samples in the first batch (left out of the rates with its wait).
        num_workers: Worker processes (0: the main process produces the batches).
        cores: CPU cores this rank's loader may use.
        wall_compute: Wall seconds computing samples in the workers (0: not measured).
        wall_read: Wall seconds in cache reads.
        wall_batch: Wall seconds building batches in the workers, collation included.
        starved_seconds: Of the waits after the first batch, the time before the batch had
            been built (``None``: not measured; all of the waits count).
        writes: Entries written to the cache (0 with ``cpu_write`` > 0: not counted).
        cold: The first epoch after a resume: its planned hits met a cache this run had not
            filled (a memory cache starts empty), so the share that failed, and their read
            cost, say nothing of the epochs after it.
    """

    epoch: int
    reuse_factor: int
    samples: int
    batches: int
    computed: int
    planned_hits: int
    unplanned_misses: int
    cpu_miss: float
    cpu_write: float
    cpu_read: float
    cpu_common: float
    wall_seconds: float
    wait_seconds: float
    first_wait_seconds: float
    step_seconds: float
    steps: int
    first_batch_samples: int
    num_workers: int
    cores: float
    wall_compute: float = 0.0
    wall_read: float = 0.0
    wall_batch: float = 0.0
    starved_seconds: float | None = None
    writes: int = 0
    cold: bool = False

    @classmethod
    def from_stats(
        cls, stats: EpochStats, *, num_workers: int, cores: float, cold: bool = False
    ) -> EpochMeasurement:
        """The measurement of the epoch ``stats`` describes, on a loader with ``num_workers``."""
        return cls(
            epoch=stats.epoch,
            reuse_factor=stats.reuse_factor,
            samples=stats.samples,
            batches=stats.batches,
            computed=stats.misses,
            planned_hits=stats.hits + stats.unplanned_misses,
            unplanned_misses=stats.unplanned_misses,
            cpu_miss=stats.cpu_load + stats.cpu_partial + stats.cpu_cache_write,
            cpu_write=stats.cpu_cache_write,
            cpu_read=stats.cpu_cache_read,
            cpu_common=stats.cpu_final + stats.cpu_collate,
            wall_seconds=stats.wall_seconds,
            wait_seconds=stats.wait_seconds,
            first_wait_seconds=stats.first_wait_seconds,
            step_seconds=stats.step_seconds,
            steps=stats.steps,
            first_batch_samples=stats.batch_samples[0] if stats.batch_samples else 0,
            num_workers=num_workers,
            cores=cores,
            wall_compute=stats.wall_compute,
            wall_read=stats.wall_read,
            wall_batch=stats.wall_batch,
            starved_seconds=stats.starved_seconds,
            writes=stats.cache_writes,
            cold=cold,
        )

    @property
    def usable(self) -> bool:
        """Whether the epoch measured enough to predict from (two batches and some time)."""
        return (
            self.batches >= 2
            and self.samples > self.first_batch_samples
            and self.wall_seconds > self.first_wait_seconds
            and all(math.isfinite(x) and x >= 0 for x in self._times())
            and (self.starved_seconds is None or 0 <= self.starved_seconds <= self.wait_seconds)
            and self.writes >= 0
        )

    def _times(self) -> tuple[float, ...]:
        return (
            self.cpu_miss,
            self.cpu_write,
            self.cpu_read,
            self.cpu_common,
            self.wall_seconds,
            self.wait_seconds,
            self.first_wait_seconds,
            self.step_seconds,
            self.cores,
            self.wall_compute,
            self.wall_read,
            self.wall_batch,
        )

    @property
    def serial(self) -> bool:
        """Whether the main process produced the batches itself (no worker processes)."""
        return self.num_workers == 0

    @property
    def delivered_seconds(self) -> float:
        """Wall seconds per sample delivered after the first batch."""
        return (self.wall_seconds - self.first_wait_seconds) / (
            self.samples - self.first_batch_samples
        )

    @property
    def wait_share(self) -> float:
        """The share of the epoch after its first batch in which the consumer waited."""
        return self._share_after_first(self.wait_seconds - self.first_wait_seconds)

    def _share_after_first(self, seconds: float) -> float:
        """``seconds`` as a share of the epoch after its first batch (usable epochs only)."""
        return min(1.0, max(0.0, seconds / (self.wall_seconds - self.first_wait_seconds)))

    @property
    def starved_share(self) -> float:
        """The share of the epoch after its first batch spent waiting for the workers.

        That is, for batches not built yet: the loader was the bottleneck. Unmeasured, the
        whole wait counts.
        """
        if self.starved_seconds is None:
            return self.wait_share
        return self._share_after_first(self.starved_seconds)

    @property
    def worker_busy_share(self) -> float:
        """The share of the epoch after its first batch that the workers spent building batches.

        1 where it is not measured (no worker wall times) or there are no workers.
        """
        if self.serial or not self.timed_wall:
            return 1.0
        later = self.wall_batch * (self.samples - self.first_batch_samples) / self.samples
        seconds = (self.wall_seconds - self.first_wait_seconds) * self.num_workers
        return min(1.0, later / seconds) if seconds > 0 else 1.0

    def loader_bound(self, share: float, handoff: float = 0.0) -> bool:
        """Whether the consumer waited for the loader for at least ``share`` of the epoch.

        A wait counts when the batch had not been built yet (:attr:`starved_share`). When the
        workers were busy nearly all the time (90%), the wait for built batches counts too,
        beyond ``handoff`` seconds per sample: a busy worker is also slow to hand its built
        batches over (torch passes each tensor's shared memory through a thread of the worker,
        which then waits for the worker's interpreter lock), but part of every hand-off is
        paid at any r, as an epoch that kept up measured it (:attr:`CostModel.handoff`).
        Counting that part too made auto's probes of r = 1 go back up where r = 1 was within
        a few per cent of the fastest r (docs/benchmarks.md, 12d).
        """
        if self.serial:
            return True
        if self.starved_share >= share:
            return True
        if self.worker_busy_share < BUSY_WORKERS:
            return False
        paid = handoff * (self.samples - self.first_batch_samples)
        return self._share_after_first(self.wait_seconds - self.first_wait_seconds - paid) >= share

    @property
    def handoff_per_sample(self) -> float:
        """Seconds per sample the consumer waited for batches that were already built.

        That is the batch crossing from its worker to the main process: the consumer pays it
        whether or not the loader keeps up, so it is part of the consumer's own time.
        """
        if self.starved_seconds is None or self.serial:
            return 0.0
        waited = self.wait_seconds - self.first_wait_seconds - self.starved_seconds
        return max(0.0, waited) / (self.samples - self.first_batch_samples)

    @property
    def consumer_per_sample(self) -> float:
        """The consumer's seconds per sample when the loader keeps up: its step and hand-off."""
        return self.step_per_sample + self.handoff_per_sample

    @property
    def step_per_sample(self) -> float:
        """The consumer's seconds per sample outside the loader (its demand)."""
        if self.steps == 0 or self.batches == 0:
            return 0.0
        return self.step_seconds / self.steps / (self.samples / self.batches)

    @property
    def timed_wall(self) -> bool:
        """Whether the workers' wall times were measured (the costs are then wall seconds)."""
        return self.wall_batch > 0

    def costs(self) -> tuple[float, float, float, float]:
        """Seconds computing, writing (of those), reading and the rest (final, collation).

        Wall seconds when measured: they include what a worker waited for (I/O, the cores it
        shares with other processes and workers), which the production rate depends on just as
        much; else CPU seconds.
        """
        if not self.timed_wall:
            return self.cpu_miss, self.cpu_write, self.cpu_read, self.cpu_common
        write = self.cpu_write * (self.wall_compute / self.cpu_miss) if self.cpu_miss else 0.0
        rest = max(0.0, self.wall_batch - self.wall_compute - self.wall_read)
        return self.wall_compute, write, self.wall_read, rest

    @property
    def cpu_per_sample(self) -> float:
        """Worker seconds per delivered sample, all stages (wall seconds when measured)."""
        miss, _, read, rest = self.costs()
        return (miss + read + rest) / self.samples


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Per-sample costs measured on one rank, and the production rate they predict at any r.

    Attributes:
        miss: CPU seconds per computed sample (load, partial transform).
        read: CPU seconds per planned hit (the cache read).
        read_measured: Whether ``read`` was measured (else it is the write's cost).
        common: CPU seconds per sample (final transform, collation).
        failed_hits: Share of planned hits that had to be computed (``q``).
        overhead: Seconds per sample of work the timers do not see, in core-seconds.
        capacity: Cores the producers use at once (1 without worker processes).
        serial: Whether production and consumption alternate (no worker processes).
        write: CPU seconds per entry written, which every computed sample is at r > 1 and none
            at r = 1.
        first_batch: Samples in an epoch's first batch (0: leave the first batch out).
        epoch_samples: Samples in an epoch.
        handoff: Seconds per sample the consumer waited for batches already built, in the
            last epoch in which the loader kept up (0: none yet): the part of the hand-off
            paid at any r (:meth:`EpochMeasurement.loader_bound`).
        started_ahead: The r values at which the epoch being chosen for would start with its
            first batch built, because the loader starts it ahead
            (:mod:`revamper.loader.epoch_overlap`): no first-batch wait at those.
    """

    miss: float
    read: float
    read_measured: bool
    common: float
    failed_hits: float
    overhead: float
    capacity: float
    serial: bool
    write: float = 0.0
    first_batch: int = 0
    epoch_samples: int = 0
    handoff: float = 0.0
    started_ahead: frozenset[int] = frozenset()

    def cpu(self, reuse_factor: int) -> float:
        """Predicted CPU seconds per sample at ``reuse_factor``."""
        reuse = 1.0 - 1.0 / reuse_factor
        computed = 1.0 - reuse + reuse * self.failed_hits
        write = self.write if reuse_factor > 1 else 0.0
        return computed * (self.miss + write) + reuse * self.read + self.common

    def production_seconds(self, reuse_factor: int) -> float:
        """Predicted wall seconds per sample the loader needs at ``reuse_factor``."""
        return (self.cpu(reuse_factor) + self.overhead) / self.capacity

    def rate(self, reuse_factor: int) -> float:
        """Predicted production rate at ``reuse_factor``, in samples per second."""
        seconds = self.production_seconds(reuse_factor)
        return 1.0 / seconds if seconds > 0 else math.inf

    def first_batch_seconds(self, reuse_factor: int) -> float:
        """Predicted seconds one worker takes to build an epoch's first batch at ``reuse_factor``.

        Misses are balanced over the batches, so the first batch costs what the average does.
        0 at an r in :attr:`started_ahead`: the batch is built before the epoch starts.
        """
        if reuse_factor in self.started_ahead:
            return 0.0
        return self.first_batch * self.cpu(reuse_factor)

    def epoch_seconds(self, reuse_factor: int, step: float, margin: float) -> float:
        """Predicted wall seconds per sample of a whole epoch, with production ``margin`` slower.

        With worker processes the consumer and the loader overlap, so the slower sets the pace,
        after the consumer waited for the first batch (which one worker builds alone); without,
        they take turns.
        """
        produce = self.production_seconds(reuse_factor) * (1.0 + margin)
        if self.serial:
            return step + produce
        samples, first = self.epoch_samples, self.first_batch
        if not 0 < first < samples:
            return max(step, produce)
        started = self.first_batch_seconds(reuse_factor) + (samples - first) * step
        return max(started, samples * produce) / samples


def fit(
    measured: EpochMeasurement, previous: CostModel | None, bottleneck_share: float
) -> CostModel:
    """The cost model after ``measured`` (a usable epoch), updating ``previous`` (or none).

    Costs the epoch did not exercise (no cache reads, no computed sample) keep ``previous``'s
    values; the overhead is calibrated as the module's description says.

    Args:
        measured: The epoch's measurement (:attr:`EpochMeasurement.usable`).
        previous: The model before it, or ``None``.
        bottleneck_share: The wait share above which the loader counts as the bottleneck.
    """
    computed = measured.computed
    miss_seconds, write_seconds, read_seconds, rest_seconds = measured.costs()
    if computed:
        miss = (miss_seconds - write_seconds) / computed
    else:
        miss = previous.miss if previous else 0.0
    # Write time but no writes counted (a measurement made elsewhere): each computed sample.
    written = measured.writes or (computed if write_seconds > 0 else 0)
    # An epoch at r = 1 writes nothing: it keeps the last measurement.
    write = write_seconds / written if written else (previous.write if previous else 0.0)
    if measured.planned_hits and not measured.cold:
        read, read_measured = read_seconds / measured.planned_hits, True
        failed = measured.unplanned_misses / measured.planned_hits
    elif previous is not None and previous.read_measured:
        read, read_measured, failed = previous.read, True, previous.failed_hits
    else:
        read = write
        read_measured, failed = False, previous.failed_hits if previous else 0.0
    capacity = _capacity(measured)
    if measured.serial:
        waited = measured.wait_seconds - measured.first_wait_seconds
        observed = waited / (measured.samples - measured.first_batch_samples)
    else:
        observed = measured.delivered_seconds * capacity
    proven = max(0.0, observed - measured.cpu_per_sample)
    handoff = previous.handoff if previous is not None else 0.0
    if measured.loader_bound(bottleneck_share, handoff):
        overhead = proven  # the loader set the pace: its wall time is its production time
    else:
        # The loader kept up, so the wall time only bounds the overhead from above. Keep the
        # last calibration below that bound (none yet: 0, as the epoch proved its r enough).
        overhead = min(previous.overhead, proven) if previous is not None else 0.0
        handoff = measured.handoff_per_sample
    return CostModel(
        miss=miss,
        read=read,
        read_measured=read_measured,
        common=rest_seconds / measured.samples,
        failed_hits=min(1.0, max(0.0, failed)),
        overhead=overhead,
        capacity=float(capacity),
        serial=measured.serial,
        write=write,
        first_batch=measured.first_batch_samples,
        epoch_samples=measured.samples,
        handoff=handoff,
    )


def loader_bound(measured: EpochMeasurement, previous: CostModel | None, share: float) -> bool:
    """Whether the loader set the pace of ``measured``, judged with the model before it.

    The hand-off that ``previous`` measured in an epoch that kept up is paid at any r, so it
    is not a wait for the loader (:meth:`EpochMeasurement.loader_bound`).
    """
    handoff = previous.handoff if previous is not None else 0.0
    return measured.loader_bound(share, handoff)


def _capacity(measured: EpochMeasurement) -> float:
    """How many samples' worth of worker time pass per second of wall time.

    Without workers, 1 (the main process). With wall times, every worker counts (its wall time
    already includes waiting for a core); with CPU times only, at most one per core.
    """
    if measured.serial:
        return 1.0
    if measured.timed_wall:
        return float(measured.num_workers)
    return max(1e-3, min(float(measured.num_workers), measured.cores))
