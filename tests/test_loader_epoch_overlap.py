"""The next epoch's first batches start while this epoch's last ones are consumed.

With persistent workers the loader goes on from an epoch's last tickets into the next epoch's,
where that cannot change what a batch reads (:mod:`revamper.loader.epoch_overlap`). Checked
here: the conflict rule against a brute-force model of the DataLoader's dispatch, the rule on
real plans, and, with real workers, that the next epoch's first batch is built before the last
batch of this one is consumed, and that every epoch still delivers exactly its plan (after a
``set_epoch`` or ``load_state_dict`` elsewhere, and after a ``break``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revamper import PlanConfig, RevamperLoader, SampleError, plan_epoch
from revamper.loader.epoch_overlap import conflict, may_overlap
from revamper.loader.tickets import BatchTicket
from tests.helpers import FailOnce, IndexDataset, LoadLog, slow_copy


def _ticket(indices: list[int], misses: list[bool], writes: list[bool], number: int = 0) -> Any:
    return BatchTicket(
        epoch=0,
        batch=number,
        indices=np.array(indices, dtype=np.int64),
        planned_miss=np.array(misses, dtype=bool),
        generations=np.zeros(len(indices), dtype=np.int64),
        worth_caching=np.array(writes, dtype=bool),
    )


def _tickets_of(config: PlanConfig, epoch: int) -> list[BatchTicket]:
    plan = plan_epoch(config, epoch)
    out = []
    for k in range(plan.num_batches):
        b = plan.batch(k)
        out.append(BatchTicket(epoch, k, b.indices, b.planned_miss, b.generations, b.worth_caching))
    return out


# -- the rule ------------------------------------------------------------------------------------
def test_a_read_by_both_epochs_is_no_conflict_a_write_against_anything_is() -> None:
    read_5 = _ticket([5, 6], [False, True], [False, False])  # reads 5; 6 computed, not kept
    write_5 = _ticket([5], [True], [True])
    hit_5_kept = _ticket([5], [False], [True])  # a hit that is rewritten if its read misses
    assert not conflict([read_5], _ticket([5], [False], [False]))
    assert conflict([read_5], write_5) and conflict([write_5], read_5)
    assert conflict([write_5], write_5)
    assert conflict([hit_5_kept], _ticket([5], [False], [False]))
    # A computation that is not cached touches nothing: no conflict with anything.
    assert not conflict([write_5], _ticket([5], [True], [False]))
    assert not conflict([write_5], _ticket([7], [False], [True]))


def test_only_batches_that_may_still_be_in_flight_count() -> None:
    writes_5 = _ticket([5], [True], [True])
    quiet = _ticket([1], [True], [False])
    reads_5 = _ticket([5], [False], [False])
    current = [writes_5, quiet, quiet, quiet]
    # With 4 in flight the first ticket of the next epoch goes out as the batch writing 5 is
    # received: counted (the rule errs on the safe side); with 3 that batch is long done.
    assert not may_overlap(current, [reads_5], in_flight=4)
    assert may_overlap(current, [reads_5], in_flight=3)
    # The second ticket of the next epoch goes out one batch later.
    assert may_overlap(current, [quiet, reads_5], in_flight=4)
    assert not may_overlap(current, [quiet, reads_5], in_flight=5)
    # Beyond in_flight, tickets go out only after the whole epoch was received.
    assert may_overlap(current, [quiet] * 4 + [reads_5], in_flight=4)
    assert not may_overlap(current, [quiet], in_flight=0)


def _running_when_dispatched(dispatched: int, k: int, in_flight: int) -> range:
    """Batches of the current epoch still in the workers as ticket ``k`` of the next goes out.

    A DataLoader keeping ``in_flight`` tickets out dispatches ticket ``s`` (counted over both
    epochs) when it receives batch ``s - in_flight``: batches after that one are running.
    """
    s = dispatched + k
    return range(max(0, s - in_flight + 1), dispatched)


_flags = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    current=st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=4), min_size=1, max_size=7),
    following=st.lists(
        st.lists(st.integers(0, 12), min_size=1, max_size=4), min_size=1, max_size=7
    ),
    flags=st.data(),
    in_flight=st.integers(1, 6),
)
def test_the_rule_is_safe_against_a_brute_force_model_of_dispatch(
    current: list[list[int]],
    following: list[list[int]],
    flags: st.DataObject,
    in_flight: int,
) -> None:
    def tickets(groups: list[list[int]]) -> list[Any]:
        out = []
        for group in groups:
            miss_write = flags.draw(
                st.lists(
                    st.tuples(st.booleans(), st.booleans()),
                    min_size=len(group),
                    max_size=len(group),
                )
            )
            out.append(_ticket(group, [m for m, _ in miss_write], [w for _, w in miss_write]))
        return out

    now, later = tickets(current), tickets(following)

    def touched(t: Any) -> set[int]:
        return {
            int(i)
            for i, m, w in zip(t.indices, t.planned_miss, t.worth_caching, strict=True)
            if not m or w
        }

    def written(t: Any) -> set[int]:
        return {int(i) for i, w in zip(t.indices, t.worth_caching, strict=True) if w}

    clash = any(
        touched(later[k]) & written(now[j]) or written(later[k]) & touched(now[j])
        for k in range(len(later))
        for j in _running_when_dispatched(len(now), k, in_flight)
    )
    if may_overlap(now, later, in_flight):
        assert not clash


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    b=st.integers(1, 9),
    schedule=st.lists(st.integers(1, 4), min_size=1, max_size=5),
    seed=st.integers(0, 2**32),
    in_flight=st.integers(1, 8),
)
def test_an_epoch_at_r_1_overlaps_its_neighbours(
    n: int, b: int, schedule: list[int], seed: int, in_flight: int
) -> None:
    """An epoch at r = 1 neither reads nor writes, so it overlaps the epochs next to it."""
    config = PlanConfig(
        num_samples=n,
        reuse_factor=1,
        batch_size=b,
        seed=seed,
        reuse_schedule=tuple(schedule),
        max_reuse_factor=4,
    )
    rates = [0, *schedule]  # epoch 0 computes and writes everything, whatever r_0 is
    for epoch in range(len(schedule)):
        if 1 in rates[epoch : epoch + 2]:
            now, later = _tickets_of(config, epoch), _tickets_of(config, epoch + 1)
            assert may_overlap(now, later, in_flight)


def test_a_fixed_r_epoch_that_writes_does_not_overlap_the_next_that_reads_it() -> None:
    config = PlanConfig(num_samples=200, reuse_factor=3, batch_size=10, seed=4)
    assert not may_overlap(_tickets_of(config, 0), _tickets_of(config, 1), in_flight=4)


# -- with real workers ---------------------------------------------------------------------------
def _batches(loader: RevamperLoader, epochs: int, pause: float = 0.0) -> list[list[list[int]]]:
    out = []
    for _ in range(epochs):
        out.append(_epoch(loader, pause))
    return out


def _epoch(loader: RevamperLoader, pause: float = 0.0, stop: int | None = None) -> list[list[int]]:
    got = []
    for k, (x, _) in enumerate(loader):
        got.append(x[:, 0].tolist())
        if stop is not None and k + 1 == stop:
            break
        time.sleep(pause)
    return got


def _reference(epochs: list[int], **kwargs: Any) -> list[list[list[int]]]:
    """The batches of ``epochs`` from a loader without workers (no overlap possible)."""
    with RevamperLoader(IndexDataset(kwargs.pop("size")), **kwargs) as loader:
        out = []
        for epoch in epochs:
            loader.set_epoch(epoch)
            out.append(_epoch(loader))
        return out


SETTINGS: dict[str, Any] = {"batch_size": 8, "shuffle": True, "seed": 11}


@pytest.mark.slow
@pytest.mark.parametrize("reuse_factor", [1, "auto"])
@pytest.mark.parametrize("prefetch_next_epoch", [True, False])
def test_the_next_epochs_first_batch_is_built_while_the_last_ones_are_consumed(
    tmp_path: Path, reuse_factor: Any, prefetch_next_epoch: bool
) -> None:
    # 12 batches: with "auto" the r of an epoch started ahead is chosen from at least half of
    # the epoch before (here the 8 batches before the next epoch's first tickets go out).
    dataset = LoadLog(96, str(tmp_path / "loads"))
    loader = RevamperLoader(
        dataset,
        **SETTINGS,
        reuse_factor=reuse_factor,
        num_workers=2,
        persistent_workers=True,
        prefetch_next_epoch=prefetch_next_epoch,
    )
    with loader:
        first = _epoch(loader, pause=0.1)  # the workers have time to spare in each step
        last_consumed = time.monotonic()
        second = _epoch(loader)
    assert (
        sorted(i for b in first for i in b)
        == sorted(i for b in second for i in b)
        == list(range(96))
    )
    loaded_for_second = {}
    seen: set[int] = set()
    for when, index in dataset.loads():
        if index in seen:
            loaded_for_second.setdefault(index, when)
        seen.add(index)
    early = [loaded_for_second[i] < last_consumed for i in second[0]]
    assert all(early) if prefetch_next_epoch else not any(early)
    assert loader.stats[1].reuse_factor == 1


@pytest.mark.slow
def test_every_epoch_delivers_its_plan_after_set_epoch_load_state_and_break() -> None:
    kwargs: dict[str, Any] = {**SETTINGS, "reuse_factor": 1}
    loader = RevamperLoader(IndexDataset(40), **kwargs, num_workers=2, persistent_workers=True)
    with loader:
        plain = _batches(loader, 2)  # epoch 1 started ahead during epoch 0, epoch 2 during 1
        loader.set_epoch(5)  # not the epoch started ahead: that work is dropped
        moved = _epoch(loader)
        after_first = loader.state_dict()  # after epoch 5 (epoch 6 started ahead)
        broken = _epoch(loader, stop=4)  # epoch 6, left after 4 of 5 batches
        following = _epoch(loader)  # epoch 7
        loader.load_state_dict(after_first)
        assert _epoch(loader) == []  # the rest of epoch 5
        again = _batches(loader, 2)  # epochs 6 and 7 again
        # Epochs 1, 2 (from 0 and 1) and, after the load, 7 (from 6) took the stream over.
        assert loader._epochs.epochs_started_ahead == 3
    expected = _reference([0, 1, 5, 6, 7], size=40, **kwargs)
    assert plain == expected[:2]
    assert moved == expected[2]
    assert broken == expected[3][:4]
    assert following == expected[4]
    assert again == expected[3:]


@pytest.mark.slow
@pytest.mark.parametrize("reuse_factor", [2, 3, "auto"])
def test_with_a_cache_the_epochs_run_their_plans_exactly(reuse_factor: Any) -> None:
    """No unplanned miss: no batch of the next epoch replaced an entry still to be read.

    At r >= 2 every epoch writes entries that the next one's first batches read, so the rule
    keeps these epochs from overlapping (with it bypassed, r = 2 and 3 fail here).
    """
    kwargs: dict[str, Any] = {
        **SETTINGS,
        "reuse_factor": reuse_factor,
        "partial_transform": slow_copy,
    }
    loader = RevamperLoader(IndexDataset(40), **kwargs, num_workers=2, persistent_workers=True)
    with loader:
        got = _batches(loader, 6)
        assert all(s.unplanned_misses == 0 for s in loader.stats)
        schedule = loader.reuse_schedule
        planned = [s.planned_misses for s in loader.stats]
    if reuse_factor == "auto":
        kwargs["reuse_factor"] = "auto"
    reference = RevamperLoader(IndexDataset(40), **kwargs)
    with reference:
        if schedule:
            reference.load_state_dict({**reference.state_dict(), "reuse_schedule": list(schedule)})
        expected = _batches(reference, 6)
        assert [s.planned_misses for s in reference.stats] == planned
    assert got == expected


@pytest.mark.slow
@pytest.mark.parametrize(("size", "prefetch_factor"), [(12, 2), (8, 8), (17, 3)])
def test_epochs_shorter_than_the_batches_in_flight_deliver_their_plans(
    size: int, prefetch_factor: int
) -> None:
    # Found in review: with fewer batches per epoch than prefetch_factor * num_workers, the
    # next epoch's tickets were handed out twice, and the epoch after got its batches.
    kwargs: dict[str, Any] = {**SETTINGS, "reuse_factor": 1}
    loader = RevamperLoader(
        IndexDataset(size),
        **kwargs,
        num_workers=2,
        persistent_workers=True,
        prefetch_factor=prefetch_factor,
    )
    with loader:
        got = _batches(loader, 5)
        assert loader._epochs.epochs_started_ahead >= 2  # at most one epoch ahead: every other one
    assert got == _reference(list(range(5)), size=size, **kwargs)


@pytest.mark.slow
def test_a_failed_batch_caught_by_the_loop_costs_that_batch_only(tmp_path: Path) -> None:
    # Found in review: after a worker error the epoch counted the failed batch as still to
    # come, and took the next epoch's first batch as its own last one.
    marker = tmp_path / "fail"
    marker.touch()
    kwargs: dict[str, Any] = {**SETTINGS, "reuse_factor": 1}
    dataset = FailOnce(40, bad=0, marker=str(marker))
    loader = RevamperLoader(dataset, **kwargs, num_workers=2, persistent_workers=True)
    with loader:
        first: list[list[int]] = []
        batches = iter(loader)
        while True:
            try:
                x, _ = next(batches)
            except SampleError:
                continue
            except StopIteration:
                break
            first.append(x[:, 0].tolist())
        rest = _batches(loader, 2)
        assert loader._epochs.epochs_started_ahead == 1  # epoch 2 (epoch 1 reset the broken stream)
    expected = _reference([0, 1, 2], size=40, **kwargs)
    assert first == [b for b in expected[0] if 0 not in b]
    assert rest == expected[1:]


@pytest.mark.slow
def test_close_after_the_last_epoch_takes_in_the_batches_started_ahead(tmp_path: Path) -> None:
    """The workers are idle when torch stops them, as after an epoch without overlap."""
    dataset = LoadLog(48, str(tmp_path / "loads"), delay=0.01)  # 80 ms a batch
    loader = RevamperLoader(
        dataset, **SETTINGS, reuse_factor=1, num_workers=2, persistent_workers=True
    )
    with loader:
        _epoch(loader)  # closed right after the last batch: the next epoch's are being built
    # Epoch 1's first 4 tickets (2 workers x prefetch_factor 2) went out as epoch 0's last 4
    # batches came in; all 4 were built (48 loads of epoch 0, 32 of epoch 1), and none after.
    assert len(dataset.loads()) == 48 + 8 * 4
