"""Distributed plans: coverage across ranks, equal shares, per-group eviction and balance."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from revamper.plan import PlanConfig, entry_generation, plan_epoch, reads_left
from revamper.plan.partition import group_samples


@st.composite
def worlds(draw: st.DrawFn, drop_last: bool | None = None) -> PlanConfig:
    group_size = draw(st.integers(1, 4))
    world_size = group_size * draw(st.integers(1, 3))
    return PlanConfig(
        num_samples=draw(st.integers(world_size, 600)),
        reuse_factor=draw(st.integers(1, 5)),
        batch_size=draw(st.integers(1, 40)),
        seed=draw(st.integers(0, 2**40)),
        drop_last=draw(st.booleans()) if drop_last is None else drop_last,
        shuffle=draw(st.booleans()),
        world_size=world_size,
        rank=0,
        group_size=group_size,
    )


def all_ranks(config: PlanConfig, epoch: int) -> list[object]:
    return [
        plan_epoch(dataclasses.replace(config, rank=rank), epoch)
        for rank in range(config.world_size)
    ]


@settings(max_examples=200, deadline=None)
@given(worlds(), st.integers(0, 8))
def test_every_rank_gets_an_equal_share_and_every_sample_is_covered(
    config: PlanConfig, epoch: int
) -> None:
    plans = all_ranks(config, epoch)
    counts: collections.Counter[int] = collections.Counter()
    for rank, plan in enumerate(plans):
        plan.validate(dataclasses.replace(config, rank=rank))  # type: ignore[attr-defined]
        assert plan.num_batches == config.num_batches  # type: ignore[attr-defined]
        assert plan.num_used == config.num_used  # type: ignore[attr-defined]
        counts.update(plan.indices.tolist())  # type: ignore[attr-defined]
    total = config.world_size * config.num_used
    assert sum(counts.values()) == total
    if config.drop_last:
        assert max(counts.values(), default=1) == 1  # nothing twice
    else:
        assert len(counts) == config.num_samples  # everything at least once
        assert total - config.num_samples == sum(c - 1 for c in counts.values())


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_groups_own_disjoint_fixed_parts(config: PlanConfig) -> None:
    parts = [
        group_samples(config.num_samples, config.num_groups, g, config.seed, config.shuffle)
        for g in range(config.num_groups)
    ]
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(config.num_samples))
    assert max(p.size for p in parts) - min(p.size for p in parts) <= 1
    for epoch in (0, 3):
        for rank, plan in enumerate(all_ranks(config, epoch)):
            own = set(parts[rank // config.group_size].tolist())
            assert set(plan.indices.tolist()) <= own  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None)
@given(worlds(drop_last=False), st.integers(1, 9))
def test_each_group_recomputes_its_share_and_ranks_share_misses_evenly(
    config: PlanConfig, epoch: int
) -> None:
    plans = all_ranks(config, epoch)
    size = config.group_size
    for group in range(config.num_groups):
        members = plans[group * size : (group + 1) * size]
        part = group_samples(
            config.num_samples, config.num_groups, group, config.seed, config.shuffle
        )
        n_g = part.size
        need = size * config.samples_per_rank
        misses = sum(p.num_misses for p in members)  # type: ignore[attr-defined]
        expected = n_g if config.reuse_factor == 1 else n_g / config.reuse_factor
        assert abs(misses - expected) <= 1 + (need - n_g)
        if config.shuffle:
            per_rank = [p.num_misses for p in members]  # type: ignore[attr-defined]
            assert max(per_rank) - min(per_rank) <= 1


@settings(max_examples=150, deadline=None)
@given(worlds(), st.integers(2, 12))
def test_a_shared_group_cache_never_misses_a_planned_hit(config: PlanConfig, epochs: int) -> None:
    r = config.reuse_factor
    if config.drop_last:
        # What drop_last leaves out must fit in the chunk that the next epoch recomputes (as
        # for a single loader), in every group: then no needed entry goes unwritten.
        used = config.group_size * config.num_used
        for part in {
            config.num_samples // config.num_groups,
            -(-config.num_samples // config.num_groups),
        }:
            assume(part - used <= part // r)  # part // r: the smallest chunk's size
    cached: dict[int, int] = {}
    for epoch in range(epochs):
        plans = all_ranks(config, epoch)
        writes = {}
        for plan in plans:
            ids = plan.indices.tolist()  # type: ignore[attr-defined]
            miss = plan.planned_miss.tolist()  # type: ignore[attr-defined]
            gens = entry_generation(plan.chunks, r, epoch).tolist()  # type: ignore[attr-defined]
            keep = (reads_left(plan.chunks, r, epoch) > 0).tolist()  # type: ignore[attr-defined]
            for index, is_miss, generation, kept in zip(ids, miss, gens, keep, strict=True):
                if is_miss:
                    assert generation == epoch
                    if kept:
                        writes[index] = generation
                else:
                    assert cached.get(index) == generation, "a planned hit found no entry"
        cached.update(writes)


def test_same_config_same_plan_and_ranks_differ() -> None:
    config = PlanConfig(500, 3, 8, 1, world_size=4, rank=2, group_size=2)
    first, second = plan_epoch(config, 5), plan_epoch(dataclasses.replace(config), 5)
    assert np.array_equal(first.indices, second.indices)
    other = plan_epoch(dataclasses.replace(config, rank=3), 5)
    assert not set(first.indices.tolist()) & set(other.indices.tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"world_size": 0}, "world_size"),
        ({"world_size": 2, "rank": 2}, "rank"),
        ({"world_size": 4, "group_size": 3}, "group_size must divide"),
        ({"world_size": 2, "group_size": 3}, "group_size"),
        ({"world_size": 12, "group_size": 1}, "smaller than the number of cache groups"),
    ],
)
def test_bad_world_arguments(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlanConfig(10, 2, 2, 0, **kwargs)


def test_single_rank_plans_are_unchanged_by_the_new_fields() -> None:
    config = PlanConfig(300, 3, 16, 9)
    explicit = PlanConfig(300, 3, 16, 9, world_size=1, rank=0, group_size=1)
    assert np.array_equal(plan_epoch(config, 4).indices, plan_epoch(explicit, 4).indices)
