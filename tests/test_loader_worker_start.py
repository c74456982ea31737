"""Forked workers that never start (a lock held by another thread at the fork) are forked again.

The child of a fork here is made to hang inside ``os.fork()`` itself, where CPython 3.11.7's
own lock hangs it (gh-112275): an ``after_in_child`` fork hook that blocks, armed for the next
forks only. Without the watch torch waits for such a worker for ever (the test times out).
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import pickle
import re
import time
import warnings
from typing import Any

import pytest
from torch.utils.data import DataLoader

from revamper import RevamperLoader
from revamper.loader import worker_start
from revamper.loader.worker_start import ForkWatch, StartLog
from revamper.loader.workers import WorkerInit
from tests.helpers import IndexDataset, stamp_computation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

_STUCK = mp.Value("i", 0)  # the next forks that hang in the child
_HANG_S = mp.Value("d", 3600.0)  # for how long they hang


def _hang_if_armed() -> None:
    with _STUCK.get_lock():
        armed = _STUCK.value > 0
        if armed:
            _STUCK.value -= 1
    if armed:
        time.sleep(_HANG_S.value)


os.register_at_fork(after_in_child=_hang_if_armed)


@pytest.fixture
def stick(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Arm ``n`` hanging forks (for ``hang_s`` seconds); the deadline drops to 1 s."""
    monkeypatch.setattr(worker_start, "START_DEADLINE_S", 1.0)

    def arm(n: int, hang_s: float = 3600.0) -> None:
        _HANG_S.value = hang_s
        _STUCK.value = n

    yield arm
    _STUCK.value = 0


def make(**options: Any) -> RevamperLoader:
    options.setdefault("num_workers", 2)
    return RevamperLoader(
        IndexDataset(40),
        batch_size=5,
        shuffle=True,
        partial_transform=stamp_computation,
        reuse_factor=2,
        seed=5,
        multiprocessing_context="fork",
        **options,
    )


def epochs(loader: RevamperLoader, count: int) -> list[list[list[int]]]:
    """Every batch's rows (sample index, then the computation's stamp), epoch by epoch."""
    return [[data.tolist() for data, _ in loader] for _ in range(count)]


def restarts(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "never started after their fork" in str(w.message)]


@pytest.mark.parametrize("persistent", [False, True])
def test_a_worker_stuck_in_its_fork_is_forked_again_and_the_epochs_are_unchanged(
    stick: Any, persistent: bool
) -> None:
    with make(persistent_workers=persistent) as loader:
        expected = epochs(loader, 3)
    stick(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with make(persistent_workers=persistent) as loader:
            served = epochs(loader, 3)
    assert served == expected  # the same batches, in the same order, with the same misses
    assert (
        len(restarts(caught)) == 1
        and "multiprocessing_context='forkserver'" in (restarts(caught)[0])
    )
    deadline = time.monotonic() + 10
    while mp.active_children() and time.monotonic() < deadline:  # the stuck one was killed
        time.sleep(0.05)
    assert mp.active_children() == []


def test_a_stuck_fork_in_a_later_epoch_is_forked_again() -> None:
    # Without persistent workers every epoch forks: the second one hangs here.
    with make() as loader:
        expected = epochs(loader, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with make() as loader:
            served = epochs(loader, 1)
            _STUCK.value = 2  # both workers of epoch 1
            try:
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(worker_start, "START_DEADLINE_S", 1.0)
                    served += epochs(loader, 2)
            finally:
                _STUCK.value = 0
    assert served == expected
    assert len(restarts(caught)) == 1
    assert re.match(r"DataLoader worker process\(es\) \d+, \d+ never", restarts(caught)[0])


def test_a_worker_slow_to_start_but_within_the_deadline_is_not_forked_again(
    stick: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_start, "START_DEADLINE_S", 5.0)
    stick(1, hang_s=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with make() as loader:
            assert sorted(i for batch in epochs(loader, 1)[0] for i, _ in batch) == list(range(40))
    assert restarts(caught) == []


def test_after_the_last_fork_made_again_the_loader_waits_as_torch_does(
    stick: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_start, "MAX_RESTARTS", 1)
    monkeypatch.setattr(worker_start, "START_DEADLINE_S", 0.5)
    stick(2, hang_s=2.0)  # the first fork's worker and the one forked again both hang 2 s
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with make(num_workers=1) as loader:
            served = epochs(loader, 1)[0]
    assert sorted(i for batch in served for i, _ in batch) == list(range(40))
    assert len(restarts(caught)) == 1
    assert any("still have not started" in str(w.message) for w in caught)


def test_only_forked_workers_are_watched() -> None:
    data = IndexDataset(4)
    log = StartLog(2)
    assert ForkWatch.before_iter(DataLoader(data, num_workers=2), None) is None
    assert ForkWatch.before_iter(DataLoader(data, num_workers=0), log) is None
    for method in ("spawn", "forkserver"):
        loader = DataLoader(data, num_workers=2, multiprocessing_context=method)
        assert ForkWatch.before_iter(loader, log) is None
    forked = DataLoader(data, num_workers=2, multiprocessing_context="fork")
    assert ForkWatch.before_iter(forked, log) is not None


def test_a_copied_worker_init_gets_slots_of_its_own() -> None:
    init = WorkerInit(None, StartLog(2))
    for copied in (copy.deepcopy(init), pickle.loads(pickle.dumps(init))):
        assert copied.start_log is not None and copied.start_log is not init.start_log
        copied.start_log.record(1)
        assert copied.start_log.started() == {os.getpid()}
        assert init.start_log is not None and init.start_log.started() == set()
    init.start_log.record(7)  # a worker id out of range is ignored
    assert init.start_log.started() == set()
