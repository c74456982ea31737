"""``RevamperLoader(reuse_factor="auto")`` wired end to end, with real worker processes.

The consumer's step is controlled (a sleep per batch, or none), and only decisions that do not
depend on the machine's speed are asserted: a step of 50 ms per batch of cheap samples gets
r = 1 by epoch 2; no step with an expensive partial transform gets r > 1. The schedule's
save and resume is checked exactly, with a hand-made schedule.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revamper import PlanConfig, RevamperLoader, plan_epoch
from revamper.loader.reuse_control import ReuseControl
from revamper.loader.reuse_model import EpochMeasurement
from tests.helpers import IndexDataset, stamp_computation


def burn(x: np.ndarray) -> np.ndarray:
    """An expensive partial transform: 3 ms of CPU."""
    end = time.thread_time() + 0.003
    while time.thread_time() < end:
        pass
    return x


def nap(x: np.ndarray) -> np.ndarray:
    """A slow partial transform that leaves the interpreter lock free: 3 ms of sleep."""
    time.sleep(0.003)
    return x


def consume(loader: RevamperLoader, step: float = 0.0) -> list[Any]:
    """One epoch as a training loop with a ``step``: the sample indices of each batch."""
    indices = []
    for x, _ in loader:
        indices.append(x[:, 0].tolist())
        if step:
            time.sleep(step)
    return indices


@pytest.mark.slow
def test_a_slow_consumer_gets_r_1_by_epoch_2(caplog: pytest.LogCaptureFixture) -> None:
    loader = RevamperLoader(
        IndexDataset(320),
        batch_size=16,
        shuffle=True,
        partial_transform=stamp_computation,
        reuse_factor="auto",
        max_reuse_factor=4,
        num_workers=2,
        persistent_workers=True,
        seed=0,
    )
    with caplog.at_level(logging.INFO, logger="revamper.loader.reuse_policy"), loader:
        for _ in range(3):
            consume(loader, step=0.05)
    assert loader.stats[2].reuse_factor == 1, [str(s) for s in loader.stats]
    assert loader.reuse_schedule[1] == 1
    for stats in loader.stats:
        assert stats.steps == stats.batches == 20  # a for loop asks once more: the last step
        assert stats.step_seconds > 0 and stats.wait_seconds > 0
        assert stats.first_wait_seconds <= stats.wait_seconds
    assert loader.stats[0].predicted_rate is None and loader.stats[1].predicted_rate
    changes = [r.getMessage() for r in caplog.records if "runs at r=" in r.getMessage()]
    assert len(changes) == len(set(loader.reuse_schedule[:2])), changes  # one per change


@pytest.mark.slow
def test_a_consumer_that_takes_no_time_and_an_expensive_partial_get_reuse() -> None:
    with RevamperLoader(
        IndexDataset(96),
        batch_size=8,
        shuffle=True,
        partial_transform=burn,
        # Without probes the first choice is the prediction from epoch 0 (the trial of r = 1
        # that probes allow is covered in tests/test_reuse_control.py).
        reuse_factor=ReuseControl(max_reuse_factor=4, probe=False),
        num_workers=2,
        persistent_workers=True,
        seed=0,
    ) as loader:
        for _ in range(3):
            consume(loader)
        assert loader.stats[1].reuse_factor > 1, [str(s) for s in loader.stats]
        # The plan ran the r it says: about N / r recomputed (floor or ceil).
        for stats in list(loader.stats)[1:]:
            assert abs(stats.planned_misses - 96 / stats.reuse_factor) < 1
        assert loader.plan_config.reuse_bound == 4 and loader.store is not None


@pytest.mark.slow
def test_the_consumer_waits_for_the_workers_only_for_batches_not_built_yet() -> None:
    """``starved_seconds``: the workers stamp each batch when built; the rest is the hand-off."""
    options: dict[str, Any] = {
        "batch_size": 8,
        "shuffle": True,
        "reuse_factor": 1,
        "num_workers": 2,
        "persistent_workers": True,
        "seed": 0,
    }
    # Cheap samples, a consumer taking 30 ms per batch: every batch is built before it is asked
    # for, and the little the consumer waits is the batch crossing to the main process.
    with RevamperLoader(IndexDataset(96), partial_transform=stamp_computation, **options) as fast:
        consume(fast, step=0.03)
        stats = fast.stats[0]
        assert stats.wait_seconds - stats.first_wait_seconds > 0
        assert stats.starved_share < 0.05, str(stats)
        assert stats.starved_seconds < stats.wait_seconds - stats.first_wait_seconds
        assert "for the workers" in str(stats) and "starved_share" in stats.as_dict()
    # A partial transform that sleeps 3 ms per sample (the interpreter lock stays free) and a
    # consumer that takes no time: it waits mostly for batches not built yet.
    with RevamperLoader(IndexDataset(96), partial_transform=nap, **options) as slow:
        consume(slow)
        stats = slow.stats[0]
        assert stats.starved_share > 0.3, str(stats)
        assert stats.starved_seconds <= stats.wait_seconds - stats.first_wait_seconds
    # 3 ms of CPU per sample holding the interpreter lock: the workers' threads that hand the
    # batches over wait for it, so much of the wait shows as hand-off, and the workers' being
    # busy all along is what makes the epoch count as loader-bound. (Without the next epoch
    # started ahead: its first batches, built during this epoch's last ones, count in its own
    # figures, and this one epoch would show its workers less busy than they were.)
    with RevamperLoader(
        IndexDataset(96), partial_transform=burn, **options, prefetch_next_epoch=False
    ) as busy:
        consume(busy)
        measured = EpochMeasurement.from_stats(busy.stats[0], num_workers=2, cores=2.0)
        assert measured.worker_busy_share >= 0.9, measured
        assert measured.loader_bound(ReuseControl().bottleneck_share), measured


def test_a_fixed_r_records_its_r_and_the_consumers_times() -> None:
    with RevamperLoader(
        IndexDataset(40), batch_size=4, shuffle=True, partial_transform=stamp_computation, seed=0
    ) as loader:
        for _ in range(3):
            consume(loader)
        assert [s.reuse_factor for s in loader.stats] == [3, 3, 3]
        assert loader.reuse_schedule == () and "reuse_schedule" not in loader.state_dict()
        assert loader.stats[2].predicted_rate is not None and loader.stats[2].measured_rate > 0
        first = loader.stats[0]  # the workers' clocks: whole batches, computation, reads
        assert first.wall_batch >= first.wall_compute > 0 and first.wall_read == 0
        assert loader.stats[1].wall_read > 0
        assert "at r=3" in str(loader.stats[2]) and "consumer waited" in str(loader.stats[2])
        record = loader.stats[2].as_dict()
        assert record["reuse_factor"] == 3 and "wait_seconds" in record
        assert "measured_rate" in record and "step_seconds" in record


def auto_loader(**kwargs: Any) -> RevamperLoader:
    options: dict[str, Any] = {
        "batch_size": 6,
        "shuffle": True,
        "partial_transform": stamp_computation,
        "reuse_factor": "auto",
        "max_reuse_factor": 4,
        "seed": 0,
        **kwargs,
    }
    return RevamperLoader(IndexDataset(60), **options)


def test_the_schedule_is_saved_and_a_resumed_run_replays_it_exactly() -> None:
    with auto_loader() as first:
        consume(first)
        consume(first)
        epoch = iter(first)
        for _ in range(4):
            next(epoch)
        state = first.state_dict()
        rest = [x[:, 0].tolist() for x, _ in epoch]
        config = first.plan_config
    assert state["reuse_schedule"] == list(first.reuse_schedule[:2])
    assert state["max_reuse_factor"] == 4 and state["reuse_factor"] == 1
    with auto_loader() as resumed:
        resumed.load_state_dict(state)
        assert resumed.reuse_schedule == first.reuse_schedule[:2]
        resumed.set_epoch(2)
        assert consume(resumed) == rest
        assert resumed.plan_config.reuse_schedule == config.reuse_schedule[:2]
        assert resumed.stats[2].reuse_factor == first.stats[2].reuse_factor


def test_a_hand_made_schedule_is_followed_batch_for_batch() -> None:
    schedule = [3, 1, 4, 2]
    with auto_loader() as source:
        state = {**source.state_dict(), "epoch": 3, "batch": 2, "reuse_schedule": schedule}
    config = PlanConfig(60, 1, 6, 0, reuse_schedule=tuple(schedule), max_reuse_factor=4)
    with auto_loader() as loader:
        loader.load_state_dict(state)
        assert loader.reuse_schedule == tuple(schedule)
        got = consume(loader)
        plan = plan_epoch(config, 3)
        assert got == [plan.batch(k).indices.tolist() for k in range(2, plan.num_batches)]
        assert loader.stats[3].reuse_factor == 4
        consume(loader)  # epoch 4 is in the schedule: no choice, r = 2
        assert loader.stats[4].reuse_factor == 2 and loader.reuse_schedule == tuple(schedule)
        consume(loader)  # epoch 5: chosen now, appended
        assert len(loader.reuse_schedule) == 5 and loader.reuse_schedule[:4] == tuple(schedule)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_at_r_1_neither_writes_nor_reads_and_r_goes_up_from_the_entries_before(
    workers: int,
) -> None:
    # The schedule auto runs where the loader keeps up without reuse, then r goes up to 3.
    schedule = [1, 1, 3, 3]
    with auto_loader(num_workers=workers) as source:
        state = {**source.state_dict(), "epoch": 0, "batch": 0, "reuse_schedule": schedule}
    with auto_loader(num_workers=workers) as loader:
        loader.load_state_dict(state)
        served = [consume_rows(loader) for _ in range(5)]
        stats = loader.stats
        assert [s.reuse_factor for s in stats] == [1, 1, 1, 3, 3]
        assert stats[0].cache_writes > 0  # epoch 0 caches for the first choice of r
        # A fixed r = 1 caches nothing, and now neither does auto at r = 1.
        assert stats[1].cache_writes == stats[2].cache_writes == 0
        assert stats[1].hits == stats[2].hits == 0
        for epoch in (3, 4):  # r = 3 at once: a third recomputed, every planned hit found
            assert stats[epoch].planned_misses == 20 and stats[epoch].hits == 40
            assert stats[epoch].unplanned_misses == 0
    stamps = [{index: stamp for index, stamp in epoch} for epoch in served]
    # Epoch 3's hits are what epoch 0 computed; epochs 1 and 2 computed afresh and kept nothing.
    hits_3 = [index for index, stamp in served[3] if stamp == stamps[0][index]]
    assert len(hits_3) == 40
    assert all(stamps[1][i] != stamps[0][i] and stamps[2][i] != stamps[0][i] for i in hits_3)
    reused_4 = [i for i, stamp in served[4] if stamp in (stamps[0][i], stamps[3][i])]
    assert len(reused_4) == 40


def consume_rows(loader: RevamperLoader) -> list[list[int]]:
    """One epoch: each sample's (index, computation stamp)."""
    return [row[:2] for x, _ in loader for row in x.tolist()]


def test_a_schedule_the_loader_cannot_follow_is_refused_and_changes_nothing() -> None:
    with auto_loader() as loader:
        state = loader.state_dict()
        before = loader.plan_config
        for bad, error, match in [
            ([2, 5], ValueError, "max_reuse_factor"),
            ([2, 0], ValueError, r"reuse_schedule'\]\[1\]"),
            ([2, "3"], TypeError, "must be an int"),
            ("23", TypeError, "must be a list of ints"),
        ]:
            with pytest.raises(error, match=match):
                loader.load_state_dict({**state, "reuse_schedule": bad})
            assert loader.plan_config == before and loader.reuse_schedule == ()
        with pytest.raises(ValueError, match="max_reuse_factor"):
            loader.load_state_dict({**state, "max_reuse_factor": 3})
    with RevamperLoader(IndexDataset(60), batch_size=6, reuse_factor=1, seed=0) as fixed:
        fixed_state = fixed.state_dict()
        with pytest.raises(ValueError, match="reuse_schedule"):
            fixed.load_state_dict({**fixed_state, "reuse_schedule": [1, 1]})
        fixed.load_state_dict({**fixed_state, "max_reuse_factor": 1})  # R = r: the same


def test_auto_arguments_are_checked_and_shown() -> None:
    with auto_loader() as loader:
        assert "reuse_factor='auto' (max 4)" in repr(loader)
        assert loader.plan_config.reuse_factor == 1 and loader.plan_config.reuse_bound == 4
    with auto_loader(reuse_factor=ReuseControl(max_reuse_factor=2), max_reuse_factor=None) as own:
        assert own.plan_config.reuse_bound == 2
    with pytest.raises(ValueError, match="'auto'"):
        auto_loader(reuse_factor="fast")
    with pytest.raises(ValueError, match="max_reuse_factor"):
        auto_loader(reuse_factor=3, max_reuse_factor=2)
    with RevamperLoader(IndexDataset(60), batch_size=6, reuse_factor="auto") as default:
        assert default.plan_config.reuse_bound == 4  # the default R
    with auto_loader(max_reuse_factor=1) as never:
        assert never.store is None  # R = 1: nothing could ever be read back


def test_the_disk_cache_identity_names_the_bound(tmp_path: Path) -> None:
    with auto_loader(cache="disk", cache_dir=tmp_path, seed=None) as first:
        consume(first)
        seed = first.seed
    with auto_loader(cache="disk", cache_dir=tmp_path, seed=None) as again:
        assert again.seed == seed  # the same run: the cache (and its seed) is reused
        consume(again)
        assert again.stats[0].unplanned_misses == 0
    with auto_loader(cache="disk", cache_dir=tmp_path, seed=None, max_reuse_factor=3) as other:
        assert other.seed != seed  # another bound, another plan: the cache is not this run's


def test_set_epoch_skipping_ahead_fills_the_schedule() -> None:
    with auto_loader() as loader:
        consume(loader)
        loader.set_epoch(4)
        consume(loader)
        schedule = loader.reuse_schedule
        assert len(schedule) == 4 and len(set(schedule[:3])) == 1
        assert loader.stats[4].reuse_factor == schedule[3]


def test_a_batch_is_stamped_as_it_leaves_its_worker_and_an_epochs_sums_are_not() -> None:
    import pickle

    from revamper.loader.stats import BatchStats, EpochStats

    batch = BatchStats(samples=4, finished_at=time.monotonic() - 5.0)
    sent = pickle.loads(pickle.dumps(batch))
    assert sent.finished_at > batch.finished_at + 4.0  # the pickling restamped it
    assert pickle.loads(pickle.dumps(BatchStats())).finished_at == 0.0  # unknown stays unknown
    epoch = EpochStats(epoch=1)
    epoch.record_batch(batch)
    assert pickle.loads(pickle.dumps(epoch)).finished_at == batch.finished_at
    assert "finished_at" not in epoch.as_dict()


def test_a_fixed_r_state_and_an_auto_state_do_not_load_into_each_other() -> None:
    # Found in review: reuse_factor="auto" starts at r = 1, so a fixed r = 1 with the same R has
    # the same identity; its state, saved mid-epoch, was finished under auto's r for that
    # epoch, repeating 11 samples of 60 and leaving out 11 others.
    fixed_options: dict[str, Any] = {"reuse_factor": 1, "max_reuse_factor": 4}
    with auto_loader(**fixed_options) as fixed:
        for _ in range(3):
            consume(fixed)
        batches = iter(fixed)
        next(batches)
        mid_epoch = fixed.state_dict()
        assert (mid_epoch["epoch"], mid_epoch["batch"]) == (3, 1)
    with auto_loader() as auto:
        before = auto.plan_config
        with pytest.raises(
            ValueError, match=r"fixed reuse_factor.*this loader has reuse_factor='auto'"
        ):
            auto.load_state_dict(mid_epoch)
        assert auto.plan_config == before and auto.state_dict()["epoch"] == 0
        fresh = auto.state_dict()
        assert fresh["reuse_schedule"] == []
        with pytest.raises(ValueError, match="inside epoch 3 but its reuse_schedule"):
            auto.load_state_dict({**fresh, "epoch": 3, "batch": 1, "reuse_schedule": [2]})
    auto_state = r"reuse_factor='auto'.*this loader has reuse_factor=1"
    with auto_loader(**fixed_options) as fixed, pytest.raises(ValueError, match=auto_state):
        fixed.load_state_dict(fresh)  # an empty schedule is still an auto state


def test_auto_refuses_an_epoch_so_far_ahead_that_its_schedule_would_not_fit() -> None:
    # Found in review: a state with epoch 10**9 (or set_epoch far ahead) made the first next()
    # pad the schedule with one r per skipped epoch: seconds to hours, and a state to match.
    with auto_loader() as loader:
        state = loader.state_dict()
        before = loader.plan_config
        with pytest.raises(ValueError, match="beyond what reuse_factor='auto' runs"):
            loader.load_state_dict({**state, "epoch": 10**9})
        assert loader.plan_config == before and loader.state_dict() == state
        with pytest.raises(ValueError, match="use a fixed reuse_factor"):
            loader.set_epoch(10**9)
        loader.set_epoch(5)
        assert len(consume(loader)) == 10
    with RevamperLoader(IndexDataset(60), batch_size=6, reuse_factor=2, seed=0) as fixed:
        fixed.set_epoch(10**9)  # a fixed r has no schedule to fill
        assert len(consume(fixed)) == 10


def test_auto_for_ranks_that_cannot_agree_on_r_is_refused_before_a_cache_exists(
    tmp_path: Path,
) -> None:
    """An explicit rank/world_size without a process group: each rank would choose its own r."""
    with pytest.raises(ValueError, match=r"reuse_factor='auto' with world_size=2.*process group"):
        RevamperLoader(
            IndexDataset(40), batch_size=4, reuse_factor="auto", rank=1, world_size=2, seed=0,
            cache="disk", cache_dir=tmp_path,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
    fixed = RevamperLoader(IndexDataset(40), batch_size=4, rank=1, world_size=2, seed=0)
    fixed.close()
