"""Predicted loader throughput, cache size and diversity of every (split, reuse factor).

**CPU per sample in the workers** is DESIGN section 3's cost model
(:class:`~revamper.costmodel.StageCosts`) with every term measured: ``load``, the partial and
final parts summed from the per-step costs, the store's ``get`` and ``put`` measured on real
entries of that split, and the loader machinery's cost in the workers (collation and hand-off,
:mod:`revamper.tune.overhead`) in the place of ``collate``.
At ``r = 1`` nothing is cached: that is standard loading, whatever the split.

**Wall time of an epoch** then follows from how the work spreads over processes and cores. Batches
go to the workers in turn, so the busiest worker makes the largest share of the samples (the
others wait for it at the end of the epoch); a worker gets a whole core only while there are no
more workers than cores; without a spare core, the main process's work (receiving batches) is
spread over the workers' cores and delays them; and everything must fit in the usable cores. The
epoch takes the longest of::

    busiest worker:   samples_of_busiest * worker_cpu * max(1, workers / cores)
                      (+ N * main_cpu / cores when workers >= cores)
    all the CPU work: N * (worker_cpu + main_cpu) / cores
    the main process: N * main_cpu

With no workers the main process does it all: ``N * (worker_cpu + main_cpu)``. Throughput is
``N`` over that, times the efficiency a short real run measured (a real loader loses a few per
cent at epoch boundaries). Other processes competing for the same cores are not modelled.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from revamper.costmodel import StageCosts
from revamper.tune.diversity import REUSE_FACTORS, DiversityProfile
from revamper.tune.overhead import Overhead
from revamper.tune.profile import PipelineProfile, Statistic


@dataclasses.dataclass(frozen=True)
class Parallelism:
    """How many worker processes run, on how many cores: the assumption behind a prediction.

    Attributes:
        num_workers: DataLoader worker processes (0: everything in the main process).
        cores: CPU cores the loader may use.
    """

    num_workers: int
    cores: int

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {self.num_workers}")
        if self.cores < 1:
            raise ValueError(f"cores must be at least 1, got {self.cores}")

    def describe(self) -> str:
        """The assumption in plain words."""
        w, c = self.num_workers, self.cores
        cores = f"{c} usable core{'s' if c != 1 else ''}"
        if w == 0:
            return f"no worker processes: the main process does all the work on one of {cores}"
        workers = f"{w} worker{'s' if w != 1 else ''}"
        if w < c:
            return f"{workers} on {cores}: a core each, the main process on a spare one"
        if w == c:
            return f"{workers} on {cores}: a core each, the main process shares them"
        return f"{workers} share {cores} (time-sliced), with the main process"


def stage_costs(
    profile: PipelineProfile, overhead: Overhead, split: int, statistic: Statistic = "mean"
) -> StageCosts:
    """The cost model's per-sample costs for a split after ``split`` steps.

    The machinery's cost in the workers takes ``collate``'s place (it includes collation).
    """
    cached = profile.split(split)
    return StageCosts(
        load=profile.load.value(statistic),
        partial=profile.partial_cost(split, statistic),
        final=profile.final_cost(split, statistic),
        collate=overhead.worker if overhead.num_workers > 0 else 0.0,
        get=cached.get.value(statistic),
        put=cached.put.value(statistic),
    )


def batch_sizes(num_samples: int, batch_size: int) -> list[int]:
    """Sizes of an epoch's batches (the last one may be short)."""
    full, rest = divmod(num_samples, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def epoch_seconds(
    worker_cpu: float,
    main_cpu: float,
    parallelism: Parallelism,
    num_samples: int,
    batch_size: int,
) -> float:
    """Predicted wall seconds of one epoch (see the module docstring).

    Args:
        worker_cpu: CPU seconds per sample in a worker (or, with no workers, for the stages).
        main_cpu: CPU seconds per sample in the main process.
        parallelism: Workers and cores.
        num_samples: Samples per epoch.
        batch_size: Samples per batch.
    """
    n, w, c = num_samples, parallelism.num_workers, parallelism.cores
    if w == 0:
        return n * (worker_cpu + main_cpu)
    sizes = batch_sizes(n, batch_size)
    busiest = max(sum(sizes[j::w]) for j in range(min(w, len(sizes))))
    workers = busiest * worker_cpu * max(1.0, w / c)
    if w >= c:  # no spare core: the main process's work takes its share of the workers' cores
        workers += n * main_cpu / c
    return max(workers, n * (worker_cpu + main_cpu) / c, n * main_cpu)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One (split, reuse factor) configuration and what is predicted for it.

    Attributes:
        split: Leading steps in the cached part (0 with ``reuse_factor`` 1: standard loading).
        reuse_factor: ``r``; 1 caches nothing.
        description: ``"decode, crop | flip, to_tensor"``, or ``"standard (no cache)"``.
        samples_per_second: Predicted steady-state loader throughput.
        speedup: That throughput over standard loading's.
        worker_cpu: Predicted CPU seconds per sample in the workers (stages and machinery).
        cache_bytes: Bytes the cache holds for the whole data set (0 at ``r`` = 1).
        diversity_formula: Normalised diversity from the paper's formula, with ``|A|`` and
            ``|A_F|`` estimated from the measured distinct outputs.
        diversity_measured: Distinct outputs among ``r`` uses of a cached sample, over
            standard's distinct outputs among ``r`` uses of the full pipeline.
    """

    split: int
    reuse_factor: int
    description: str
    samples_per_second: float
    speedup: float
    worker_cpu: float
    cache_bytes: int
    diversity_formula: float
    diversity_measured: float

    @property
    def diversity(self) -> float:
        """The figure the choice uses: the lower (more cautious) of the two estimates."""
        return min(self.diversity_formula, self.diversity_measured)

    @property
    def is_standard(self) -> bool:
        """Whether this is standard loading (nothing cached)."""
        return self.reuse_factor == 1

    @property
    def label(self) -> str:
        """``"standard"`` or ``"split 2, r=3"``."""
        return "standard" if self.is_standard else f"split {self.split}, r={self.reuse_factor}"


def predict(
    profile: PipelineProfile,
    diversity: DiversityProfile,
    overhead: Overhead,
    parallelism: Parallelism,
    *,
    batch_size: int,
    reuse_factors: Sequence[int] = REUSE_FACTORS,
    statistic: Statistic = "mean",
    refurbish_factor: float = 1.0,
    efficiency: float = 1.0,
) -> list[Candidate]:
    """Predict every configuration: standard first, then each split at each ``r`` above 1.

    Args:
        profile: Per-step costs and per-split cache figures.
        diversity: Measured distinct outputs per split.
        overhead: The loader machinery's cost per sample.
        parallelism: Workers and cores assumed.
        batch_size: Samples per batch.
        reuse_factors: The ``r`` values to consider (1 is always included, as standard).
        statistic: Which summary of the measured costs to use; throughput depends on the
            ``mean`` (the default), the ``median`` ignores rare expensive items.
        refurbish_factor: What the stages of a cached configuration cost in a real loader over
            what the profile predicts (see :mod:`revamper.tune.verify`); 1 for none.
        efficiency: The share of the model's throughput a real loader reaches (epoch start and
            end, waits for the main process; see :mod:`revamper.tune.verify`); 1 for none.
    """
    n = profile.num_samples
    main = overhead.main

    def throughput(worker_cpu: float) -> float:
        return efficiency * n / epoch_seconds(worker_cpu, main, parallelism, n, batch_size)

    first = profile.split_points[0]
    standard_cpu = stage_costs(profile, overhead, first, statistic).standard()
    standard_sps = throughput(standard_cpu)
    out = [
        Candidate(
            split=0,
            reuse_factor=1,
            description="standard (no cache)",
            samples_per_second=standard_sps,
            speedup=1.0,
            worker_cpu=standard_cpu,
            cache_bytes=0,
            diversity_formula=1.0,
            diversity_measured=1.0,
        )
    ]
    for split in profile.split_points:
        costs = stage_costs(profile, overhead, split, statistic)
        entry = profile.split(split).entry_bytes
        for r in sorted(set(reuse_factors) - {1}):
            cpu = (costs.refurbishing(r) - costs.collate) * refurbish_factor + costs.collate
            sps = throughput(cpu)
            out.append(
                Candidate(
                    split=split,
                    reuse_factor=r,
                    description=profile.describe_split(split),
                    samples_per_second=sps,
                    speedup=sps / standard_sps,
                    worker_cpu=cpu,
                    cache_bytes=math.ceil(entry * n),
                    diversity_formula=diversity.formula(split, r),
                    diversity_measured=diversity.measured(split, r),
                )
            )
    return out
