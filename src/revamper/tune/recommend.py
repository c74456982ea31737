"""``recommend``: measure a pipeline on a data set and say where to split it and which ``r`` to use.

It profiles every step (:mod:`~revamper.tune.profile`), measures each candidate final part's
diversity (:mod:`~revamper.tune.diversity`), calibrates the loader machinery's own cost
(:mod:`~revamper.tune.overhead`), predicts every (split, r) (:mod:`~revamper.tune.predict`) and
picks the fastest that keeps enough diversity and fits the memory budget
(:mod:`~revamper.tune.choice`), after a short real run of the best cached configuration
(:mod:`~revamper.tune.verify`). The :class:`~revamper.tune.recommendation.Recommendation` carries
the two transforms to give the loader, the full table, and its ``explain()``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from revamper.loader.layout import Transform
from revamper.pipelines import Pipeline
from revamper.store.base import CacheStore
from revamper.tune.choice import choose
from revamper.tune.diversity import REUSE_FACTORS, measure_diversity
from revamper.tune.machine import BusyMeter, usable_cores
from revamper.tune.overhead import calibrate_overhead
from revamper.tune.predict import Candidate, Parallelism, epoch_seconds, predict, stage_costs
from revamper.tune.profile import Statistic, profile_pipeline
from revamper.tune.recommendation import BUSY_CORES, Measurements, Recommendation
from revamper.tune.steps import as_pipeline
from revamper.tune.verify import MIN_EFFICIENCY, measure_refurbishing, stage_cost

logger = logging.getLogger(__name__)

_Counts = dict[str, tuple[int | None, int]]
"""Whole-number arguments to check: name -> (value or ``None`` for unset, the least allowed)."""


def measure(
    dataset: Any,
    pipeline: Pipeline,
    *,
    num_workers: int,
    batch_size: int,
    items: int = 100,
    diversity_samples: int = 5,
    draws: int = 60,
    reuse_factors: Sequence[int] = REUSE_FACTORS,
    whole_sample: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int = 0,
    store_factory: Callable[[], CacheStore] | None = None,
    multiprocessing_context: Any = None,
) -> Measurements:
    """Profile the steps, measure diversity and calibrate the loader overhead.

    See :func:`recommend` for the arguments.
    """
    with BusyMeter() as meter:
        profile = profile_pipeline(
            dataset,
            pipeline,
            items=items,
            seed=seed,
            whole_sample=whole_sample,
            store_factory=store_factory,
        )
        diversity = measure_diversity(
            dataset,
            pipeline,
            samples=diversity_samples,
            draws=draws,
            seed=seed,
            whole_sample=whole_sample,
            reuse_factors=reuse_factors,
        )
        overhead = calibrate_overhead(
            dataset,
            pipeline.full(),
            batch_size=batch_size,
            num_workers=num_workers,
            whole_sample=whole_sample,
            collate_fn=collate_fn,
            seed=seed,
            multiprocessing_context=multiprocessing_context,
        )
    if meter.other_cores is not None and meter.other_cores > BUSY_CORES:
        logger.warning(
            "other processes kept %.1f cores busy while revamper measured the pipeline; the "
            "measured costs may be inflated (measure again when the machine is quiet)",
            meter.other_cores,
        )
    return Measurements(profile, diversity, overhead, meter.other_cores)


def recommend_from(
    pipeline: Pipeline,
    measurements: Measurements,
    *,
    parallelism: Parallelism,
    batch_size: int,
    budget_bytes: int | None = None,
    min_diversity: float = 0.9,
    reuse_factors: Sequence[int] = REUSE_FACTORS,
    tolerance: float = 0.02,
    statistic: Statistic = "mean",
) -> Recommendation:
    """Predict every configuration from ``measurements`` and choose one (no measuring).

    See :func:`recommend` for the arguments.
    """
    candidates = predict(
        measurements.profile,
        measurements.diversity,
        measurements.overhead,
        parallelism,
        batch_size=batch_size,
        reuse_factors=reuse_factors,
        statistic=statistic,
        refurbish_factor=measurements.refurbish_factor,
        efficiency=measurements.efficiency,
    )
    chosen, verdicts = choose(
        candidates, min_diversity=min_diversity, budget_bytes=budget_bytes, tolerance=tolerance
    )
    if chosen.is_standard:
        partial: Transform | None = None
        final: Transform | None = pipeline.full()
    else:
        partial, final = pipeline.split(chosen.split)
    recommendation = Recommendation(
        partial_transform=partial,
        final_transform=final,
        reuse_factor=chosen.reuse_factor,
        split=chosen.split,
        samples_per_second=chosen.samples_per_second,
        speedup=chosen.speedup,
        cache_bytes=chosen.cache_bytes,
        diversity=chosen.diversity,
        diversity_formula=chosen.diversity_formula,
        diversity_measured=chosen.diversity_measured,
        candidates=tuple(candidates),
        verdicts=tuple(verdicts),
        parallelism=parallelism,
        batch_size=batch_size,
        num_samples=measurements.profile.num_samples,
        min_diversity=min_diversity,
        budget_bytes=budget_bytes,
        pipeline=pipeline.name,
        step_names=tuple(pipeline.step_names),
        measurements=measurements,
        fixed_split=pipeline.fixed_split,
    )
    logger.info("recommendation: %s", recommendation.explain().splitlines()[0])
    return recommendation


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def recommend(
    dataset: Any,
    transforms: Any,
    *,
    budget_bytes: int | None = None,
    min_diversity: float = 0.9,
    num_workers: int = 0,
    batch_size: int = 1,
    cores: int | None = None,
    items: int = 100,
    diversity_samples: int = 5,
    draws: int = 60,
    reuse_factors: Sequence[int] = REUSE_FACTORS,
    whole_sample: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int = 0,
    tolerance: float = 0.02,
    statistic: Statistic = "mean",
    store_factory: Callable[[], CacheStore] | None = None,
    multiprocessing_context: Any = None,
    check: bool = True,
) -> Recommendation:
    """Measure ``transforms`` on ``dataset`` and recommend a split point and reuse factor.

    The recommendation is the fastest predicted configuration with diversity at least
    ``min_diversity`` of standard's and a cache within ``budget_bytes`` (within ``tolerance`` of
    the fastest, the more diverse, then the smaller, wins). Measuring takes seconds: the pipeline
    a few hundred times, then two short loader runs with ``num_workers`` workers (calibration;
    a check of the best cached choice). Global random states are left as they were.

    Args:
        dataset: A map-style data set, as the loader will get it.
        transforms: The full augmentation pipeline: a list of callables, a torchvision
            ``Compose``, a ``torch.nn.Sequential`` or a :class:`~revamper.pipelines.Pipeline`.
        budget_bytes: Most bytes the cache may hold (``None``: no limit).
        min_diversity: Lowest acceptable diversity, as a fraction of standard's (0 to 1).
        num_workers: DataLoader worker processes the loader will use.
        batch_size: Its batch size.
        cores: CPU cores available to the loader (default: what this process may use).
        items: Items to profile (CPU costs and cache entries).
        diversity_samples: Items whose cached samples are used for the diversity count.
        draws: Uses of each cached sample in the diversity count.
        reuse_factors: The ``r`` values to consider.
        whole_sample: Transforms take whole items (as the loader's ``whole_sample``).
        collate_fn: The loader's ``collate_fn`` (default: torch's ``default_collate``).
        seed: Seed of the items measured and of the transforms' randomness while measuring.
        tolerance: Relative throughput difference below which configurations tie.
        statistic: ``"mean"`` (default: throughput depends on average costs) or ``"median"``.
        store_factory: Makes the cache store to measure (default: the loader's memory store).
        multiprocessing_context: As the loader's (for the calibration and check runs).
        check: Correct the cached predictions by a short real run (:mod:`revamper.tune.verify`).

    Returns:
        The recommendation, with the full table and an explanation.

    Raises:
        UnsplittableError: If ``transforms`` is one opaque callable.
        ProfileError: If a step fails on an item.
        TypeError: For an argument of the wrong type.
        ValueError: For an argument out of range.
    """
    counts: _Counts = {"num_workers": (num_workers, 0), "batch_size": (batch_size, 1)}
    counts.update(items=(items, 1), diversity_samples=(diversity_samples, 1), draws=(draws, 1))
    counts.update(seed=(seed, 0), cores=(cores, 1), budget_bytes=(budget_bytes, 0))
    factors = _checked_arguments(counts, min_diversity, reuse_factors, statistic)
    pipeline = as_pipeline(transforms)
    runs: dict[str, Any] = {"num_workers": num_workers, "batch_size": batch_size, "seed": seed}
    runs.update(whole_sample=whole_sample, collate_fn=collate_fn)
    runs.update(multiprocessing_context=multiprocessing_context)
    measurements = measure(
        dataset,
        pipeline,
        items=items,
        diversity_samples=diversity_samples,
        draws=max(draws, max(factors)),
        reuse_factors=factors,
        store_factory=store_factory,
        **runs,
    )
    parallelism = Parallelism(num_workers, cores if cores is not None else usable_cores())
    decide = functools.partial(
        recommend_from,
        pipeline,
        parallelism=parallelism,
        batch_size=batch_size,
        budget_bytes=budget_bytes,
        min_diversity=min_diversity,
        reuse_factors=factors,
        tolerance=tolerance,
        statistic=statistic,
    )
    first = decide(measurements)
    target = _best_cached(first) if check else None
    if target is None:
        return first
    checked = _checked_by_a_real_run(
        dataset, pipeline, measurements, target, parallelism, statistic=statistic, **runs
    )
    return first if checked is None else decide(checked)


def _checked_arguments(
    counts: _Counts,
    min_diversity: float,
    reuse_factors: Sequence[int],
    statistic: str,
) -> list[int]:
    """Check :func:`recommend`'s arguments; return the reuse factors to consider (1 included).

    ``counts`` maps a name to ``(value, minimum)``; a ``None`` value is not checked.
    """
    for name, (value, minimum) in counts.items():
        if value is not None:
            _check_int(name, value, minimum)
    if not 0 <= min_diversity <= 1:
        raise ValueError(f"min_diversity must be between 0 and 1, got {min_diversity}")
    factors = sorted({_check_int("reuse factor", r, 1) for r in reuse_factors} | {1})
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    return factors


def _checked_by_a_real_run(
    dataset: Any,
    pipeline: Pipeline,
    measurements: Measurements,
    target: Candidate,
    parallelism: Parallelism,
    *,
    statistic: Statistic,
    batch_size: int,
    num_workers: int,
    whole_sample: bool,
    collate_fn: Callable[[list[Any]], Any] | None,
    seed: int,
    multiprocessing_context: Any,
) -> Measurements | None:
    """``measurements`` corrected by a short real run of ``target`` (``None``: it could not run).

    The run's stage costs over the profiled ones give the factor for every cached configuration;
    its wall time over the modelled one gives the loader's efficiency.
    """
    partial, final = pipeline.split(target.split)
    real = measure_refurbishing(
        dataset,
        partial,
        final,
        reuse_factor=target.reuse_factor,
        batch_size=batch_size,
        num_workers=num_workers,
        whole_sample=whole_sample,
        collate_fn=collate_fn,
        seed=seed,
        multiprocessing_context=multiprocessing_context,
    )
    if real is None:
        return None
    r = target.reuse_factor
    overhead = measurements.overhead
    profiled = stage_costs(measurements.profile, overhead, target.split, statistic)
    factor = stage_cost(real.costs, r) / stage_cost(profiled, r)
    worker = stage_cost(real.costs, r) + (overhead.worker if num_workers > 0 else 0.0)
    modelled = epoch_seconds(worker, overhead.main, parallelism, real.samples, batch_size)
    efficiency = min(max(modelled / real.wall_seconds, MIN_EFFICIENCY), 1.0)
    logger.info(
        "check run of split %d, r=%d: stages cost %.2fx their profiled time in the loader, "
        "which reached %.0f%% of the modelled speed",
        target.split,
        r,
        factor,
        efficiency * 100,
    )
    return dataclasses.replace(
        measurements,
        refurbish_factor=factor,
        efficiency=efficiency,
        checked=(target.split, r),
    )


def _best_cached(recommendation: Recommendation) -> Candidate | None:
    """The fastest cached configuration that meets the constraints, if there is one."""
    allowed = [
        c
        for c, v in zip(recommendation.candidates, recommendation.verdicts, strict=True)
        if not c.is_standard and v.kind in ("chosen", "slower", "tie")
    ]
    return max(allowed, key=lambda c: c.samples_per_second, default=None)
