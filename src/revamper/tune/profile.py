"""Measure a pipeline on real items: CPU cost per step, and the cached entry at every split.

For each measured item, :func:`profile_pipeline` reads it from the data set, runs the steps one
by one and times each with the thread's own CPU clock (``time.thread_time``, what the loader's
per-stage statistics use), with torch on one thread as in a DataLoader worker. Then, for every
candidate split point, the *partially augmented sample* (the item with the first ``k`` steps
applied to its input, target and other fields included, exactly what the loader caches) is
written to a real cache store and later read back, timing both: the store's costs are measured,
not guessed, on entries of that split's real size. (The cache work comes after all the steps of
an item, so that writing a large entry does not evict the data the next step works on.)

Writes replace an existing entry (as in steady state, where a recomputed sample overwrites the
entry it replaces) and reads happen after a batch of other entries was written (so the entry is
no longer in the CPU's caches, as in a loader). Items are read twice and the second read is
timed: the cost of ``load`` assumes a warm page cache, as ``revamper bench`` does.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from revamper.loader.dataset_reads import read_item
from revamper.loader.layout import SampleLayout
from revamper.pipelines import Pipeline
from revamper.store import codec, make_store, record
from revamper.store.base import MISS, CacheStore
from revamper.tune.sampling import isolated_rng, sample_indices, single_thread
from revamper.tune.steps import candidate_splits

logger = logging.getLogger(__name__)

Statistic = Literal["mean", "median"]
_now = time.thread_time
_CHUNK = 25  # items whose entries are held at once (bounds the store's memory)


class ProfileError(RuntimeError):
    """An item could not be read or a step failed on it while profiling."""


@dataclasses.dataclass(frozen=True)
class Cost:
    """CPU seconds per item of one stage, summarised over the measured items.

    Attributes:
        median: The typical item's cost (robust to outliers).
        mean: The average cost (what throughput depends on).
        count: How many measurements.
    """

    median: float
    mean: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Cost:
        """Summarise ``values`` (an empty sequence gives zeros)."""
        if not values:
            return cls(0.0, 0.0, 0)
        return cls(statistics.median(values), statistics.fmean(values), len(values))

    @classmethod
    def fixed(cls, seconds: float) -> Cost:
        """A cost known exactly (for hand-built profiles)."""
        return cls(seconds, seconds, 1)

    def value(self, statistic: Statistic) -> float:
        """The ``mean`` or the ``median``."""
        return self.mean if statistic == "mean" else self.median


@dataclasses.dataclass(frozen=True)
class StepProfile:
    """One step of the pipeline.

    Attributes:
        name: The step's name.
        cost: Its CPU seconds per item.
    """

    name: str
    cost: Cost


@dataclasses.dataclass(frozen=True)
class SplitProfile:
    """The cached entry of one split point (after ``split`` steps).

    Attributes:
        split: Number of leading steps in the cached part.
        entry_bytes: Mean size of one entry in the store (record header and padding included).
        put: CPU seconds of one cache write (encoding included), replacing an older entry.
        get: CPU seconds of one cache read (decoding included).
    """

    split: int
    entry_bytes: float
    put: Cost
    get: Cost


@dataclasses.dataclass(frozen=True)
class PipelineProfile:
    """What profiling measured.

    Attributes:
        pipeline: The pipeline's name.
        load: CPU seconds to read one item from the data set.
        steps: Each step's cost, in order.
        splits: The entry sizes and cache costs at every candidate split.
        items: How many items were measured.
        num_samples: Size of the whole data set.
    """

    pipeline: str
    load: Cost
    steps: tuple[StepProfile, ...]
    splits: tuple[SplitProfile, ...]
    items: int
    num_samples: int

    @property
    def step_names(self) -> list[str]:
        """The step names, in order."""
        return [step.name for step in self.steps]

    def split(self, split: int) -> SplitProfile:
        """The profile of split point ``split``.

        Raises:
            KeyError: If that split was not profiled.
        """
        for profile in self.splits:
            if profile.split == split:
                return profile
        raise KeyError(f"split {split} was not profiled; profiled: {self.split_points}")

    @property
    def split_points(self) -> list[int]:
        """The profiled split points."""
        return [profile.split for profile in self.splits]

    def partial_cost(self, split: int, statistic: Statistic = "mean") -> float:
        """CPU seconds of the first ``split`` steps."""
        return sum(step.cost.value(statistic) for step in self.steps[:split])

    def final_cost(self, split: int, statistic: Statistic = "mean") -> float:
        """CPU seconds of the steps after the first ``split``."""
        return sum(step.cost.value(statistic) for step in self.steps[split:])

    def describe_split(self, split: int) -> str:
        """``"decode, crop | flip, to_tensor"``: where the split falls."""
        names = self.step_names
        head = ", ".join(names[:split]) or "(nothing)"
        tail = ", ".join(names[split:]) or "(nothing)"
        return f"{head} | {tail}"


def entry_size(value: Any) -> int:
    """Bytes the store needs for ``value`` (a partially augmented sample), header included.

    Sizing encodes with pickle allowed: a value only the pickle fallback can hold still has a
    size (whether the chosen store may pickle it is the loader's ``allow_pickle``).
    """
    return record.record_size(codec.encode(value, allow_pickle=True))


def _fail(what: str, index: int, exc: BaseException) -> ProfileError:
    return ProfileError(f"{what} failed on item {index}: {type(exc).__name__}: {exc}")


class _Recorder:
    """Per-step and per-split measurements, accumulated item by item."""

    def __init__(self, num_steps: int, splits: Sequence[int]) -> None:
        self.load: list[float] = []
        self.steps: list[list[float]] = [[] for _ in range(num_steps)]
        self.sizes: dict[int, list[int]] = {k: [] for k in splits}
        self.puts: dict[int, list[float]] = {k: [] for k in splits}
        self.gets: dict[int, list[float]] = {k: [] for k in splits}


def profile_pipeline(
    dataset: Any,
    pipeline: Pipeline,
    *,
    items: int = 100,
    seed: int = 0,
    whole_sample: bool = False,
    store_factory: Callable[[], CacheStore] | None = None,
) -> PipelineProfile:
    """Measure every step's CPU cost and the cached entry at every split point.

    Args:
        dataset: A map-style data set whose items the pipeline takes (as the loader applies it:
            to the first element of a tuple item, or to the whole item with ``whole_sample``).
        pipeline: The full pipeline as steps (see :func:`~revamper.tune.steps.as_pipeline`).
        items: How many items to measure (drawn with ``seed``; all of them if the data set is
            smaller). 50 to 200 give stable medians.
        seed: Seed of the item draw and of the transforms' randomness.
        whole_sample: Apply the steps to whole items, as the loader's ``whole_sample``.
        store_factory: Makes the cache store to measure (default: the registry's ``"memory"``
            kind, the loader's default).

    Returns:
        The measurements.

    Raises:
        ProfileError: If reading an item or a step fails.
    """
    indices = sample_indices(len(dataset), items, seed)
    splits = candidate_splits(pipeline)
    layout = SampleLayout(whole_sample)
    recorder = _Recorder(len(pipeline.steps), splits)
    store = store_factory() if store_factory is not None else make_store("memory")
    try:
        with isolated_rng(seed), single_thread():
            _warm_up(dataset, pipeline, layout, indices[0])
            for start in range(0, len(indices), _CHUNK):
                chunk = indices[start : start + _CHUNK]
                keys = [
                    _measure_item(dataset, pipeline, layout, index, store, recorder, start + n)
                    for n, index in enumerate(chunk)
                ]
                _measure_reads(store, keys, recorder)
    finally:
        store.close()
    profile = PipelineProfile(
        pipeline=pipeline.name,
        load=Cost.of(recorder.load),
        steps=tuple(
            StepProfile(name, Cost.of(costs))
            for name, costs in zip(pipeline.step_names, recorder.steps, strict=True)
        ),
        splits=tuple(
            SplitProfile(
                split=k,
                entry_bytes=statistics.fmean(recorder.sizes[k]),
                put=Cost.of(recorder.puts[k]),
                get=Cost.of(recorder.gets[k]),
            )
            for k in splits
        ),
        items=len(indices),
        num_samples=len(dataset),
    )
    logger.info("profiled %d items of %s: %s", len(indices), pipeline.name, _summary(profile))
    return profile


def _summary(profile: PipelineProfile) -> str:
    parts = [f"load {profile.load.median * 1e3:.2f} ms"]
    parts += [f"{s.name} {s.cost.median * 1e3:.2f} ms" for s in profile.steps]
    return ", ".join(parts)


def _warm_up(dataset: Any, pipeline: Pipeline, layout: SampleLayout, index: int) -> None:
    # First calls pay for lazy imports and allocations that later items do not.
    try:
        value = read_item(dataset, index)
    except Exception as exc:
        raise _fail("reading the item", index, exc) from exc
    for name, step in pipeline.steps:
        try:
            value = layout.apply(index, value, step)
        except Exception as exc:
            raise _fail(f"step {name!r}", index, exc) from exc


def _measure_item(
    dataset: Any,
    pipeline: Pipeline,
    layout: SampleLayout,
    index: int,
    store: CacheStore,
    recorder: _Recorder,
    position: int,
) -> list[tuple[int, int]]:
    """Run one item through the steps; returns the ``(store key, split)`` pairs it wrote."""
    try:
        read_item(dataset, index)  # the page cache, as after a warm-up
        start = _now()
        value = read_item(dataset, index)
        recorder.load.append(_now() - start)
    except Exception as exc:
        raise _fail("reading the item", index, exc) from exc
    values = [value]
    for name, step in pipeline.steps:
        start = _now()
        try:
            value = layout.apply(index, value, step)
        except Exception as exc:
            raise _fail(f"step {name!r}", index, exc) from exc
        recorder.steps[len(values) - 1].append(_now() - start)
        values.append(value)
    # The cache work comes after the steps, so that it does not evict their data from the CPU
    # caches between two steps (which the loader never does).
    written: list[tuple[int, int]] = []
    stride = len(pipeline.steps) + 1
    for k, partial in enumerate(values):
        if k not in recorder.sizes:
            continue
        key = position * stride + k
        recorder.sizes[k].append(entry_size(partial))
        store.put(key, 0, partial)  # the entry a steady-state write replaces
        start = _now()
        stored = store.put(key, 1, partial)
        recorder.puts[k].append(_now() - start)
        if stored:
            written.append((key, k))
        else:
            logger.warning("the store did not keep a profiling entry of split %d", k)
    return written


def _measure_reads(
    store: CacheStore, keys: Sequence[list[tuple[int, int]]], recorder: _Recorder
) -> None:
    for item_keys in keys:
        for key, split in item_keys:
            start = _now()
            value = store.get(key, 1)
            recorder.gets[split].append(_now() - start)
            if value is MISS:
                logger.warning("a profiling entry of split %d could not be read back", split)
            store.evict(key)
