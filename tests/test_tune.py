"""revamper.tune: profiling, diversity, the paper's formula, the choice, and from_pipeline."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import transforms as T

from revamper import RevamperLoader
from revamper.pipelines import Pipeline
from revamper.tune import (
    BusyMeter,
    Cost,
    DiversityProfile,
    Measurements,
    Overhead,
    Parallelism,
    PipelineProfile,
    SplitDiversity,
    SplitProfile,
    StepProfile,
    UnsplittableError,
    as_pipeline,
    calibrate_overhead,
    count_distinct,
    epoch_seconds,
    estimate_outcomes,
    fingerprint,
    measure_diversity,
    paper_diversity,
    profile_pipeline,
    recommend,
    recommend_from,
)
from revamper.tune.diversity import unique_echoing, unique_refurbishing, unique_standard


# -- a tiny synthetic pipeline whose costs and outputs we control -------------------------------
class ArrayDataset(torch.utils.data.Dataset[tuple[np.ndarray, int]]):
    """Item i is ``(an 8x8 uint8 array, i % 3)``."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return np.full((8, 8), index % 256, dtype=np.uint8), index % 3


class Busy:
    """Spends ``ms`` of CPU time, then returns its input."""

    def __init__(self, ms: float) -> None:
        self.ms = ms

    def __call__(self, x: Any) -> Any:
        end = time.thread_time() + self.ms / 1e3
        while time.thread_time() < end:
            pass
        return x


def trivial(x: np.ndarray) -> np.ndarray:
    return x


def grow(x: np.ndarray) -> np.ndarray:
    """Makes the sample 16x bigger (a bigger cache entry after this step)."""
    return np.tile(x, (4, 4))


def shrink(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x[:8, :8])


def one_of_four(x: np.ndarray) -> np.ndarray:
    """A final step with exactly four outcomes."""
    return np.rot90(x + np.arange(x.shape[1], dtype=np.uint8), random.randrange(4)).copy()


def continuous(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) + random.random()


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def test_profile_gives_one_cost_per_step_and_sizes_per_split() -> None:
    pipeline = as_pipeline([Busy(2.0), trivial, grow, shrink], name="synthetic")
    profile = profile_pipeline(ArrayDataset(12), pipeline, items=6)
    assert profile.items == 6 and profile.num_samples == 12
    assert profile.step_names == ["Busy", "trivial", "grow", "shrink"]
    busy, cheap = profile.steps[0].cost, profile.steps[1].cost
    assert busy.count == cheap.count == 6
    assert busy.median > 10 * cheap.median  # ordering, not absolute numbers
    assert busy.median >= 1.5e-3
    assert profile.split_points == [0, 1, 2, 3, 4]
    sizes = [profile.split(k).entry_bytes for k in profile.split_points]
    assert sizes[0] == sizes[1] == sizes[2] == sizes[4]  # 8x8 arrays plus the target
    assert sizes[3] > sizes[2] + 15 * 64 - 64  # after grow: a 32x32 array
    for split in profile.splits:
        assert split.put.count == 6 and split.get.count == 6
        assert split.put.median > 0 and split.get.median > 0
    assert profile.partial_cost(1) == pytest.approx(busy.mean)
    assert profile.final_cost(0) == pytest.approx(sum(s.cost.mean for s in profile.steps))
    assert profile.describe_split(2) == "Busy, trivial | grow, shrink"


def test_profile_reports_the_failing_step() -> None:
    def broken(x: Any) -> Any:
        raise RuntimeError("boom")

    with pytest.raises(Exception, match=r"step 'broken' failed on item \d: RuntimeError: boom"):
        profile_pipeline(ArrayDataset(3), as_pipeline([trivial, broken]), items=2)


# -- diversity -------------------------------------------------------------------------------------
def test_fingerprint_compares_contents_and_types() -> None:
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.reshape(4, 3))
    assert fingerprint(a) != fingerprint(a.astype(np.int16))
    assert fingerprint(torch.from_numpy(a)) == fingerprint(torch.from_numpy(a).t().t())
    assert fingerprint(torch.from_numpy(a)) != fingerprint(a)
    image = Image.fromarray(a)
    assert fingerprint(image) == fingerprint(image.copy())
    assert fingerprint((a, 1)) != fingerprint((a, 2))
    assert count_distinct([a, a.copy(), a + 1, {"x": a}, {"x": a.copy()}]) == 3


def test_measured_diversity_of_deterministic_k_valued_and_continuous_finals() -> None:
    dataset = ArrayDataset(8)
    pipeline = as_pipeline([trivial, one_of_four, trivial, continuous])
    measured = measure_diversity(dataset, pipeline, samples=3, draws=60)
    whole, four, fixed = measured.split(0), measured.split(2), measured.split(4)
    # split 4: nothing runs after the cache, so every use is the same output (echoing).
    assert fixed.distinct == 1 and fixed.outcomes == 1
    assert all(fixed.distinct_in[r] == 1 for r in range(1, 6))
    assert measured.measured(4, 3) == pytest.approx(1 / 3)
    # split 2 caches after the 4-way step: the final part is continuous again.
    assert four.distinct == 60 and math.isinf(four.outcomes)
    # split 0 and 1: continuous too.
    assert whole.distinct == 60 and math.isinf(measured.outcomes)
    # A k-valued final part alone: exactly 4 outcomes.
    four_only = measure_diversity(dataset, as_pipeline([trivial, one_of_four]), draws=60)
    final = four_only.split(1)
    assert final.distinct == 4
    assert final.outcomes == pytest.approx(4, rel=0.01)
    assert 1 < final.distinct_in[3] < 3
    # Standard (split 0) of that pipeline has 4 outcomes too: refurbishing loses nothing.
    assert four_only.measured(1, 3) == pytest.approx(1.0, abs=0.2)


def test_measure_diversity_leaves_global_random_state_alone() -> None:
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    numpy_state = np.random.get_state()[1].copy()
    measure_diversity(ArrayDataset(4), as_pipeline([trivial, one_of_four]), samples=2, draws=10)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == python_state
    assert np.array_equal(np.random.get_state()[1], numpy_state)


@pytest.mark.parametrize("outcomes", [1, 2, 4, 14, 40])
def test_estimate_outcomes_inverts_the_expected_distinct_count(outcomes: int) -> None:
    expected = outcomes * (1 - (1 - 1 / outcomes) ** 60)
    assert estimate_outcomes(expected, 60) == pytest.approx(outcomes, rel=1e-6)
    assert math.isinf(estimate_outcomes(60, 60))


# -- the paper's formula (DESIGN section 4) --------------------------------------------------------
def test_formula_matches_design_section_4() -> None:
    a, k = 500.0, 12
    for r in (2, 3, 4):
        echo = unique_echoing(a, k, r) / unique_standard(a, k)
        assert unique_refurbishing(a, 1, k, r) == pytest.approx(unique_echoing(a, k, r))
        assert unique_refurbishing(a, a, k, r) == pytest.approx(unique_standard(a, k))
        assert paper_diversity(a, 1, r, epochs=k) == pytest.approx(echo)
        assert paper_diversity(a, a, r) == 1.0
    assert unique_refurbishing(a, 14, k, 1) == pytest.approx(unique_standard(a, k))
    assert paper_diversity(a, 14, 1) == 1.0
    # Large |A|, one RandAugment layer (14 ops) after the cache, r = 3: about 0.93; echoing 0.33.
    assert paper_diversity(math.inf, 14, 3) == pytest.approx(0.93, abs=0.005)
    assert paper_diversity(1e12, 14, 3) == pytest.approx(0.93, abs=0.005)
    assert paper_diversity(math.inf, 1, 3) == pytest.approx(1 / 3)
    assert paper_diversity(math.inf, math.inf, 5) == 1.0


@settings(max_examples=200, deadline=None)
@given(
    a=st.floats(1, 1e6),
    fraction=st.floats(0, 1),
    r=st.integers(1, 8),
    k=st.integers(1, 100),
)
def test_formula_lies_between_echoing_and_standard(
    a: float, fraction: float, r: int, k: int
) -> None:
    a_f = 1 + fraction * (a - 1)
    value = paper_diversity(a, a_f, r, epochs=k)
    echo = unique_echoing(a, k, r) / unique_standard(a, k)
    assert echo - 1e-9 <= value <= 1 + 1e-9


# -- prediction and choice on a hand-built profile ---------------------------------------------
MS = 1e-3


def hand_built(
    *, step_ms: list[float], entry: list[float], outcomes: list[float], num_samples: int = 1000
) -> tuple[Pipeline, Measurements]:
    names = [f"s{i}" for i in range(len(step_ms))]
    pipeline = Pipeline("hand", tuple((n, trivial) for n in names), default_split=1)
    profile = PipelineProfile(
        pipeline="hand",
        load=Cost.fixed(0.1 * MS),
        steps=tuple(
            StepProfile(n, Cost.fixed(c * MS)) for n, c in zip(names, step_ms, strict=True)
        ),
        splits=tuple(
            SplitProfile(k, entry[k], put=Cost.fixed(0.05 * MS), get=Cost.fixed(0.05 * MS))
            for k in range(len(step_ms) + 1)
        ),
        items=10,
        num_samples=num_samples,
    )

    def split(k: int) -> SplitDiversity:
        a_f = outcomes[k]
        per_use = {
            r: (r if math.isinf(a_f) else a_f * (1 - (1 - 1 / a_f) ** r)) for r in range(1, 6)
        }
        return SplitDiversity(k, 60, 3, min(60, per_use[5] * 12), per_use, a_f)

    diversity = DiversityProfile(tuple(split(k) for k in range(len(step_ms) + 1)))
    return pipeline, Measurements(profile, diversity, Overhead(0.2 * MS, 0.02 * MS, 2, 32))


# decode-like (2 ms), crop-like (1 ms, continuous), flip-like (2 outcomes), cheap to-tensor.
STEPS = [2.0, 1.0, 0.1, 0.1]
ENTRY = [50e3, 500e3, 150e3, 150e3, 150e3]
OUTCOMES = [math.inf, math.inf, 2, 1, 1]
TWO_CORES = Parallelism(num_workers=2, cores=2)


def test_recommendation_picks_the_fastest_that_is_diverse_enough() -> None:
    pipeline, measured = hand_built(step_ms=STEPS, entry=ENTRY, outcomes=OUTCOMES)
    rec = recommend_from(pipeline, measured, parallelism=TWO_CORES, batch_size=32)
    speeds = {(c.split, c.reuse_factor): c.samples_per_second for c in rec.candidates}
    # Split 1 (final part continuous) keeps full diversity; split 2 (only a 2-way flip left)
    # would be faster but loses diversity: 0.75 at r=2.
    assert (rec.split, rec.reuse_factor) == (1, 5)
    assert rec.diversity >= 0.9
    assert speeds[(2, 2)] > speeds[(1, 2)]
    assert rec.samples_per_second == max(
        c.samples_per_second for c in rec.candidates if c.diversity >= 0.9
    )
    assert rec.candidates[0].is_standard and rec.speedup > 1
    kinds = {
        (c.split, c.reuse_factor): v.kind for c, v in zip(rec.candidates, rec.verdicts, strict=True)
    }
    assert kinds[(2, 2)] == "diversity" and kinds[(4, 3)] == "diversity"
    assert kinds[(1, 4)] == "slower" and kinds[(0, 1)] == "slower"
    assert rec.cache_bytes == 500e3 * 1000
    text = rec.explain()
    assert "too little diversity" in text and "data echoing" in text and "slower" in text
    assert "2 workers on 2 usable cores" in text and rec.assumption in text
    assert "refurbish:5 --split 1" in rec.bench_command()
    partial, final = rec.partial_transform, rec.final_transform
    assert partial is not None and final is not None
    # With a lower threshold the flip's split wins.
    low = recommend_from(
        pipeline, measured, parallelism=TWO_CORES, batch_size=32, min_diversity=0.5
    )
    assert (
        low.split >= 2 and low.diversity >= 0.5 and low.samples_per_second > rec.samples_per_second
    )


def test_a_real_run_correction_slows_every_cached_configuration() -> None:
    pipeline, measured = hand_built(step_ms=STEPS, entry=ENTRY, outcomes=OUTCOMES)
    plain = recommend_from(pipeline, measured, parallelism=TWO_CORES, batch_size=32)
    slower = dataclasses.replace(measured, refurbish_factor=3.0, checked=(1, 5))
    corrected = recommend_from(pipeline, slower, parallelism=TWO_CORES, batch_size=32)
    for before, after in zip(plain.candidates, corrected.candidates, strict=True):
        if before.is_standard:
            assert after.samples_per_second == before.samples_per_second
        else:
            assert after.samples_per_second < before.samples_per_second
    # Three times the stage cost: no cached configuration beats standard loading any more.
    assert corrected.reuse_factor == 1
    assert "split 1, r=5" in corrected.explain()
    # The measured efficiency of a real loader scales every prediction alike.
    idle = dataclasses.replace(measured, efficiency=0.9)
    scaled = recommend_from(pipeline, idle, parallelism=TWO_CORES, batch_size=32)
    for before, after in zip(plain.candidates, scaled.candidates, strict=True):
        assert after.samples_per_second == pytest.approx(0.9 * before.samples_per_second)
    assert (scaled.split, scaled.reuse_factor) == (plain.split, plain.reuse_factor)


def test_recommendation_respects_the_byte_budget() -> None:
    pipeline, measured = hand_built(step_ms=STEPS, entry=ENTRY, outcomes=OUTCOMES)
    rec = recommend_from(
        pipeline, measured, parallelism=TWO_CORES, batch_size=32, budget_bytes=100_000_000
    )
    assert rec.cache_bytes <= 100_000_000
    assert rec.split == 0 or rec.reuse_factor == 1  # split 1's 500 MB do not fit
    verdict = {
        (c.split, c.reuse_factor): v for c, v in zip(rec.candidates, rec.verdicts, strict=True)
    }
    assert verdict[(1, 5)].kind == "budget" and "too big" in verdict[(1, 5)].reason
    assert verdict[(2, 2)].kind == "both"
    # Nothing fits at all: standard loading, with no cache.
    none = recommend_from(pipeline, measured, parallelism=TWO_CORES, batch_size=32, budget_bytes=0)
    assert none.reuse_factor == 1 and none.cache_bytes == 0 and none.partial_transform is None
    assert "Load as usual" in none.explain()


def test_ties_go_to_the_more_diverse_configuration() -> None:
    # The last step costs almost nothing: caching it too is no faster, but loses diversity.
    pipeline, measured = hand_built(
        step_ms=[2.0, 0.001], entry=[50e3, 150e3, 150e3], outcomes=[math.inf, 3, 1]
    )
    rec = recommend_from(pipeline, measured, parallelism=TWO_CORES, batch_size=32, min_diversity=0)
    assert (rec.split, rec.reuse_factor) == (1, 5)
    exact = recommend_from(
        pipeline, measured, parallelism=TWO_CORES, batch_size=32, min_diversity=0, tolerance=0
    )
    assert exact.split == 2  # strictly the fastest


def test_epoch_time_accounts_for_workers_and_cores() -> None:
    n, b = 1024, 64
    alone = epoch_seconds(1e-3, 0.0, Parallelism(0, 2), n, b)
    assert alone == pytest.approx(n * 1e-3)
    assert epoch_seconds(1e-3, 0.0, Parallelism(2, 2), n, b) == pytest.approx(alone / 2)
    assert epoch_seconds(1e-3, 0.0, Parallelism(4, 2), n, b) == pytest.approx(alone / 2)
    assert epoch_seconds(1e-3, 0.0, Parallelism(2, 8), n, b) == pytest.approx(alone / 2)
    assert epoch_seconds(1e-3, 0.0, Parallelism(4, 8), n, b) == pytest.approx(alone / 4)
    # Without a spare core, the main process's share competes for the workers' cores...
    assert epoch_seconds(1e-3, 0.2e-3, Parallelism(2, 2), n, b) == pytest.approx(n * 1.2e-3 / 2)
    # ... so an uneven last round costs the busiest worker that share too.
    uneven = epoch_seconds(1e-3, 0.2e-3, Parallelism(2, 2), 1000, b)
    assert uneven == pytest.approx(512 * 1e-3 + 1000 * 0.2e-3 / 2)
    # With a spare core it runs there.
    assert epoch_seconds(1e-3, 0.2e-3, Parallelism(2, 3), n, b) == pytest.approx(512e-3)
    # Round-robin batches: with 3 batches on 2 workers, one worker makes two.
    assert epoch_seconds(1e-3, 0.0, Parallelism(2, 2), 192, 64) == pytest.approx(128e-3)
    assert "share" in Parallelism(4, 2).describe() and "spare" in Parallelism(1, 2).describe()


# -- inputs, errors and the loader --------------------------------------------------------------
def test_opaque_callables_cannot_be_split() -> None:
    with pytest.raises(UnsplittableError, match=r"one opaque callable.*list of callables"):
        as_pipeline(lambda x: x)
    with pytest.raises(UnsplittableError, match="Compose"):
        recommend(ArrayDataset(4), T.RandomHorizontalFlip())
    assert as_pipeline(T.Compose([trivial, grow])).step_names == ["trivial", "grow"]
    assert as_pipeline(torch.nn.Sequential(T.RandomHorizontalFlip())).step_names == [
        "RandomHorizontalFlip"
    ]
    with pytest.raises(ValueError, match="no steps"):
        as_pipeline([])


def test_recommend_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="min_diversity"):
        recommend(ArrayDataset(4), [trivial], min_diversity=1.5)
    with pytest.raises(TypeError, match="num_workers"):
        recommend(ArrayDataset(4), [trivial], num_workers=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="budget_bytes"):
        recommend(ArrayDataset(4), [trivial], budget_bytes=-1)


def test_calibration_measures_worker_and_main_costs(caplog: pytest.LogCaptureFixture) -> None:
    dataset = ArrayDataset(10)
    with_workers = calibrate_overhead(dataset, to_tensor, batch_size=4, num_workers=1)
    assert with_workers.measured and with_workers.num_workers == 1
    assert with_workers.worker > 0 and with_workers.main > 0
    # The transforms' own time is left out: a 1 ms step does not show in the overhead.
    busy = calibrate_overhead(dataset, Busy(1.0), batch_size=4, num_workers=0)
    assert busy.measured and busy.worker == 0 and 0 < busy.main < 0.5e-3
    # A collate function that fails: a logged warning and the fallback figures.
    broken = calibrate_overhead(
        dataset, to_tensor, batch_size=4, num_workers=0, collate_fn=_failing_collate
    )
    assert not broken.measured
    assert "could not calibrate" in caplog.text


def _failing_collate(samples: list[Any]) -> Any:
    raise RuntimeError("cannot collate")


def test_from_pipeline_builds_a_working_loader() -> None:
    dataset = ArrayDataset(24)
    steps = [Busy(0.5), grow, one_of_four, to_tensor]
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    with RevamperLoader.from_pipeline(
        dataset, steps, batch_size=8, shuffle=True, seed=0, cache_bytes=10**8
    ) as loader:
        # Measuring left the global random states alone.
        assert torch.equal(torch.get_rng_state(), torch_state)
        assert random.getstate() == python_state
        assert 1 <= loader.plan_config.reuse_factor <= 5
        for _ in range(2):
            targets = []
            for images, labels in loader:
                assert images.shape[1:] == (32, 32) and images.dtype == torch.uint8
                targets += labels.tolist()
            assert sorted(targets) == sorted(i % 3 for i in range(24))
    with pytest.raises(TypeError, match="reuse_factor"):
        RevamperLoader.from_pipeline(dataset, steps, reuse_factor=2)


def test_busy_meter_reports_other_processes_cores() -> None:
    with BusyMeter() as meter:
        Busy(20)(None)
    assert meter.seconds >= 0.015
    if meter.other_cores is not None:  # Linux
        assert 0 <= meter.other_cores <= 64


def test_recommend_end_to_end_on_a_tiny_pipeline() -> None:
    rec = recommend(ArrayDataset(16), [Busy(1.0), grow, one_of_four, to_tensor], items=8, draws=20)
    # The busy step dominates and the 4-way step keeps diversity: cache after the busy step.
    assert rec.split in (1, 2) and rec.reuse_factor > 1
    assert len(rec.candidates) == 1 + 5 * 4
    assert rec.table()[0]["kind"] in ("slower", "chosen")
    assert rec.measurements.overhead.measured and rec.parallelism.num_workers == 0
    # The best cached configuration was run for real, and its corrections applied to all.
    assert rec.measurements.checked is not None and rec.measurements.refurbish_factor > 0
    assert 0.7 <= rec.measurements.efficiency <= 1
    assert "Checked with a short real run" in rec.explain()
    out = rec.final_transform(rec.partial_transform(np.zeros((8, 8), np.uint8)))  # type: ignore[misc]
    assert isinstance(out, torch.Tensor) and out.shape == (32, 32)


def test_entry_size_measures_values_only_pickle_can_hold() -> None:
    from revamper.tune.profile import entry_size

    # A set is not encoded natively; sizing must not fail with PickleNotAllowedError.
    assert entry_size({1, 2, 3}) > entry_size(None)
