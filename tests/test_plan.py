"""Example-based tests of revamper.plan: validation, edge cases, determinism and scale."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest

from revamper.plan import (
    EpochPlan,
    PlanConfig,
    chunk_assignment,
    entry_generation,
    miss_mask,
    plan_epoch,
    reads_left,
)
from revamper.plan.eviction import _chunk_assignment
from revamper.plan.mixing import batch_bounds, cumulative_quota
from revamper.plan.rotation import clear_caches

GOOD: dict[str, Any] = {"num_samples": 100, "reuse_factor": 3, "batch_size": 8, "seed": 7}


# --- PlanConfig validation ------------------------------------------------------------------

BAD_VALUES = [
    ("num_samples", 0, ValueError),
    ("num_samples", -5, ValueError),
    ("num_samples", 10.0, TypeError),
    ("num_samples", True, TypeError),
    ("num_samples", "10", TypeError),
    ("num_samples", None, TypeError),
    ("reuse_factor", 0, ValueError),
    ("reuse_factor", 65536, ValueError),
    ("reuse_factor", 2.0, TypeError),
    ("reuse_factor", False, TypeError),
    ("batch_size", 0, ValueError),
    ("batch_size", -1, ValueError),
    ("batch_size", 8.5, TypeError),
    ("batch_size", True, TypeError),
    ("seed", 1.5, TypeError),
    ("seed", True, TypeError),
    ("seed", "7", TypeError),
    ("seed", None, TypeError),
    ("drop_last", 1, TypeError),
    ("drop_last", None, TypeError),
    ("shuffle", 0, TypeError),
    ("shuffle", "yes", TypeError),
    ("balance_misses", 1, TypeError),
]


@pytest.mark.parametrize(("field", "value", "error"), BAD_VALUES)
def test_config_rejects_bad_field(field: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=field):
        PlanConfig(**{**GOOD, field: value})


def test_config_accepts_extremes_and_numpy_scalars() -> None:
    config = PlanConfig(
        num_samples=np.int64(5),
        reuse_factor=65535,
        batch_size=np.int32(2),
        seed=-(2**100),
        drop_last=np.bool_(True),  # type: ignore[arg-type]
    )
    assert type(config.num_samples) is int
    assert type(config.batch_size) is int
    assert type(config.drop_last) is bool
    assert config.num_batches == 2
    plan_epoch(config, 3).validate(config)


def test_config_is_frozen() -> None:
    config = PlanConfig(**GOOD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("n", "b", "drop_last", "expected"),
    [(10, 3, False, 4), (10, 3, True, 3), (9, 3, False, 3), (9, 3, True, 3), (2, 5, True, 0)],
)
def test_num_batches(n: int, b: int, drop_last: bool, expected: int) -> None:
    config = PlanConfig(num_samples=n, reuse_factor=2, batch_size=b, seed=0, drop_last=drop_last)
    assert config.num_batches == expected
    assert plan_epoch(config, 1).num_batches == expected


@pytest.mark.parametrize(
    ("epoch", "error"), [(-1, ValueError), (2**63, ValueError), (1.0, TypeError), (True, TypeError)]
)
def test_plan_epoch_rejects_bad_epoch(epoch: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="epoch"):
        plan_epoch(PlanConfig(**GOOD), epoch)  # type: ignore[arg-type]


def test_plan_epoch_rejects_non_config() -> None:
    with pytest.raises(TypeError, match="config"):
        plan_epoch(GOOD, 0)  # type: ignore[arg-type]


def test_huge_epoch() -> None:
    config = PlanConfig(**GOOD)
    plan = plan_epoch(config, 2**63 - 1)
    plan.validate(config)
    _, miss, gens, _ = plan.batch(0)
    assert np.all(gens[miss] == 2**63 - 1)
    assert np.all((gens[~miss] < 2**63 - 1) & (gens[~miss] >= 2**63 - 3))


# --- eviction functions --------------------------------------------------------------------


def test_chunk_assignment_sizes_and_cache() -> None:
    chunks = chunk_assignment(10, 4, 1)
    assert chunks.dtype == np.uint16
    assert not chunks.flags.writeable
    assert sorted(np.bincount(chunks, minlength=4).tolist()) == [2, 2, 3, 3]
    assert chunk_assignment(10, 4, 1) is chunks
    assert chunk_assignment(10, 4, 1 + 2**64) is chunks  # seeds are taken modulo 2**64
    few = chunk_assignment(3, 5, 0)  # r > N: some chunks are empty, none holds two samples
    assert len(set(few.tolist())) == 3
    assert set(few.tolist()) <= {0, 1, 2, 3, 4}
    assert np.all(chunk_assignment(7, 1, 0) == 0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"num_samples": 0}, ValueError),
        ({"reuse_factor": 70000}, ValueError),
        ({"seed": 0.5}, TypeError),
    ],
)
def test_chunk_assignment_rejects(kwargs: dict[str, Any], error: type[Exception]) -> None:
    args: dict[str, Any] = {"num_samples": 5, "reuse_factor": 2, "seed": 0, **kwargs}
    with pytest.raises(error, match=next(iter(kwargs))):
        chunk_assignment(**args)


def test_miss_mask_and_generation_closed_form() -> None:
    for r in range(1, 7):
        chunks = np.arange(r, dtype=np.uint16)
        last_miss = np.zeros(r, dtype=np.int64)  # brute force: epoch of each chunk's last miss
        for e in range(0, 4 * r + 3):
            mask = miss_mask(chunks, r, e)
            expected_mask = np.ones(r, bool) if e == 0 else chunks == e % r
            assert np.array_equal(mask, expected_mask)
            last_miss[mask] = e
            assert np.array_equal(entry_generation(chunks, r, e), last_miss)


@pytest.mark.parametrize("function", [miss_mask, entry_generation])
def test_eviction_functions_reject_bad_input(function: Any) -> None:
    with pytest.raises(ValueError, match="chunks"):
        function(np.array([0, 3]), 3, 1)
    with pytest.raises(TypeError, match="chunks"):
        function(np.array([0.0]), 3, 1)
    with pytest.raises(ValueError, match="epoch"):
        function(np.array([0]), 3, -1)
    with pytest.raises(ValueError, match="reuse_factor"):
        function(np.array([0]), 0, 1)


# --- mixing helpers ------------------------------------------------------------------------


def test_batch_bounds() -> None:
    assert batch_bounds(0, 4).tolist() == [0]
    assert batch_bounds(8, 4).tolist() == [0, 4, 8]
    assert batch_bounds(9, 4).tolist() == [0, 4, 8, 9]
    assert batch_bounds(3, 4).tolist() == [0, 3]


def test_cumulative_quota_is_exact_for_huge_sizes() -> None:
    n = 3 * 2**40 + 17
    total = 2**40 + 5
    ends = np.array([1, 2**35, n // 2, n - 1, n], dtype=np.int64)
    expected = [(2 * total * int(end) + n) // (2 * n) for end in ends]
    assert cumulative_quota(total, ends, n).tolist() == expected
    # Round half up, not to even: 1 * 1 / 2 = 0.5 -> 1, 3 * 1 / 2 = 1.5 -> 2, 5 / 2 -> 3.
    assert cumulative_quota(1, np.array([1]), 2).tolist() == [1]
    assert cumulative_quota(5, np.array([1]), 2).tolist() == [3]


# --- EpochPlan -----------------------------------------------------------------------------


def test_batch_access_and_errors() -> None:
    config = PlanConfig(**GOOD)
    plan = plan_epoch(config, 4)
    assert plan.num_batches == 13
    ids, miss, gens, _ = plan.batch(12)
    assert ids.size == miss.size == gens.size == 4
    assert gens.dtype == np.int64
    for bad in (-1, 13):
        with pytest.raises(IndexError, match=f"batch {bad} out of range"):
            plan.batch(bad)
    with pytest.raises(TypeError, match="k"):
        plan.batch(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="k"):
        plan.batch(True)
    assert "epoch=4" in repr(plan)


def test_arrays_are_read_only() -> None:
    plan = plan_epoch(PlanConfig(**GOOD), 1)
    for array in (plan.indices, plan.planned_miss, plan.batch_bounds, plan.chunks):
        assert not array.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0
    assert not plan.batch(0)[0].flags.writeable


def test_pickle_round_trip_keeps_arrays_read_only() -> None:
    config = PlanConfig(**GOOD)
    plan = plan_epoch(config, 2)
    copy = pickle.loads(pickle.dumps(plan))
    copy.validate(config)
    assert np.array_equal(copy.indices, plan.indices)
    assert not copy.indices.flags.writeable


def test_zero_batches() -> None:
    config = PlanConfig(num_samples=3, reuse_factor=2, batch_size=5, seed=0, drop_last=True)
    plan = plan_epoch(config, 1)
    plan.validate(config)
    assert (plan.num_batches, plan.num_used, plan.dropped_count) == (0, 0, 3)
    assert plan.miss_counts().tolist() == []
    assert plan.dropped_indices().tolist() == [0, 1, 2]
    with pytest.raises(IndexError):
        plan.batch(0)


def test_constructor_rejects_inconsistent_arrays() -> None:
    plan = plan_epoch(PlanConfig(**GOOD), 1)
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    with pytest.raises(ValueError, match="one length"):
        EpochPlan(**{**fields, "planned_miss": plan.planned_miss[:-1]})
    with pytest.raises(ValueError, match="batch_bounds"):
        EpochPlan(**{**fields, "batch_bounds": plan.batch_bounds[:-1]})
    with pytest.raises(ValueError, match="epoch"):
        EpochPlan(**{**fields, "epoch": -1})
    with pytest.raises(TypeError, match="reuse_factor"):
        EpochPlan(**{**fields, "reuse_factor": 3.0})


def _replace(plan: EpochPlan, **changes: Any) -> EpochPlan:
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    return EpochPlan(**{**fields, **changes})


def test_validate_detects_violations() -> None:
    config = PlanConfig(num_samples=3000, reuse_factor=3, batch_size=32, seed=1)
    plan = plan_epoch(config, 2)
    plan.validate(config)

    duplicated = plan.indices.copy()
    duplicated[1] = duplicated[0]
    with pytest.raises(ValueError, match="more than once"):
        _replace(plan, indices=duplicated).validate(config)

    flipped = plan.planned_miss.copy()
    flipped[0] = not flipped[0]
    with pytest.raises(ValueError, match="planned_miss"):
        _replace(plan, planned_miss=flipped).validate(config)

    with pytest.raises(ValueError, match="chunks"):
        _replace(plan, chunks=(plan.chunks + 1) % 3).validate(config)

    order = np.argsort(~plan.planned_miss, kind="stable")  # all misses first: unbalanced
    unbalanced = _replace(
        plan,
        indices=plan.indices[order],
        planned_miss=plan.planned_miss[order],
        chunks=plan.chunks[order],
        reads_left=plan.reads_left[order],
    )
    with pytest.raises(ValueError, match="batch 0 holds 32 misses"):
        unbalanced.validate(config)
    with pytest.raises(ValueError, match="r=3"):
        plan.validate(dataclasses.replace(config, reuse_factor=4))
    with pytest.raises(ValueError, match="without shuffle"):
        plan.validate(dataclasses.replace(config, shuffle=False))
    with pytest.raises(ValueError, match="batches"):
        plan.validate(dataclasses.replace(config, batch_size=31))

    dropping = dataclasses.replace(config, drop_last=True)
    plan = plan_epoch(dropping, 2)
    plan.validate(dropping)
    dropped = plan.dropped_indices()
    keep_miss = np.flatnonzero(plan.planned_miss)[0]
    swapped = plan.indices.copy()
    swapped[keep_miss] = dropped[0]  # drop a miss while keeping a chunk-0 sample
    chunks = chunk_assignment(3000, 3, 1)[swapped]
    with pytest.raises(ValueError, match="drop class"):
        _replace(
            plan,
            indices=swapped,
            planned_miss=miss_mask(chunks, 3, 2),
            chunks=chunks,
            reads_left=reads_left(chunks, 3, 2).astype(np.uint16),
        ).validate(dropping)


def test_plain_shuffle_is_not_balanced() -> None:
    config = PlanConfig(
        num_samples=20000, reuse_factor=3, batch_size=64, seed=3, balance_misses=False
    )
    plan = plan_epoch(config, 1)
    plan.validate(config)
    counts = plan.miss_counts()[:-1]
    assert counts.max() - counts.min() > 1
    balanced = plan_epoch(dataclasses.replace(config, balance_misses=True), 1)
    counts = balanced.miss_counts()[:-1]
    assert counts.max() - counts.min() <= 1


def test_misses_are_shuffled_within_batches() -> None:
    config = PlanConfig(num_samples=3000, reuse_factor=3, batch_size=30, seed=5)
    plan = plan_epoch(config, 1)
    rows = plan.planned_miss.reshape(-1, 30)
    # Composition puts a batch's misses first; the within-batch shuffle must spread them out.
    first_position_share = rows[:, 0].mean()
    assert 0.15 < first_position_share < 0.55  # about 1/3
    assert not np.all(rows[:, :10])


def test_plans_are_recomputed_identically() -> None:
    config = PlanConfig(**GOOD, drop_last=True)
    first = plan_epoch(config, 5)
    _chunk_assignment.cache_clear()
    clear_caches()
    second = plan_epoch(config, 5)
    for name in ("indices", "planned_miss", "batch_bounds", "chunks"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    shifted = plan_epoch(dataclasses.replace(config, seed=config.seed - 2**64), 5)
    assert np.array_equal(first.indices, shifted.indices)


# --- scale ---------------------------------------------------------------------------------


def test_imagenet_scale_plan() -> None:
    n = 1_281_167
    config = PlanConfig(num_samples=n, reuse_factor=3, batch_size=256, seed=2021)
    plan = plan_epoch(config, 1)
    assert plan.indices.dtype == np.int32
    assert plan.planned_miss.dtype == np.bool_
    assert plan.chunks.dtype == np.uint16
    assert plan.batch_bounds.dtype == np.int64
    arrays = (plan.indices, plan.planned_miss, plan.chunks, plan.reads_left)
    per_sample = sum(array.itemsize for array in arrays)
    assert per_sample == 9
    assert chunk_assignment(n, 3, 2021).nbytes == 2 * n
    assert plan.num_batches == 5005
    assert abs(plan.num_misses - n / 3) <= 1
    counts = plan.miss_counts()
    assert counts[:-1].max() - counts[:-1].min() <= 1
    plan.validate(config)


def test_reads_left_skips_entries_recomputed_before_any_read() -> None:
    chunks = np.array([0, 1, 2], dtype=np.uint16)
    # r = 3: at epoch 0, chunk 0 is read at epochs 1 and 2, chunk 1 never (recomputed at 1),
    # chunk 2 at epoch 1 only.
    assert reads_left(chunks, 3, 0).tolist() == [2, 0, 1]
    # at epoch 1 chunk 1 is recomputed and then read at epochs 2 and 3; chunk 2's entry is
    # recomputed at epoch 2, so a recomputation of it now would never be read
    assert reads_left(chunks, 3, 1).tolist() == [1, 2, 0]
    assert reads_left(chunks, 3, 7).tolist() == [1, 2, 0]
    assert reads_left(np.zeros(4, dtype=np.uint16), 1, 5).tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="chunk"):
        reads_left(np.array([3]), 3, 0)
