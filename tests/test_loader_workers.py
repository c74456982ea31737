"""RevamperLoader with real DataLoader worker processes: fork and spawn, persistent or not.

These are the tests where the hard bugs live: state shared between processes, the epoch counter,
entries written by one process and read by another, errors crossing the process boundary, and
shared memory released whatever happens.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import time
from typing import Any

import numpy as np
import pytest

from revamper import RevamperLoader, SampleError, plan_epoch
from tests.helpers import (
    FailAt,
    FailingDataset,
    IndexDataset,
    new_shm,
    shm_names,
    stamp_computation,
)

pytestmark = pytest.mark.slow


def pid_stamp(x: np.ndarray) -> np.ndarray:
    """Partial: append a computation id and the computing process's pid."""
    stamped = stamp_computation(x)
    return np.concatenate([stamped, np.array([os.getpid()], dtype=np.int64)])


def final_pid(x: np.ndarray) -> np.ndarray:
    """Final: append the serving process's pid."""
    return np.concatenate([x, np.array([os.getpid()], dtype=np.int64)])


def consume(loader: RevamperLoader) -> dict[int, list[int]]:
    seen: dict[int, list[int]] = {}
    for data, target in loader:
        for row, label in zip(data.tolist(), target.tolist(), strict=True):
            assert row[0] == label, "served another sample's data"
            assert row[0] not in seen, "sample served twice in one epoch"
            seen[row[0]] = row[1:]
    return seen


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("num_workers", [1, 2])
def test_plan_executed_exactly_across_processes(
    num_workers: int, method: str, persistent: bool
) -> None:
    size, epochs = 60, 5
    loader = RevamperLoader(
        IndexDataset(size),
        batch_size=7,
        shuffle=True,
        partial_transform=pid_stamp,
        final_transform=final_pid,
        reuse_factor=3,
        seed=11,
        num_workers=num_workers,
        multiprocessing_context=method,
        persistent_workers=persistent,
    )
    with loader:
        last: dict[int, int] = {}
        cross_process_hits = 0
        for epoch in range(epochs):
            seen = consume(loader)
            assert sorted(seen) == list(range(size))
            plan = plan_epoch(loader.plan_config, epoch)
            misses = set(plan.indices[plan.planned_miss].tolist())
            for index, (stamp, computed_by, served_by) in seen.items():
                if index in misses:
                    assert stamp != last.get(index)
                else:
                    assert stamp == last[index], f"stale entry for sample {index}"
                    cross_process_hits += computed_by != served_by
                last[index] = stamp
            stats = loader.stats[epoch]
            assert stats.planned_misses == len(misses)
            assert stats.unplanned_misses == 0
            assert stats.hits == size - len(misses)
            assert stats.cpu_partial > 0 and stats.cpu_final > 0
        if num_workers > 1 or not persistent:
            # entries written by one process are served by another
            assert cross_process_hits > 0


def test_epoch_counter_lives_in_the_main_process() -> None:
    # With persistent workers an epoch counter kept in the dataset would be frozen in each
    # worker; ours comes with each batch from the main process.
    loader = RevamperLoader(
        IndexDataset(20),
        batch_size=5,
        shuffle=True,
        partial_transform=stamp_computation,
        reuse_factor=2,
        seed=3,
        num_workers=2,
        persistent_workers=True,
    )
    with loader:
        for _ in range(4):
            consume(loader)
        assert [s.planned_misses for s in loader.stats] == [20, 10, 10, 10]
        assert all(s.unplanned_misses == 0 for s in loader.stats)


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize(
    ("stage", "kwargs"),
    [
        ("load", {"dataset": FailingDataset(40, bad=29)}),
        ("partial_transform", {"partial_transform": FailAt(29)}),
        ("final_transform", {"final_transform": FailAt(29)}),
    ],
)
def test_worker_errors_reach_the_main_process_named(
    stage: str, kwargs: dict[str, Any], method: str
) -> None:
    before = shm_names()
    kwargs = dict(kwargs)
    dataset = kwargs.pop("dataset", IndexDataset(40))
    loader = RevamperLoader(
        dataset,
        batch_size=4,
        shuffle=True,
        num_workers=2,
        multiprocessing_context=method,
        seed=0,
        timeout=120,
        **kwargs,
    )
    # Like user code: the except block ends, the traceback (and the worker pool it pins) go.
    try:
        consume(loader)
    except SampleError as exc:
        index, failed_stage, message = exc.index, exc.stage, str(exc)
    else:
        pytest.fail("no SampleError")
    assert index == 29
    assert failed_stage == stage
    assert "sample 29 failed in stage" in message
    # the worker pool went with the exception, without waiting for a garbage collection
    assert mp.active_children() == []
    loader.close()
    gc.collect()
    assert new_shm(before) == set()


def test_shared_memory_is_released_on_close_and_on_garbage_collection() -> None:
    before = shm_names()
    for release in ("close", "gc"):
        loader = RevamperLoader(
            IndexDataset(30),
            batch_size=5,
            partial_transform=stamp_computation,
            num_workers=2,
            persistent_workers=True,
            seed=0,
        )
        for _ in range(2):
            consume(loader)
        assert loader.store is not None and loader.store.stats().entries == 30
        assert len(shm_names() - before) == 1
        if release == "close":
            loader.close()
        del loader
        gc.collect()
        assert new_shm(before) == set()


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[1] == me:
                        found.add(int(entry))
            except OSError:
                continue
    return found


def test_a_dropped_loader_is_freed_at_once_not_by_the_cycle_collector() -> None:
    # Found in review: the loader and its epochs' source made a reference cycle, so after
    # `del loader` its persistent workers and its shared-memory cache lived on until the cycle
    # collector ran: a loop that builds a loader per experiment piled up caches in /dev/shm.
    before, workers_before = shm_names(), _children()
    gc.disable()
    try:
        loader = RevamperLoader(
            IndexDataset(30), batch_size=5, num_workers=2, persistent_workers=True, seed=0
        )
        consume(loader)
        assert len(shm_names() - before) == 1 and len(_children() - workers_before) == 2
        del loader
        deadline = time.monotonic() + 5  # no gc.collect() here: that would hide the cycle
        while (_children() - workers_before or shm_names() - before) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert not _children() - workers_before and not shm_names() - before
        # An iterator keeps its loader alive, as a DataLoader's does.
        batches = iter(RevamperLoader(IndexDataset(30), batch_size=5, num_workers=2, seed=0))
        assert sum(1 for _ in batches) == 6
    finally:
        gc.enable()


def kill_self_on(x: np.ndarray) -> np.ndarray:
    if int(x[0]) == 17:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_killed_worker_raises_instead_of_hanging_and_recovers() -> None:
    before = shm_names()
    loader = RevamperLoader(
        IndexDataset(30),
        batch_size=5,
        shuffle=True,
        partial_transform=stamp_computation,
        final_transform=kill_self_on,
        num_workers=2,
        seed=0,
    )
    try:
        consume(loader)
    except RuntimeError as exc:
        message = str(exc)
    assert "exited unexpectedly" in message or "killed" in message
    loader.close()
    gc.collect()
    assert new_shm(before) == set()


def sleepy(x: np.ndarray) -> np.ndarray:
    time.sleep(2)
    return x


def test_timeout_is_passed_to_the_dataloader() -> None:
    loader = RevamperLoader(
        IndexDataset(4), batch_size=2, final_transform=sleepy, num_workers=1, timeout=1, seed=0
    )
    with loader, pytest.raises(RuntimeError, match="timed out"):
        consume(loader)


def count_calls(worker_id: int) -> None:
    os.environ["REVAMPER_TEST_WORKER"] = str(worker_id)


def worker_tag(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.array([int(os.environ["REVAMPER_TEST_WORKER"])])])


def test_worker_init_fn_and_collate_fn_run_in_workers() -> None:
    def collate(samples: list[Any]) -> list[Any]:
        return samples

    loader = RevamperLoader(
        IndexDataset(8),
        batch_size=2,
        final_transform=worker_tag,
        worker_init_fn=count_calls,
        collate_fn=collate,
        num_workers=2,
        seed=0,
    )
    with loader:
        tags = {int(sample[0][-1]) for batch in loader for sample in batch}
    assert tags == {0, 1}


def test_with_persistent_workers_an_iterator_overtaken_by_a_newer_epoch_refuses_to_go_on() -> None:
    # Found in review: the epochs share the DataLoader's one iterator, so iterator `a` (epoch 0)
    # yielded epoch 1's batches once `b` started, counting them, and the resume position, as
    # epoch 0's.
    with RevamperLoader(
        IndexDataset(40), batch_size=4, num_workers=2, persistent_workers=True, seed=0
    ) as loader:
        a = iter(loader)
        next(a)
        b = iter(loader)
        first = next(b)
        with pytest.raises(RuntimeError, match="another iterator of this RevamperLoader"):
            next(a)
        rest = [batch[0][:, 0].tolist() for batch in b]
        indices = sorted(first[0][:, 0].tolist() + [i for batch in rest for i in batch])
        assert indices == list(range(40))  # b's epoch is whole and its own
        assert (loader.stats[0].batches, loader.stats[1].batches) == (1, 10)
        assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (1, 10)
        # An epoch that delivered all its batches stops, whatever epoch runs now.
        c = iter(loader)
        next(c)
        with pytest.raises(StopIteration):
            next(b)
        assert len([next(c) for _ in range(9)]) == 9
