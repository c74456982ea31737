"""Property tests of balanced eviction under a changing reuse factor (issue 15, the planner).

A reuse schedule r_1, r_2, ... (bounded by R = ``max_reuse_factor``) drives a pointer round the
run's one seeded permutation. The tests check the plans against an independent, step-by-step
reference (the pointer advanced one epoch at a time with exact fractions) and against the
promises of the mechanism: every sample once per epoch, epoch 0 all misses, epoch e recomputing
floor or ceil of N / r_e, no entry used more than R times, every planned hit finding the entry
of the generation the plan says (whatever r the later epochs get), oldest entries first, balanced
batches, the fixed-r plans for a constant schedule, and plans that depend only on the schedule
so far (a resumed run recomputes them identically).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from revamper.plan import EpochPlan, PlanConfig, plan_epoch
from revamper.plan.eviction import _chunk_assignment
from revamper.plan.rotation import clear_caches
from revamper.plan.seeding import Purpose, generator

ARRAYS = ("indices", "planned_miss", "batch_bounds", "chunks", "reads_left")


@st.composite
def scheduled(
    draw: st.DrawFn,
    *,
    max_samples: int = 400,
    drop_last: bool | None = None,
    shuffle: bool | None = None,
    distributed: bool = False,
) -> PlanConfig:
    bound = draw(st.integers(1, 6))
    group_size, world_size = 1, 1
    if distributed:
        group_size = draw(st.integers(1, 3))
        world_size = group_size * draw(st.integers(1, 3))
    return PlanConfig(
        num_samples=draw(st.integers(world_size, max_samples)),
        reuse_factor=draw(st.integers(1, bound)),
        batch_size=draw(st.integers(1, 48)),
        seed=draw(st.integers(-(2**70), 2**70)),
        drop_last=draw(st.booleans()) if drop_last is None else drop_last,
        shuffle=draw(st.booleans()) if shuffle is None else shuffle,
        balance_misses=draw(st.booleans()),
        world_size=world_size,
        group_size=group_size,
        reuse_schedule=tuple(draw(st.lists(st.integers(1, bound), max_size=12))),
        max_reuse_factor=bound,
    )


def in_rotation(config: PlanConfig, epoch: int) -> bool:
    """Whether ``epoch`` reads and writes the cache: epoch 0, and every epoch at r > 1."""
    return epoch == 0 or config.reuse_factor_at(epoch) > 1


def same_plan(first: EpochPlan, second: EpochPlan) -> bool:
    scalars = ("epoch", "reuse_factor", "max_reuse_factor", "num_samples")
    return all(getattr(first, s) == getattr(second, s) for s in scalars) and all(
        np.array_equal(getattr(first, a), getattr(second, a)) for a in ARRAYS
    )


# --- an independent reference: the pointer walked one epoch at a time ----------------------


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


class Reference:
    """The rotation of one cache group, advanced epoch by epoch with exact fractions.

    An epoch at r = 1 after epoch 0 is outside the rotation: it computes every sample, keeps
    none and leaves the pointer where it was; the others are its steps 1, 2, ...
    """

    def __init__(self, config: PlanConfig) -> None:
        n, self.bound = config.num_samples, config.reuse_bound
        self.n, self.config = n, config
        permutation = generator(config.seed, Purpose.EVICTION).permutation(n)
        self.order = permutation if self.bound > 1 else np.arange(n)
        self.slice_step = np.zeros(n, dtype=np.int64)  # by position on the circle
        # Epoch 0 is the last of slices -R + 1 .. 0 of width 1 / r_0, ending at F_0 = 1 / r_0.
        r0 = config.reuse_factor
        self.pointer = Fraction(1, r0) - Fraction(self.bound, r0)
        for virtual in range(-self.bound + 1, 1):
            self._advance(Fraction(1, r0), virtual)
        self.epoch, self.step_index = 0, 0

    def _advance(self, step: Fraction, label: int, slices: np.ndarray | None = None) -> None:
        target = self.slice_step if slices is None else slices
        start, self.pointer = self.pointer, self.pointer + step
        for position in range(_ceil(self.n * start), _ceil(self.n * self.pointer)):
            target[position % self.n] = label

    def step(self) -> None:
        self.epoch += 1
        if in_rotation(self.config, self.epoch):
            self.step_index += 1
            r = self.config.reuse_factor_at(self.epoch)
            self._advance(Fraction(1, r), self.step_index)

    def state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk, miss, reads left) of every sample at the current epoch."""
        e, j, bound = self.epoch, self.step_index, self.bound
        if not in_rotation(self.config, e):
            return np.full(self.n, e % bound), np.ones(self.n, dtype=bool), np.zeros(self.n)
        miss = np.ones(self.n, dtype=bool) if e == 0 else self.slice_step == j
        chunk = self.slice_step % bound
        # Reads left: walk on as if every later step ran at R; count steps until recomputed.
        saved, future = self.pointer, np.full(self.n, -1, dtype=np.int64)
        for k in range(1, bound + 1):
            slices = np.full(self.n, -1, dtype=np.int64)
            self._advance(Fraction(1, bound), k, slices)
            fresh = (slices >= 0) & (future < 0)
            future[fresh] = k - 1
        self.pointer = saved
        by_sample = [np.empty(self.n, dtype=np.int64) for _ in range(3)]
        for array, values in zip(by_sample, (chunk, miss, future), strict=True):
            array[self.order] = values
        return by_sample[0], by_sample[1].astype(bool), by_sample[2]


@settings(max_examples=150, deadline=None)
@given(scheduled(drop_last=False), st.integers(1, 16))
def test_plans_match_the_step_by_step_rotation(config: PlanConfig, epochs: int) -> None:
    reference = Reference(config)
    for epoch in range(epochs):
        if epoch:
            reference.step()
        plan = plan_epoch(config, epoch)
        plan.validate(config)
        chunk, miss, reads = reference.state()
        ids = plan.indices
        assert np.array_equal(plan.chunks, chunk[ids])
        assert np.array_equal(plan.planned_miss, miss[ids])
        assert np.array_equal(plan.reads_left, reads[ids])


# --- the mechanism's promises, over a run --------------------------------------------------


def run_cache(config: PlanConfig, epochs: int) -> dict[str, Any]:
    """Execute ``epochs`` single-loader plans against a simulated cache; check every hit.

    Returns the per-epoch miss counts and the uses each entry served before its recomputation.
    """
    n, bound = config.num_samples, config.reuse_bound
    cached = np.full(n, -1, dtype=np.int64)  # generation of the entry the cache holds
    computed = np.full(n, -1, dtype=np.int64)  # epoch the plan last computed each sample in
    uses = np.zeros(n, dtype=np.int64)  # uses of the current entry (its computation included)
    served: list[int] = []
    misses: list[int] = []
    unplanned = 0
    for epoch in range(epochs):
        plan = plan_epoch(config, epoch)
        plan.validate(config)
        ids, miss, gens = plan.indices, plan.planned_miss, plan.generations()
        assert plan.reuse_factor == config.reuse_factor_at(epoch)
        if epoch == 0:
            assert miss.all()
        assert np.all(gens[miss] == epoch)
        misses.append(plan.num_misses)
        if not in_rotation(config, epoch):  # r = 1: computes everything, keeps nothing
            assert miss.all() and not plan.reads_left.any()
            continue
        hit_ids = ids[~miss]
        # A hit's generation is the epoch the plan last computed the sample in.
        assert np.array_equal(gens[~miss], computed[hit_ids])
        found = cached[hit_ids] == gens[~miss]
        unplanned += int(np.count_nonzero(~found))
        # The oldest entries go first: every recomputed entry is no younger than any hit.
        if epoch and hit_ids.size and miss.any():
            assert computed[ids[miss]].max() <= gens[~miss].min()
        miss_ids = ids[miss]
        served.extend(uses[miss_ids][computed[miss_ids] >= 0].tolist())
        write = plan.reads_left[miss] > 0
        cached[miss_ids[write]] = epoch
        computed[miss_ids] = epoch
        uses[miss_ids] = 1
        uses[hit_ids] += 1
        # An unplanned miss is recomputed and rewritten under its planned generation.
        rewrite = ~found & (plan.reads_left[~miss] > 0)
        cached[hit_ids[rewrite]] = gens[~miss][rewrite]
        assert uses.max(initial=0) <= bound
    return {"misses": misses, "served": served, "unplanned": unplanned}


@settings(max_examples=150, deadline=None)
@given(scheduled(drop_last=False), st.integers(1, 16))
def test_a_run_recomputes_n_over_r_and_every_hit_finds_its_entry(
    config: PlanConfig, epochs: int
) -> None:
    n, bound = config.num_samples, config.reuse_bound
    result = run_cache(config, epochs)
    assert result["unplanned"] == 0
    assert max(result["served"], default=0) <= bound
    misses = result["misses"]
    assert misses[0] == n
    steps = [e for e in range(1, epochs) if in_rotation(config, e)]
    for epoch in range(1, epochs):
        r = config.reuse_factor_at(epoch)
        assert n // r <= misses[epoch] <= -(-n // r)  # floor or ceil of N / r_e
    # The rounding never drifts: the steps 1..j recompute N * sum(1 / r_k), within one.
    for j in range(1, len(steps) + 1):
        exact = n * sum(Fraction(1, config.reuse_factor_at(e)) for e in steps[:j])
        assert abs(sum(misses[e] for e in steps[:j]) - exact) < 1


@settings(max_examples=100, deadline=None)
@given(scheduled(drop_last=True, shuffle=True), st.integers(1, 12))
def test_drop_last_loses_no_needed_entry_when_a_slice_fills_a_batch(
    config: PlanConfig, epochs: int
) -> None:
    # What drop_last leaves out (< B samples) fits among those recomputed next epoch anyway.
    assume(config.num_samples // config.reuse_bound >= config.batch_size)
    result = run_cache(config, epochs)
    assert result["unplanned"] == 0


@settings(max_examples=100, deadline=None)
@given(
    scheduled(drop_last=False),
    st.integers(0, 10),
    st.lists(st.integers(1, 6), min_size=1, max_size=8),
)
def test_reads_left_is_the_most_any_later_schedule_can_read(
    config: PlanConfig, epoch: int, later: list[int]
) -> None:
    """Reads left is exact if every later epoch runs at R, and an upper bound for any other."""
    bound = config.reuse_bound
    so_far = tuple(config.reuse_factor_at(e) for e in range(1, epoch + 1))
    plan = plan_epoch(config, epoch)
    for tail in ((bound,) * (bound + 1), tuple(min(r, bound) for r in later) + (bound,) * bound):
        future = dataclasses.replace(config, reuse_schedule=so_far + tail)
        assert same_plan(plan_epoch(future, epoch), plan)
        if not in_rotation(config, epoch):  # what an epoch at r = 1 computes is never read
            assert not plan.reads_left.any()
            continue
        reads = np.zeros(config.num_samples, dtype=np.int64)
        recomputed = np.zeros(config.num_samples, dtype=bool)
        for e in range(epoch + 1, epoch + len(tail) + 1):
            after = plan_epoch(future, e)
            if in_rotation(future, e):  # an epoch at r = 1 replaces no entry
                recomputed[after.indices[after.planned_miss]] = True
            reads[after.indices[~after.planned_miss & ~recomputed[after.indices]]] += 1
        # Within R steps every entry is recomputed (R = 1: no epoch after 0 uses the cache).
        assert recomputed.all() or (bound == 1 and not reads.any())
        left = reads[plan.indices]
        if tail[0] == bound and len(set(tail)) == 1:
            assert np.array_equal(left, plan.reads_left)
        else:
            assert np.all(left <= plan.reads_left)
            assert np.all(left[plan.reads_left == 0] == 0)


@settings(max_examples=200, deadline=None)
@given(scheduled(), st.integers(0, 14))
def test_every_sample_once_and_misses_balanced_within_one(config: PlanConfig, epoch: int) -> None:
    n, b = config.num_samples, config.batch_size
    plan = plan_epoch(config, epoch)
    plan.validate(config)
    dropped = n % b if config.drop_last else 0
    assert np.unique(plan.indices).size == plan.num_used == n - dropped
    if config.shuffle and config.balance_misses and plan.num_used:
        m, used = plan.num_misses, plan.num_used
        counts = plan.miss_counts()
        for k, size in enumerate(np.diff(plan.batch_bounds).tolist()):
            assert (m * size) // used <= counts[k] <= -((-m * size) // used)
        full = counts[: plan.num_used // b]
        if full.size:
            assert full.max() - full.min() <= 1
    for k in range(plan.num_batches):
        _, miss, gens, keep = plan.batch(k)
        lo, hi = plan.batch_bounds[k], plan.batch_bounds[k + 1]
        assert np.array_equal(gens, plan.generations()[lo:hi])
        assert np.array_equal(keep, plan.reads_left[lo:hi] > 0)
        assert np.all(gens[miss] == epoch)
        assert np.all(gens[~miss] < epoch)


# --- a constant schedule is a fixed r; plans depend on the schedule so far only ----------


@settings(max_examples=150, deadline=None)
@given(
    st.booleans().flatmap(lambda d: scheduled(distributed=d)),
    st.integers(0, 6),
    st.integers(0, 14),
)
def test_a_constant_schedule_is_the_fixed_r_plan(
    config: PlanConfig, length: int, epoch: int
) -> None:
    r = config.reuse_factor
    fixed = dataclasses.replace(config, reuse_schedule=(), max_reuse_factor=None)
    constant = dataclasses.replace(config, reuse_schedule=(r,) * length, max_reuse_factor=r)
    assert fixed.schedule == constant.schedule
    assert same_plan(plan_epoch(constant, epoch), plan_epoch(fixed, epoch))


@settings(max_examples=150, deadline=None)
@given(scheduled(), st.integers(0, 14), st.lists(st.integers(1, 6), max_size=6))
def test_a_plan_depends_on_the_schedule_so_far_only(
    config: PlanConfig, epoch: int, tail: list[int]
) -> None:
    so_far = tuple(config.reuse_factor_at(e) for e in range(1, epoch + 1))
    longer = so_far + tuple(min(r, config.reuse_bound) for r in tail)
    plan = plan_epoch(config, epoch)
    for schedule in (so_far, longer):
        assert same_plan(
            plan_epoch(dataclasses.replace(config, reuse_schedule=schedule), epoch), plan
        )


@settings(max_examples=80, deadline=None)
@given(st.booleans().flatmap(lambda d: scheduled(distributed=d)), st.integers(1, 12))
def test_a_resumed_run_recomputes_every_plan_identically(config: PlanConfig, epochs: int) -> None:
    # Uninterrupted: the loader appends r_e at each epoch boundary and plans with what it has.
    values = [config.reuse_factor_at(e) for e in range(1, epochs)]
    run = []
    for epoch in range(epochs):
        growing = dataclasses.replace(config, reuse_schedule=tuple(values[:epoch]))
        run.append(plan_epoch(growing, epoch))
    # Resumed: a fresh process recomputes any epoch cold from the saved schedule.
    saved = dataclasses.replace(config, reuse_schedule=tuple(values))
    for epoch in reversed(range(epochs)):
        clear_caches()
        _chunk_assignment.cache_clear()
        assert same_plan(plan_epoch(saved, epoch), run[epoch])


# --- distributed: one schedule on every rank, groups and the deal unchanged ----------------


def all_ranks(config: PlanConfig, epoch: int) -> list[EpochPlan]:
    return [
        plan_epoch(dataclasses.replace(config, rank=rank), epoch)
        for rank in range(config.world_size)
    ]


@settings(max_examples=100, deadline=None)
@given(scheduled(distributed=True), st.integers(1, 12))
def test_a_shared_group_cache_never_misses_a_planned_hit(config: PlanConfig, epochs: int) -> None:
    if config.drop_last:
        # What drop_last leaves out must fit among what the next epoch surely recomputes.
        used = config.group_size * config.num_used
        for part in {
            config.num_samples // config.num_groups,
            -(-config.num_samples // config.num_groups),
        }:
            assume(part - used <= part // config.reuse_bound)
    cached: dict[int, int] = {}
    for epoch in range(epochs):
        plans = all_ranks(config, epoch)
        writes = {}
        for rank, plan in enumerate(plans):
            plan.validate(dataclasses.replace(config, rank=rank))
            assert plan.num_batches == config.num_batches
            assert plan.reuse_factor == config.reuse_factor_at(epoch)
            rows = zip(
                plan.indices.tolist(),
                plan.planned_miss.tolist(),
                plan.generations().tolist(),
                (plan.reads_left > 0).tolist(),
                strict=True,
            )
            for index, is_miss, generation, kept in rows:
                if is_miss:
                    assert generation == epoch
                    if kept:
                        writes[index] = generation
                else:
                    assert cached.get(index) == generation, "a planned hit found no entry"
        cached.update(writes)


@settings(max_examples=100, deadline=None)
@given(scheduled(distributed=True, drop_last=False), st.integers(0, 12))
def test_every_group_recomputes_its_share_of_n_over_r(config: PlanConfig, epoch: int) -> None:
    plans = all_ranks(config, epoch)
    seen = np.concatenate([plan.indices for plan in plans])
    assert np.array_equal(np.unique(seen), np.arange(config.num_samples))
    r, size = config.reuse_factor_at(epoch), config.group_size
    for group in range(config.num_groups):
        members = plans[group * size : (group + 1) * size]
        own = np.unique(np.concatenate([p.indices for p in members]))
        computed = np.unique(np.concatenate([p.indices[p.planned_miss] for p in members]))
        n_g = own.size
        if epoch == 0:
            assert computed.size == n_g
        else:
            assert n_g // r <= computed.size <= -(-n_g // r)
        if config.shuffle:
            per_rank = [p.num_misses for p in members]
            assert max(per_rank) - min(per_rank) <= 1
