"""Property-based tests of the planner's invariants (DESIGN.md section 2)."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from revamper.plan import (
    PlanConfig,
    chunk_assignment,
    entry_generation,
    miss_mask,
    plan_epoch,
    reads_left,
)
from revamper.plan.eviction import _chunk_assignment
from revamper.plan.rotation import clear_caches


@st.composite
def configs(
    draw: st.DrawFn,
    *,
    min_samples: int = 1,
    max_samples: int = 3000,
    drop_last: bool | None = None,
    shuffle: bool | None = None,
) -> PlanConfig:
    return PlanConfig(
        num_samples=draw(st.integers(min_samples, max_samples)),
        reuse_factor=draw(st.integers(1, 6)),
        batch_size=draw(st.integers(1, 300)),
        seed=draw(st.integers(-(2**70), 2**70)),
        drop_last=draw(st.booleans()) if drop_last is None else drop_last,
        shuffle=draw(st.booleans()) if shuffle is None else shuffle,
        balance_misses=draw(st.booleans()),
    )


epochs = st.integers(0, 15)


def chunk_sizes(config: PlanConfig) -> np.ndarray:
    chunks = chunk_assignment(config.num_samples, config.reuse_factor, config.seed)
    return np.bincount(chunks, minlength=config.reuse_factor)


@settings(max_examples=500, deadline=None)
@given(configs(), epochs)
def test_single_epoch_invariants(config: PlanConfig, epoch: int) -> None:
    n, r, b = config.num_samples, config.reuse_factor, config.batch_size
    plan = plan_epoch(config, epoch)
    plan.validate(config)

    # Coverage: each sample at most once; exactly N mod B left out with drop_last.
    expected_dropped = n % b if config.drop_last else 0
    assert plan.dropped_count == expected_dropped
    assert np.unique(plan.indices).size == plan.num_used == n - expected_dropped
    assert plan.indices.min(initial=0) >= 0
    assert plan.indices.max(initial=0) < n
    if not config.shuffle:
        assert np.array_equal(plan.indices, np.arange(n - expected_dropped))

    # Chunk sizes differ by at most one.
    sizes = chunk_sizes(config)
    assert sizes.sum() == n
    assert sizes.max() - sizes.min() <= 1

    # Misses: all at epoch 0 and with r = 1; N/r +- 1 over all N and over the used samples.
    all_chunks = chunk_assignment(n, r, config.seed)
    all_misses = int(miss_mask(all_chunks, r, epoch).sum())
    if epoch == 0 or r == 1:
        assert all_misses == n
        assert plan.planned_miss.all()
    else:
        assert n // r <= all_misses <= -(-n // r)
    dropped = plan.dropped_indices()
    dropped_miss = miss_mask(all_chunks[dropped], r, epoch)
    assert plan.num_misses == all_misses - int(dropped_miss.sum())
    if config.shuffle and config.drop_last:
        # Misses sit out only when every hit already does.
        hits = n - all_misses
        if hits >= expected_dropped:
            assert not dropped_miss.any()
            assert plan.num_misses == all_misses
        # Samples of the chunk evicted next are dropped first.
        next_chunk = (epoch + 1) % r
        if sizes[next_chunk] >= expected_dropped:
            assert np.all(all_chunks[dropped] == next_chunk)

    # Balance: a batch of size s holds floor or ceil of m * s / n_used misses.
    counts = plan.miss_counts()
    assert counts.sum() == plan.num_misses
    if config.shuffle and config.balance_misses and plan.num_used:
        m, used = plan.num_misses, plan.num_used
        for k, s in enumerate(np.diff(plan.batch_bounds).tolist()):
            assert (m * s) // used <= counts[k] <= -((-m * s) // used)
        full = counts[: plan.num_used // b]
        if full.size:
            assert full.max() - full.min() <= 1

    # batch(k) is a slice of the arrays, with generations consistent with the schedule.
    for k in {0, plan.num_batches // 2, plan.num_batches - 1} if plan.num_batches else ():
        ids, miss, gens, keep = plan.batch(k)
        lo, hi = plan.batch_bounds[k], plan.batch_bounds[k + 1]
        assert np.array_equal(ids, plan.indices[lo:hi])
        assert np.array_equal(miss, plan.planned_miss[lo:hi])
        assert np.all(gens[miss] == epoch)
        assert np.all(gens[~miss] < epoch)
        assert np.array_equal(gens, entry_generation(all_chunks[ids], r, epoch))
        assert np.array_equal(keep, reads_left(all_chunks[ids], r, epoch) > 0)
        if r == 1:
            assert not keep.any()


def simulate(config: PlanConfig, num_epochs: int) -> int:
    """Run the cache over ``num_epochs`` epochs; check generations; return unplanned misses.

    With ``drop_last`` false it also checks that every entry serves the planned number of hits:
    r - 1 per cycle, and c - 1 (r - 1 for chunk 0) for chunk c's first, epoch-0 entry.
    """
    n, r = config.num_samples, config.reuse_factor
    all_chunks = chunk_assignment(n, r, config.seed).astype(np.int64)
    cached = np.full(n, -1, dtype=np.int64)  # generation of the entry held, -1: none
    computed = np.full(n, -1, dtype=np.int64)  # epoch each sample was last computed in
    hits = np.zeros(n, dtype=np.int64)  # hits served by the entry held
    unplanned = 0
    for epoch in range(num_epochs):
        plan = plan_epoch(config, epoch)
        ids, miss = plan.indices, plan.planned_miss
        gens = entry_generation(plan.chunks, r, epoch)
        assert np.all(gens[miss] == epoch)

        hit_ids = ids[~miss]
        valid = cached[hit_ids] == gens[~miss]
        unplanned += int(np.count_nonzero(~valid))
        if not config.drop_last:
            assert valid.all()  # every hit finds the entry computed at its planned generation

        miss_ids = ids[miss]
        previous = computed[miss_ids]
        if epoch == 0:
            assert miss.all()
            assert np.all(previous == -1)
        elif not config.drop_last:
            assert np.all(previous >= 0)
            first = previous == 0
            chunk = all_chunks[miss_ids]
            expected = np.where(first, np.where(chunk == 0, r, chunk) - 1, r - 1)
            assert np.array_equal(hits[miss_ids], expected)
            assert np.array_equal(hits[miss_ids], epoch - previous - 1)
        # A computed entry is written only when it will be read before its next recomputation;
        # otherwise the old (now stale) entry stays, and the plan must never read it.
        keep = reads_left(all_chunks[miss_ids], r, epoch) > 0
        cached[miss_ids[keep]] = epoch
        computed[miss_ids] = epoch
        hits[miss_ids] = 0
        hits[hit_ids[valid]] += 1
        # An unplanned miss recomputes the entry and rewrites it with its planned generation.
        again = hit_ids[~valid]
        rewrite = reads_left(all_chunks[again], r, epoch) > 0
        cached[again[rewrite]] = gens[~miss][~valid][rewrite]
    return unplanned


@settings(max_examples=150, deadline=None)
@given(configs(drop_last=False), st.integers(1, 15))
def test_steady_state_reuse_and_generations(config: PlanConfig, num_epochs: int) -> None:
    assert simulate(config, num_epochs) == 0


@settings(max_examples=150, deadline=None)
@given(configs(drop_last=True, shuffle=True), st.integers(1, 15))
def test_drop_last_never_loses_a_needed_entry(config: PlanConfig, num_epochs: int) -> None:
    assume(config.num_samples // config.reuse_factor >= config.batch_size)
    assert simulate(config, num_epochs) == 0


@settings(max_examples=150, deadline=None)
@given(configs(), epochs)
def test_same_inputs_same_plan(config: PlanConfig, epoch: int) -> None:
    first = plan_epoch(config, epoch)
    _chunk_assignment.cache_clear()
    clear_caches()
    second = plan_epoch(dataclasses.replace(config), epoch)
    for name in ("indices", "planned_miss", "batch_bounds", "chunks"):
        assert np.array_equal(getattr(first, name), getattr(second, name))


@settings(max_examples=150, deadline=None)
@given(configs(min_samples=20, shuffle=True), epochs, epochs)
def test_epochs_differ(config: PlanConfig, epoch: int, other: int) -> None:
    assume(epoch != other)
    first, second = plan_epoch(config, epoch), plan_epoch(config, other)
    assume(first.num_used >= 20)
    assert not np.array_equal(first.indices, second.indices)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(40, 3000), st.integers(2, 6), st.integers(-(2**70), 2**70), st.integers(1, 2**64)
)
def test_seeds_differ(n: int, r: int, seed: int, delta: int) -> None:
    assume(delta % 2**64 != 0)
    assert not np.array_equal(chunk_assignment(n, r, seed), chunk_assignment(n, r, seed + delta))
