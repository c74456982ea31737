"""Turns the per-epoch records of a benchmark into one summary per scenario.

Throughputs are medians over repeats (with the spread, min to max); speed-ups are taken within
each repeat (this scenario against ``standard`` of the same repeat) and then their median is
reported, so a slow phase of the machine affects both sides of a ratio. "Steady state" means
epochs 1 and later. The analytic bound comes from the stage costs measured in the same run:
``standard``'s load, transform and collate costs with this scenario's cache read and write costs
(:mod:`revamper.costmodel`).

Against the references: where the run has a plain DataLoader (``torch``) or a peer (``ffcv``,
``dali``), each scenario's steady samples/s is divided by theirs within each repeat too (and its
epoch 0 by ``torch``'s epoch 0); where it has a ``limit`` scenario on the same pipeline and
cache, a revamper scenario's steady samples/s is divided by the limit's ("of limit": how close
it comes to r -> infinity).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from revamper.bench.harness import BenchOptions, EpochRecord, RunRecord
from revamper.bench.lru import simulate_lru
from revamper.bench.scenarios import Scenario
from revamper.costmodel import StageCosts
from revamper.loader.stats import BatchStats
from revamper.plan import PlanConfig
from revamper.store import store_spec

BASELINE = "standard"
REFERENCES = ("torch", "ffcv", "dali")
"""Scenarios every other one is also compared with, where the run has them."""
LIMIT = "limit"


@dataclasses.dataclass(frozen=True)
class Spread:
    """A median with its min and max over repeats."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        """The spread of ``values``, or ``None`` if there are none."""
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values))


@dataclasses.dataclass(frozen=True)
class ScenarioSummary:
    """What the report says about one scenario.

    Attributes:
        scenario: Scenario name.
        reuse_factor: r.
        epoch0_sps: Epoch 0 samples/s over repeats.
        steady_sps: Steady-state samples/s (median of epochs >= 1 per repeat) over repeats.
        steady_speedup: Steady samples/s divided by ``standard``'s, per repeat.
        epoch0_speedup: Epoch 0 samples/s divided by ``standard``'s, per repeat.
        epoch_seconds: Steady-state epoch wall time over repeats.
        epoch_time_speedup: ``standard``'s steady epoch time divided by this one's, per repeat.
        stall_seconds: Consumer's total wait per steady epoch over repeats.
        wait_ms: Per-batch wait in steady epochs: p50, p95, max (milliseconds).
        wait_cv: Coefficient of variation of the per-batch wait, per steady epoch (median).
        batch_cpu_cv: Coefficient of variation of the CPU time each full batch cost its worker,
            per steady epoch (median): how evenly the plan spreads the work over the steps.
        cpu_ms_per_sample: Steady-state CPU milliseconds per delivered sample, by stage.
        misses_per_epoch: Planned and unplanned misses and hits per steady epoch (medians).
        cache_bytes: Bytes cached at the end of a run (median).
        peak_memory_bytes: Peak memory of all loader processes plus the cache (median).
        bound: Analytic speed-up bound from the measured stage costs (``None`` if unknown).
        fraction_of_bound: Measured steady speed-up divided by ``bound``.
        disk: For a disk cache: the RAM and disk bytes of the cache, and per steady epoch the
            bytes read from the disk tier (as the store counted them, and as the block device
            delivered them) and what an LRU cache the size of the RAM budget would have read.
        diversity: Freshly computed partial augmentations per use in steady epochs (computed
            samples / samples): 1 for standard loading, 1/r at a fixed r; for ``auto``, what
            its chosen r values gave.
        reuse_factors: The r values the steady epochs ran with, in order of first use (for
            ``auto``, what it chose).
        versus: Steady samples/s divided by each reference scenario's (:data:`REFERENCES`)
            present in the run, per repeat, by the reference's name.
        epoch0_versus_torch: Epoch 0 samples/s divided by ``torch``'s epoch 0, per repeat.
        of_limit: Steady samples/s divided by the matching ``limit`` scenario's, per repeat
            (revamper scenarios other than echoing and the limit itself).
        limit: The name of that ``limit`` scenario.
    """

    scenario: str
    reuse_factor: int
    epoch0_sps: Spread | None
    steady_sps: Spread | None
    steady_speedup: Spread | None
    epoch0_speedup: Spread | None
    epoch_seconds: Spread | None
    epoch_time_speedup: Spread | None
    stall_seconds: Spread | None
    wait_ms: dict[str, float]
    wait_cv: float | None
    batch_cpu_cv: float | None
    cpu_ms_per_sample: dict[str, float]
    misses_per_epoch: dict[str, float]
    cache_bytes: float
    peak_memory_bytes: float | None
    bound: float | None
    fraction_of_bound: float | None
    disk: dict[str, float | None] | None = None
    diversity: float | None = None
    reuse_factors: list[int] = dataclasses.field(default_factory=list)
    versus: dict[str, Spread] = dataclasses.field(default_factory=dict)
    epoch0_versus_torch: Spread | None = None
    of_limit: Spread | None = None
    limit: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> ScenarioSummary:
        """Rebuild a summary from :meth:`as_dict` (a ``summary`` line of bench.jsonl)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in fields}
        for name, value in values.items():
            if isinstance(value, dict) and set(value) == {"median", "low", "high"}:
                values[name] = Spread(**value)
        values["versus"] = {k: Spread(**v) for k, v in values.get("versus", {}).items()}
        return cls(**values)


def _steady(run: RunRecord) -> list[EpochRecord]:
    return [e for e in run.epochs if e.epoch >= 1]


def _per_repeat(runs: Sequence[RunRecord], scenario: str) -> dict[int, RunRecord]:
    return {run.repeat: run for run in runs if run.scenario == scenario}


def _median_sps(epochs: Sequence[EpochRecord]) -> float | None:
    return statistics.median(e.samples_per_second for e in epochs) if epochs else None


def _median_wall(epochs: Sequence[EpochRecord]) -> float | None:
    return statistics.median(e.wall_seconds for e in epochs) if epochs else None


def _pooled_stats(epochs: Sequence[EpochRecord]) -> BatchStats:
    total = BatchStats()
    names = {f.name for f in dataclasses.fields(BatchStats)}
    for epoch in epochs:
        total.add(BatchStats(**{k: v for k, v in epoch.stats.items() if k in names}))
    return total


def _ratios(
    mine: Mapping[int, float | None], theirs: Mapping[int, float | None], invert: bool = False
) -> list[float]:
    out = []
    for repeat, value in mine.items():
        other = theirs.get(repeat)
        if value and other:
            out.append(other / value if invert else value / other)
    return out


def _cv(values: Sequence[float]) -> float | None:
    array = np.asarray(values, dtype=np.float64)
    if array.size < 2 or array.mean() <= 0:
        return None
    return float(array.std() / array.mean())


def _median_cv(groups: Sequence[Sequence[float]]) -> float | None:
    # Per epoch, then the median: drift between epochs and repeats does not inflate it.
    cvs = [cv for cv in map(_cv, groups) if cv is not None]
    return statistics.median(cvs) if cvs else None


def _full_batch_cpu(epoch: EpochRecord) -> list[float]:
    cpu, sizes = epoch.stats.get("batch_cpu", []), epoch.stats.get("batch_samples", [])
    full = max(sizes, default=0)
    return [c for c, size in zip(cpu, sizes, strict=True) if size == full]


def _wait_figures(epochs: Sequence[EpochRecord]) -> tuple[dict[str, float], float | None]:
    waits = np.array([w for e in epochs for w in e.waits], dtype=np.float64)
    if waits.size == 0:
        return {}, None
    figures = {
        "p50": float(np.percentile(waits, 50) * 1e3),
        "p95": float(np.percentile(waits, 95) * 1e3),
        "max": float(waits.max() * 1e3),
        "mean": float(waits.mean() * 1e3),
    }
    return figures, _median_cv([e.waits for e in epochs])


def summarize(
    scenarios: Sequence[Scenario],
    runs: Sequence[RunRecord],
    options: BenchOptions | None = None,
) -> list[ScenarioSummary]:
    """One :class:`ScenarioSummary` per scenario, in the given order.

    ``options`` (how the runs were made) enables the disk figures' LRU comparison.
    """
    base_runs = _per_repeat(runs, BASELINE)
    base_steady = {rep: _median_sps(_steady(run)) for rep, run in base_runs.items()}
    base_epoch0 = {rep: run.epochs[0].samples_per_second for rep, run in base_runs.items()}
    base_wall = {rep: _median_wall(_steady(run)) for rep, run in base_runs.items()}
    base_costs = (
        StageCosts.from_stats(_pooled_stats([e for r in base_runs.values() for e in _steady(r)]))
        if base_runs
        else None
    )
    out = []
    for scenario in scenarios:
        mine = _per_repeat(runs, scenario.name)
        if not mine:
            continue
        steady_epochs = [e for run in mine.values() for e in _steady(run)]
        steady = {rep: _median_sps(_steady(run)) for rep, run in mine.items()}
        epoch0 = {rep: run.epochs[0].samples_per_second for rep, run in mine.items()}
        wall = {rep: _median_wall(_steady(run)) for rep, run in mine.items()}
        pooled = _pooled_stats(steady_epochs)
        speedups = _ratios(steady, base_steady) if base_runs else []
        bound = _bound(scenario, base_costs, StageCosts.from_stats(pooled))
        speedup = Spread.of(speedups)
        waits, cv = _wait_figures(steady_epochs)
        samples = max(pooled.samples, 1)
        count = max(len(steady_epochs), 1)
        peaks = [run.peak_memory_bytes for run in mine.values() if run.peak_memory_bytes]
        out.append(
            ScenarioSummary(
                scenario=scenario.name,
                reuse_factor=scenario.reuse_factor,
                epoch0_sps=Spread.of(list(epoch0.values())),
                steady_sps=Spread.of([v for v in steady.values() if v is not None]),
                steady_speedup=speedup,
                epoch0_speedup=Spread.of(_ratios(epoch0, base_epoch0)) if base_runs else None,
                epoch_seconds=Spread.of([v for v in wall.values() if v is not None]),
                epoch_time_speedup=(
                    Spread.of(_ratios(wall, base_wall, invert=True)) if base_runs else None
                ),
                stall_seconds=Spread.of([e.stall_seconds for e in steady_epochs]),
                wait_ms=waits,
                wait_cv=cv,
                batch_cpu_cv=_median_cv([_full_batch_cpu(e) for e in steady_epochs]),
                cpu_ms_per_sample={
                    "load": pooled.cpu_load / samples * 1e3,
                    "partial": pooled.cpu_partial / samples * 1e3,
                    "final": pooled.cpu_final / samples * 1e3,
                    "cache_read": pooled.cpu_cache_read / samples * 1e3,
                    "cache_write": pooled.cpu_cache_write / samples * 1e3,
                    "collate": pooled.cpu_collate / samples * 1e3,
                    "total": pooled.cpu_total / samples * 1e3,
                },
                misses_per_epoch={
                    "planned": pooled.planned_misses / count,
                    "unplanned": pooled.unplanned_misses / count,
                    "hits": pooled.hits / count,
                },
                cache_bytes=statistics.median(run.cache_bytes for run in mine.values()),
                peak_memory_bytes=statistics.median(peaks) if peaks else None,
                bound=bound,
                fraction_of_bound=(speedup.median / bound) if speedup and bound else None,
                disk=_disk_figures(scenario, list(mine.values()), steady_epochs, options),
                diversity=pooled.misses / samples if pooled.samples else None,
                reuse_factors=_reuse_factors(steady_epochs),
            )
        )
    return _with_references(out, scenarios, runs, options)


def _with_references(
    summaries: list[ScenarioSummary],
    scenarios: Sequence[Scenario],
    runs: Sequence[RunRecord],
    options: BenchOptions | None,
) -> list[ScenarioSummary]:
    """Add the ratios against the references and the limit (module docstring)."""
    by_name = {s.name: s for s in scenarios}
    steady = {
        name: {rep: _median_sps(_steady(run)) for rep, run in _per_repeat(runs, name).items()}
        for name in by_name
    }
    epoch0 = {
        name: {
            rep: run.epochs[0].samples_per_second for rep, run in _per_repeat(runs, name).items()
        }
        for name in by_name
    }
    out = []
    for summary in summaries:
        name = summary.scenario
        versus = {
            ref: spread
            for ref in REFERENCES
            if ref in by_name and ref != name
            for spread in [Spread.of(_ratios(steady[name], steady[ref]))]
            if spread is not None
        }
        e0 = Spread.of(_ratios(epoch0[name], epoch0["torch"])) if "torch" in by_name else None
        limit = _limit_of(by_name[name], scenarios, options)
        of_limit = None if limit is None else Spread.of(_ratios(steady[name], steady[limit.name]))
        out.append(
            dataclasses.replace(
                summary,
                versus=versus,
                epoch0_versus_torch=None if name == "torch" else e0,
                of_limit=of_limit,
                limit=None if limit is None else limit.name,
            )
        )
    return out


def _limit_of(
    scenario: Scenario, scenarios: Sequence[Scenario], options: BenchOptions | None
) -> Scenario | None:
    """The ``limit`` scenario on ``scenario``'s pipeline and cache (``None``: none, or n/a).

    Echoing reuses the final transform's output too, so this limit is not its own; a peer or a
    plain DataLoader caches nothing.
    """
    variant = scenario.variant
    if variant is None or variant.name in (LIMIT, "echo"):
        return None
    default = options.cache if options is not None else None

    def cache(s: Scenario) -> str | None:
        return s.cache or default

    candidates = [
        s
        for s in scenarios
        if s.kind == LIMIT
        and s.pipeline == scenario.pipeline
        and (not scenario.caches or cache(s) == cache(scenario))
    ]
    candidates.sort(key=lambda s: (s.fused != scenario.fused, s.cache is not None))
    return candidates[0] if candidates else None


def _reuse_factors(epochs: Sequence[EpochRecord]) -> list[int]:
    """The distinct r the epochs ran with, in order of first use (0: not recorded)."""
    seen: list[int] = []
    for epoch in epochs:
        r = int(epoch.stats.get("reuse_factor", 0) or 0)
        if r and r not in seen:
            seen.append(r)
    return seen


def _disk_figures(
    scenario: Scenario,
    runs: Sequence[RunRecord],
    steady: Sequence[EpochRecord],
    options: BenchOptions | None,
) -> dict[str, float | None] | None:
    cache = scenario.cache or (options.cache if options is not None else None)
    if not scenario.caches or cache is None or not store_spec(cache).persistent:
        return None
    run = runs[0]
    disk_bytes = statistics.median(r.cache_bytes - r.ram_bytes for r in runs)
    blocks = [e.block_read_bytes for e in steady if e.block_read_bytes is not None]
    lru = None
    if options is not None and options.cache_bytes is not None and run.entries:
        config = PlanConfig(
            num_samples=run.epochs[0].samples,
            reuse_factor=scenario.reuse_factor,
            batch_size=options.batch_size,
            seed=options.seed,
            balance_misses=scenario.variant is None or scenario.variant.balances_misses,
        )
        replay = simulate_lru(
            config, options.epochs, run.cache_bytes / run.entries, options.cache_bytes
        )
        lru = statistics.median(replay[1:])
    return {
        "ram_bytes": statistics.median(r.ram_bytes for r in runs),
        "disk_bytes": disk_bytes,
        "read_per_epoch": statistics.median(e.stats["bytes_read_disk"] for e in steady),
        "block_read_per_epoch": statistics.median(blocks) if blocks else None,
        "lru_read_per_epoch": lru,
    }


def _bound(scenario: Scenario, base: StageCosts | None, own: StageCosts) -> float | None:
    variant = scenario.variant
    # A fused scenario's stages differ from the unfused standard run the base costs come from.
    # So do those of a scenario that runs a pipeline of its own.
    if base is None or variant is None or scenario.fused or scenario.pipeline is not None:
        return None
    return variant.speed_bound(base.with_cache_costs(own), scenario.reuse_factor)
