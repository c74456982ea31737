"""The reuse schedule's API: validation, canonical form, a worked example, scale and pickling."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest

from revamper.plan import EpochPlan, PlanConfig, plan_epoch
from revamper.plan.rotation import _eviction_position
from revamper.plan.schedule import ReuseSchedule

BASE: dict[str, Any] = {"num_samples": 100, "reuse_factor": 3, "batch_size": 8, "seed": 7}


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"reuse_schedule": 3}, TypeError, "reuse_schedule must be a tuple"),
        ({"reuse_schedule": "23"}, TypeError, "reuse_schedule must be a tuple"),
        ({"reuse_schedule": (2, 2.0)}, TypeError, r"reuse_schedule\[1\] \(r of epoch 2\)"),
        ({"reuse_schedule": (True,)}, TypeError, r"reuse_schedule\[0\]"),
        ({"reuse_schedule": (2, 0)}, ValueError, r"reuse_schedule\[1\] .* must be >= 1"),
        ({"reuse_schedule": (4,)}, ValueError, "above max_reuse_factor=3"),
        ({"reuse_schedule": (4,), "max_reuse_factor": 3}, ValueError, "raise max_reuse_factor"),
        ({"max_reuse_factor": 2}, ValueError, "smaller than reuse_factor=3"),
        ({"max_reuse_factor": 65536}, ValueError, "max_reuse_factor must be <= 65535"),
        ({"max_reuse_factor": 4.0}, TypeError, "max_reuse_factor"),
        ({"max_reuse_factor": True}, TypeError, "max_reuse_factor"),
    ],
)
def test_config_rejects_a_bad_schedule(
    changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        PlanConfig(**BASE, **changes)


def test_config_normalises_the_schedule_and_its_bound() -> None:
    config = PlanConfig(**BASE, reuse_schedule=[np.int64(2), 4], max_reuse_factor=np.int32(4))  # type: ignore[arg-type]
    assert config.reuse_schedule == (2, 4)
    assert type(config.reuse_schedule[0]) is int and type(config.max_reuse_factor) is int
    default = PlanConfig(**BASE)
    assert default.max_reuse_factor is None and default.reuse_bound == 3  # None: reuse_factor
    assert default.schedule == PlanConfig(**BASE, max_reuse_factor=3).schedule
    # Without an explicit bound, another reuse_factor is just another fixed r.
    assert dataclasses.replace(default, reuse_factor=5).reuse_bound == 5
    assert config.reuse_bound == 4
    assert [config.reuse_factor_at(e) for e in range(5)] == [3, 2, 4, 4, 4]
    with pytest.raises(ValueError, match="epoch"):
        config.reuse_factor_at(-1)


def test_the_canonical_schedule_says_when_plans_are_equal() -> None:
    # Trailing repeats change nothing; a value equal to the last one changes nothing either.
    assert ReuseSchedule(3, (2, 3, 3), 4) == ReuseSchedule(3, (2, 3), 4)
    assert ReuseSchedule(3, (3, 3), 3) == ReuseSchedule(3, (), 3)
    assert ReuseSchedule(3, (), 3).is_fixed
    assert not ReuseSchedule(3, (), 4).is_fixed  # a higher bound changes what may be cached
    assert ReuseSchedule(3, (2,), 4) != ReuseSchedule(3, (2, 4), 4)
    a = PlanConfig(**BASE, reuse_schedule=(2, 3, 3), max_reuse_factor=4)
    b = PlanConfig(**BASE, reuse_schedule=(2, 3), max_reuse_factor=4)
    assert a != b and a.schedule == b.schedule
    for epoch in range(6):
        first, second = plan_epoch(a, epoch), plan_epoch(b, epoch)
        assert np.array_equal(first.indices, second.indices)
        assert np.array_equal(first.reads_left, second.reads_left)


def test_a_worked_example() -> None:
    # N = 12, r_0 = 2, then r = 4, 1, 3, 3, with R = 4. Epoch 2 runs at r = 1, outside the
    # rotation: epochs 0, 1, 3, 4 are its steps 0-3. The pointer, in turns, after each step:
    # 1/2, 3/4, 13/12, 17/12; times 12, rounded up: 6, 9, 13, 17. So epoch 1 recomputes
    # positions 6-8, epoch 2 all twelve (caching none), epoch 3 positions 9, 10, 11 and 0,
    # epoch 4 positions 1-4.
    config = PlanConfig(
        12, 2, 5, 11, shuffle=False, reuse_schedule=(4, 1, 3, 3), max_reuse_factor=4
    )
    position = _eviction_position(12, 11)

    def at_positions(plan: EpochPlan, values: np.ndarray) -> list[int]:
        out = np.empty(12, dtype=np.int64)
        out[position[plan.indices]] = values
        return out.tolist()

    plans = [plan_epoch(config, e) for e in range(5)]
    assert [p.reuse_factor for p in plans] == [2, 4, 1, 3, 3]
    assert [p.num_misses for p in plans] == [12, 3, 12, 4, 4]
    assert sorted(position[plans[1].indices[plans[1].planned_miss]].tolist()) == [6, 7, 8]
    assert sorted(position[plans[3].indices[plans[3].planned_miss]].tolist()) == [0, 9, 10, 11]
    assert sorted(position[plans[4].indices[plans[4].planned_miss]].tolist()) == [1, 2, 3, 4]
    # Epoch 0: if every later step ran at R = 4 the pointer would cover positions 6-8 at
    # step 1, 9-11 at 2, 0-2 at 3, 3-5 at 4: 0 to 3 reads left. Positions 6-8 are recomputed
    # at step 1 whatever r it gets: not worth caching.
    assert at_positions(plans[0], plans[0].reads_left) == [2] * 3 + [3] * 3 + [0] * 3 + [1] * 3
    # Epoch 2 (r = 1) writes nothing, and epoch 3 reads what epochs 0 and 1 cached.
    assert at_positions(plans[2], plans[2].reads_left) == [0] * 12
    assert at_positions(plans[3], plans[3].generations()) == [3] + [0] * 5 + [1] * 3 + [3] * 3
    assert at_positions(plans[4], plans[4].generations()) == [3] + [4] * 4 + [0] + [1] * 3 + [3] * 3
    # Epoch 0's chunks are its two slices of width 1/2 (epochs -1 and 0: labels 3 and 0).
    assert at_positions(plans[0], plans[0].chunks) == [0] * 6 + [3] * 6
    # Chunks are labels of steps: epoch 3 is step 2, and label 2 names generation 3 there.
    assert plans[3].label_generations.tolist() == [0, 1, 3, 0]


def test_a_plan_records_its_reuse_factor_and_bound() -> None:
    config = PlanConfig(**BASE, reuse_schedule=(1, 2), max_reuse_factor=5)
    plans = [plan_epoch(config, e) for e in range(4)]
    assert [p.reuse_factor for p in plans] == [3, 1, 2, 2]
    assert {p.max_reuse_factor for p in plans} == {5}
    assert plans[1].planned_miss.all()  # r = 1 recomputes everything
    plans[1].validate(config)
    with pytest.raises(ValueError, match="r=1"):
        plans[1].validate(dataclasses.replace(config, reuse_schedule=(2,)))
    with pytest.raises(ValueError, match="max_reuse_factor=5"):
        plans[1].validate(dataclasses.replace(config, max_reuse_factor=6))


def test_a_plan_built_without_the_new_fields_is_a_fixed_r_plan() -> None:
    plan = plan_epoch(PlanConfig(**BASE), 4)
    old = EpochPlan(
        epoch=plan.epoch,
        reuse_factor=plan.reuse_factor,
        indices=plan.indices,
        planned_miss=plan.planned_miss,
        batch_bounds=plan.batch_bounds,
        chunks=plan.chunks,
        num_samples=plan.num_samples,
    )
    assert old.max_reuse_factor == 3
    assert np.array_equal(old.reads_left, plan.reads_left)
    assert not old.reads_left.flags.writeable
    with pytest.raises(ValueError, match="smaller than reuse_factor"):
        dataclasses.replace(plan, max_reuse_factor=2)
    with pytest.raises(ValueError, match="one length"):
        dataclasses.replace(plan, reads_left=plan.reads_left[:-1])


def test_pickled_config_and_plan_round_trip() -> None:
    config = PlanConfig(**BASE, reuse_schedule=(2, 4), max_reuse_factor=4)
    again = pickle.loads(pickle.dumps(config))
    assert again == config and again.schedule == config.schedule
    plan = plan_epoch(config, 5)
    copy = pickle.loads(pickle.dumps(plan))
    assert copy.max_reuse_factor == 4
    assert np.array_equal(copy.reads_left, plan.reads_left)
    assert not copy.reads_left.flags.writeable
    assert np.array_equal(plan_epoch(again, 5).indices, plan.indices)


def test_the_cost_does_not_grow_with_the_epoch() -> None:
    # A long schedule and the largest epoch: the pointer is summed once per run of equal values
    # and then moved in closed form, so the plan costs what epoch 1's does (a walk over the
    # epochs would never finish; no timing is asserted).
    values = tuple(1 + (k * 7) % 6 for k in range(500))
    config = PlanConfig(**BASE, reuse_schedule=values, max_reuse_factor=6)
    last = 2**63 - 1
    plan = plan_epoch(config, last)
    plan.validate(config)
    gens = plan.generations()
    assert np.all(gens[plan.planned_miss] == last)
    r = values[-1]
    assert config.num_samples // r <= plan.num_misses <= -(-config.num_samples // r)
    assert np.all((gens[~plan.planned_miss] < last) & (gens[~plan.planned_miss] > last - 6))


def test_imagenet_scale_schedule() -> None:
    n = 1_281_167
    config = PlanConfig(n, 3, 256, 2021, reuse_schedule=(2, 4, 1, 3), max_reuse_factor=4)
    for epoch, r in ((1, 2), (2, 4), (3, 1), (4, 3), (9, 3)):
        plan = plan_epoch(config, epoch)
        assert n // r <= plan.num_misses <= -(-n // r)
        counts = plan.miss_counts()
        assert counts[:-1].max() - counts[:-1].min() <= 1
    plan.validate(config)


def test_epochs_at_r_1_neither_read_nor_write_the_cache_and_move_no_pointer() -> None:
    # As auto starts where the loader keeps up: r_0 = 1, then 1, 1, and r goes up to 3.
    config = PlanConfig(40, 1, 8, 5, reuse_schedule=(1, 1, 3), max_reuse_factor=4)
    schedule = config.schedule
    assert [schedule.in_rotation(e) for e in range(6)] == [True, False, False, True, True, True]
    assert [schedule.step(e) for e in range(6)] == [0, 0, 0, 1, 2, 3]
    assert [schedule.epoch_of(j) for j in range(4)] == [0, 3, 4, 5]
    assert schedule.rotation == ReuseSchedule(1, (3,), 4)
    plans = [plan_epoch(config, e) for e in range(6)]
    for plan in plans:
        plan.validate(config)
    assert plans[0].reads_left.any()  # epoch 0 caches for the first choice of r
    assert not plans[1].reads_left.any() and not plans[2].reads_left.any()
    # Epoch 3 goes on from epoch 0's entries as if epochs 1 and 2 had not been: step 1 at r = 3.
    steps = dataclasses.replace(config, reuse_schedule=(3,))
    for epoch, step in ((3, 1), (4, 2), (5, 3)):
        plan, same = plans[epoch], plan_epoch(steps, step)
        assert sorted(plan.indices[plan.planned_miss].tolist()) == sorted(
            same.indices[same.planned_miss].tolist()
        )
    assert [p.num_misses for p in plans] == [40, 40, 40, 14, 13, 13]
    hits = ~plans[3].planned_miss
    assert np.all(plans[3].generations()[hits] == 0)
    # Every hit was written by the epoch its generation names; no entry serves more than R uses.
    written: dict[int, int] = {}
    uses: dict[int, int] = {}
    for plan in plans:
        for index, miss, generation, keep in zip(
            plan.indices.tolist(),
            plan.planned_miss.tolist(),
            plan.generations().tolist(),
            (plan.reads_left > 0).tolist(),
            strict=True,
        ):
            if not miss:
                assert written[index] == generation
                uses[index] += 1
                assert uses[index] <= 4
            elif keep:
                written[index], uses[index] = generation, 1


def test_a_fixed_r_1_with_a_larger_bound_caches_only_at_epoch_0() -> None:
    config = PlanConfig(30, 1, 4, 3, max_reuse_factor=3)
    plans = [plan_epoch(config, e) for e in range(4)]
    assert [p.num_misses for p in plans] == [30] * 4
    assert plans[0].reads_left.any()
    assert not any(p.reads_left.any() for p in plans[1:])


def test_a_plan_checks_its_label_generations() -> None:
    plan = plan_epoch(PlanConfig(**BASE), 4)
    assert plan.label_generations.tolist() == [3, 4, 2]
    assert not plan.label_generations.flags.writeable
    with pytest.raises(ValueError, match="label_generations must be 3"):
        dataclasses.replace(plan, label_generations=np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="must lie in"):
        dataclasses.replace(plan, label_generations=np.array([3, 5, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="chunk ids"):
        dataclasses.replace(plan, chunks=np.full(plan.chunks.size, 3, dtype=np.uint16))


def test_a_schedule_that_ends_at_r_1_has_no_later_rotation_step() -> None:
    schedule = ReuseSchedule(1, (3, 1), 4)
    assert [schedule.step(e) for e in range(5)] == [0, 1, 1, 1, 1]
    assert schedule.epoch_of(1) == 1
    with pytest.raises(ValueError, match="no rotation step 2"):
        schedule.epoch_of(2)
    assert ReuseSchedule(2, (3,), 4).epoch_of(7) == 7  # the tail at r > 1 has every step
