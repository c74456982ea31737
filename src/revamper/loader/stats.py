"""What the loader counts and times, per batch (in the worker) and per epoch (in the main process).

Workers measure each batch as they build it and send the figures back with the batch itself, so
the main process sums exact numbers in order, whatever the number of workers, and nothing is lost
when workers stop. CPU times are the worker thread's own CPU seconds (``time.thread_time``), so
they add up across workers and exclude time spent waiting.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

_COUNTS = (
    "samples",
    "planned_misses",
    "unplanned_misses",
    "hits",
    "uncached",
    "cache_reads",
    "cache_writes",
    "bytes_read_memory",
    "bytes_read_disk",
    "bytes_written_disk",
)
_TIMES = (
    "cpu_load",
    "cpu_partial",
    "cpu_final",
    "cpu_cache_read",
    "cpu_cache_write",
    "cpu_collate",
)
_WALLS = ("wall_compute", "wall_read", "wall_batch")


@dataclasses.dataclass
class BatchStats:
    """Counts and CPU seconds for one batch (or a sum of batches).

    Attributes:
        samples: Samples produced.
        planned_misses: Samples the plan said to compute (load + partial transform).
        unplanned_misses: Samples planned as hits whose entry was absent or invalid, so they were
            computed too (after a ``break``, an exception, a restart, or a full cache).
        hits: Samples served from the cache.
        uncached: Computed samples the store did not keep (budget or write failure).
        cache_reads: Cache lookups (hits plus unplanned misses).
        cache_writes: Cache writes attempted (one per computed sample when caching).
        bytes_read_memory: Bytes of cache entries read from memory.
        bytes_read_disk: Bytes of cache entries read from disk (or the page cache in front).
        bytes_written_disk: Bytes of cache entries written to disk.
        cpu_load: CPU seconds reading items from the data set.
        cpu_partial: CPU seconds in the partial transform.
        cpu_final: CPU seconds in the final transform.
        cpu_cache_read: CPU seconds in cache lookups (decoding included).
        cpu_cache_write: CPU seconds in cache writes (encoding included).
        cpu_collate: CPU seconds in ``collate_fn``.
        wall_compute: Wall seconds computing samples (load, partial transform, cache write),
            waits included (I/O, other processes on the same cores).
        wall_read: Wall seconds in cache reads.
        wall_batch: Wall seconds building the batch in its worker, collation included.
        finished_at: When the batch left its worker (``time.monotonic()``, a clock every
            process on the machine shares; 0: unknown): set when it is built, and again as it
            is pickled to be sent. Not summed: a sum of batches keeps the latest.
    """

    samples: int = 0
    planned_misses: int = 0
    unplanned_misses: int = 0
    hits: int = 0
    uncached: int = 0
    cache_reads: int = 0
    cache_writes: int = 0
    bytes_read_memory: int = 0
    bytes_read_disk: int = 0
    bytes_written_disk: int = 0
    cpu_load: float = 0.0
    cpu_partial: float = 0.0
    cpu_final: float = 0.0
    cpu_cache_read: float = 0.0
    cpu_cache_write: float = 0.0
    cpu_collate: float = 0.0
    wall_compute: float = 0.0
    wall_read: float = 0.0
    wall_batch: float = 0.0
    finished_at: float = 0.0

    def __getstate__(self) -> dict[str, Any]:
        """The figures as pickled for the way to the main process, stamped with when they left.

        A worker's batch is pickled when it is sent, after it was built (and after any wait
        for the worker's interpreter lock), so the stamp is when the batch left the worker.
        """
        state = dict(self.__dict__)
        if type(self) is BatchStats and state.get("finished_at"):  # not an epoch's sums
            state["finished_at"] = time.monotonic()
        return state

    def add(self, other: BatchStats) -> None:
        """Add ``other``'s counts and times to this one."""
        for name in _COUNTS + _TIMES + _WALLS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.finished_at = max(self.finished_at, other.finished_at)

    @property
    def misses(self) -> int:
        """All computed samples: planned plus unplanned misses."""
        return self.planned_misses + self.unplanned_misses

    @property
    def cpu_cache(self) -> float:
        """CPU seconds in cache reads and writes together."""
        return self.cpu_cache_read + self.cpu_cache_write

    @property
    def cpu_total(self) -> float:
        """CPU seconds over all stages."""
        return float(sum(getattr(self, name) for name in _TIMES))


@dataclasses.dataclass
class EpochStats(BatchStats):
    """One epoch's figures, summed over its batches and workers.

    Attributes:
        epoch: The epoch number.
        batches: Batches delivered.
        planned_batches: Batches this run of the epoch was to deliver (all but the first
            ``first_batch``); ``batches`` is smaller if the epoch was cut.
        first_batch: The batch the epoch started from (0, or where a resumed epoch resumed).
        wall_seconds: Seconds from the start of the epoch to its last batch.
        bytes_cached: Bytes held by the cache store when the epoch ended (or was cut).
        batch_cpu: CPU seconds each delivered batch cost its worker, in order: how evenly the
            work is spread over the steps (what the cache-aware shuffle evens out).
        batch_samples: Samples in each delivered batch, in order.
        reuse_factor: The r this epoch ran with (the plan's ``r_e``: a fixed ``reuse_factor``,
            or what ``reuse_factor="auto"`` chose; epoch 0 computes everything whatever it is).
            0 when unknown (statistics made outside a loader).
        wait_seconds: Seconds the consumer spent inside ``next()`` waiting for a batch, the
            first included.
        first_wait_seconds: Of those, the wait for the first batch (worker start-up and the
            pipeline filling up: costs that do not depend on r).
        starved_seconds: Of the waits after the first batch, the time before the batch had
            been built: the consumer waited for the workers. The rest of a wait is the hand-off
            (the batch crossing from its worker to the main process), which the consumer pays
            even when the loader keeps up.
        step_seconds: Seconds the consumer spent between batches, outside the loader (its
            training step), over ``steps`` intervals.
        steps: Intervals between a delivered batch and the next call to ``next()`` measured
            (one per batch once the epoch ran to its end).
        predicted_rate: The loader's production rate (samples/s) predicted for this epoch
            before it started, from what the epochs before it measured; ``None`` when there was
            nothing to predict from (epoch 0, a resumed run's first epoch).
    """

    epoch: int = 0
    batches: int = 0
    planned_batches: int = 0
    first_batch: int = 0
    wall_seconds: float = 0.0
    bytes_cached: int = 0
    batch_cpu: list[float] = dataclasses.field(default_factory=list)
    batch_samples: list[int] = dataclasses.field(default_factory=list)
    reuse_factor: int = 0
    wait_seconds: float = 0.0
    first_wait_seconds: float = 0.0
    starved_seconds: float = 0.0
    step_seconds: float = 0.0
    steps: int = 0
    predicted_rate: float | None = None

    def record_wait(
        self, seconds: float, *, first: bool = False, starved: float | None = None
    ) -> None:
        """Add one wait of the consumer inside ``next()``.

        Args:
            seconds: The whole wait.
            first: Whether it was for the epoch's first batch (start-up).
            starved: Of ``seconds``, the time before the batch had been built (counted in
                :attr:`starved_seconds` for batches after the first); ``None``: unknown, all
                of it.
        """
        if first:
            self.first_wait_seconds += seconds
        else:
            part = seconds if starved is None else starved
            self.starved_seconds += min(seconds, max(0.0, part))
        self.wait_seconds += seconds

    def record_step(self, seconds: float) -> None:
        """Add one interval the consumer spent outside the loader, between two ``next()``."""
        self.step_seconds += seconds
        self.steps += 1

    @property
    def measured_rate(self) -> float:
        """Samples per second delivered after the first batch (0 without two batches).

        The first batch's wait (start-up) is left out. When the consumer waited for a visible
        share of the epoch (:attr:`wait_share`), the loader was the bottleneck and this is its
        production rate; otherwise the loader produced at least this fast.
        """
        seconds = self.wall_seconds - self.first_wait_seconds
        samples = self.samples - (self.batch_samples[0] if self.batch_samples else 0)
        return samples / seconds if seconds > 0 and samples > 0 else 0.0

    @property
    def wait_share(self) -> float:
        """The share of the epoch after its first batch in which the consumer waited for data."""
        return self._share_after_first(self.wait_seconds - self.first_wait_seconds)

    @property
    def starved_share(self) -> float:
        """The share of the epoch after its first batch spent waiting for the workers.

        That is :attr:`starved_seconds`, for batches not built yet: the loader was the
        bottleneck.
        """
        return self._share_after_first(self.starved_seconds)

    def _share_after_first(self, seconds: float) -> float:
        """``seconds`` as a share of the epoch after its first batch (0 before a second one)."""
        after = self.wall_seconds - self.first_wait_seconds
        return min(1.0, max(0.0, seconds / after)) if after > 0 else 0.0

    def record_batch(self, batch: BatchStats) -> None:
        """Add one delivered batch's figures."""
        self.add(batch)
        self.batches += 1
        self.batch_cpu.append(batch.cpu_total)
        self.batch_samples.append(batch.samples)

    @property
    def complete(self) -> bool:
        """Whether every planned batch was delivered."""
        return self.batches == self.planned_batches

    @property
    def samples_per_second(self) -> float:
        """Delivered samples per wall-clock second (0 before the first batch)."""
        return self.samples / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def cpu_ms_per_sample(self) -> dict[str, float]:
        """CPU milliseconds per delivered sample, by stage (cache reads and writes together)."""
        per = 1e3 / self.samples if self.samples else 0.0
        return {
            "load": self.cpu_load * per,
            "partial": self.cpu_partial * per,
            "final": self.cpu_final * per,
            "cache": self.cpu_cache * per,
            "collate": self.cpu_collate * per,
        }

    def __str__(self) -> str:
        """One line for people: what the epoch delivered, how, and what it cost per sample."""
        cut = "" if self.complete else f" of {self.planned_batches} (cut)"
        resumed = f" from batch {self.first_batch}" if self.first_batch else ""
        cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in self.cpu_ms_per_sample().items())
        read = self.bytes_read_memory + self.bytes_read_disk
        r = f" at r={self.reuse_factor}" if self.reuse_factor else ""
        consumer = ""
        if self.wait_seconds or self.step_seconds:
            consumer = (
                f"; consumer waited {self.wait_seconds:.2f} s (start-up "
                f"{self.first_wait_seconds:.2f} s, for the workers "
                f"{self.starved_seconds:.2f} s), stepped {self.step_seconds:.2f} s"
            )
        return (
            f"epoch {self.epoch}: {self.samples} samples in {self.batches} batches{cut}"
            f"{resumed}{r}, {self.samples_per_second:.1f} samples/s; {self.hits} hits, "
            f"{self.planned_misses} planned + {self.unplanned_misses} unplanned misses; cache "
            f"{self.cache_writes} writes ({self.uncached} refused), {_mb(self.bytes_cached)} "
            f"held, {_mb(read)} read, {_mb(self.bytes_written_disk)} written to disk; "
            f"CPU ms/sample: {cpu}{consumer}"
        )

    def __repr__(self) -> str:
        """A short repr: the counts that say where the epoch stands (all of it: :meth:`as_dict`)."""
        return (
            f"EpochStats(epoch={self.epoch}, reuse_factor={self.reuse_factor}, "
            f"batches={self.batches}/{self.planned_batches}, "
            f"samples={self.samples}, hits={self.hits}, planned_misses={self.planned_misses}, "
            f"unplanned_misses={self.unplanned_misses}, "
            f"samples_per_second={self.samples_per_second:.1f})"
        )

    def as_dict(self) -> dict[str, Any]:
        """A flat dict of every figure, derived ones included (for logging and JSON)."""
        out = dataclasses.asdict(self)
        del out["finished_at"]  # a clock reading, not a figure
        out.update(
            misses=self.misses,
            cpu_cache=self.cpu_cache,
            cpu_total=self.cpu_total,
            complete=self.complete,
            samples_per_second=self.samples_per_second,
            measured_rate=self.measured_rate,
            wait_share=self.wait_share,
            starved_share=self.starved_share,
        )
        return out


def _mb(size: int) -> str:
    """``size`` bytes in MB, with a decimal more below 10 MB."""
    return f"{size / 1e6:.1f} MB" if size >= 10**7 else f"{size / 1e6:.2f} MB"


class LoaderStats:
    """Per-epoch statistics of a loader, by epoch number (a re-run epoch replaces the old one)."""

    def __init__(self) -> None:
        self._epochs: dict[int, EpochStats] = {}

    def _start(self, epoch: int, planned_batches: int) -> EpochStats:
        stats = EpochStats(epoch=epoch, planned_batches=planned_batches)
        self._epochs.pop(epoch, None)  # a re-run epoch becomes the most recent one
        self._epochs[epoch] = stats
        return stats

    def __getitem__(self, epoch: int) -> EpochStats:
        try:
            return self._epochs[epoch]
        except KeyError:
            known = sorted(self._epochs)
            raise KeyError(f"no statistics for epoch {epoch}; epochs seen: {known}") from None

    def __iter__(self) -> Iterator[EpochStats]:
        return iter(sorted(self._epochs.values(), key=lambda s: s.epoch))

    def __len__(self) -> int:
        return len(self._epochs)

    @property
    def last(self) -> EpochStats | None:
        """The most recently started epoch, or ``None`` before the first."""
        return next(reversed(self._epochs.values()), None)

    def as_dicts(self) -> list[dict[str, Any]]:
        """Every epoch as a flat dict, in epoch order."""
        return [stats.as_dict() for stats in self]

    def __repr__(self) -> str:
        """A short repr: which epochs are recorded (``str()`` gives the table)."""
        epochs = sorted(self._epochs)
        if not epochs:
            return "LoaderStats(no epoch yet)"
        shown = ", ".join(map(str, epochs)) if len(epochs) <= 6 else f"{epochs[0]}..{epochs[-1]}"
        return f"LoaderStats({len(epochs)} epochs: {shown}; last {self.last!r})"

    def __str__(self) -> str:
        """A table, one line per epoch."""
        lines = [
            "epoch   r  samples  planned_miss  unplanned  hits  samples/s  cpu_s  wait_s  step_s"
            "  cached_MB"
        ]
        for s in self:
            lines.append(
                f"{s.epoch:5d}  {s.reuse_factor or '-':>2}  {s.samples:7d}  {s.planned_misses:12d}"
                f"  {s.unplanned_misses:9d}  {s.hits:4d}  {s.samples_per_second:9.1f}"
                f"  {s.cpu_total:5.1f}  {s.wait_seconds:6.2f}  {s.step_seconds:6.2f}"
                f"  {s.bytes_cached / 1e6:9.1f}"
            )
        return "\n".join(lines)
