"""When an epoch starts: at its iterator's first batch, as with ``DataLoader`` (issue 12.1).

Lightning calls ``iter()`` on a loader that is not a ``DataLoader`` to check that it is iterable,
and drops the iterator. That must cost nothing: no epoch used up (or every trainer epoch would run
the next loader epoch's plan, with unplanned misses), no worker process started.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from revamper import RevamperLoader, plan_epoch
from tests.helpers import IndexDataset, stamp_computation

N, B, R = 30, 4, 3


def make(**kwargs: Any) -> RevamperLoader:
    return RevamperLoader(
        IndexDataset(N),
        batch_size=B,
        shuffle=True,
        partial_transform=stamp_computation,
        reuse_factor=R,
        seed=7,
        **kwargs,
    )


def indices(iterable: Any) -> list[list[int]]:
    return [data[:, 0].tolist() for data, _ in iterable]


def reference(epochs: int) -> list[list[list[int]]]:
    with make() as loader:
        return [indices(loader) for _ in range(epochs)]


class MarkWorker:
    """``worker_init_fn`` that leaves a file per started worker process in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, worker_id: int) -> None:
        (self.directory / f"{os.getpid()}-{worker_id}").touch()


def check_epochs_follow_the_plan(loader: RevamperLoader, epochs: int) -> None:
    assert [s.epoch for s in loader.stats] == list(range(epochs))
    for stats in loader.stats:
        plan = plan_epoch(loader.plan_config, stats.epoch)
        assert stats.planned_misses == int(plan.planned_miss.sum())
        assert stats.unplanned_misses == 0


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_an_iterator_dropped_before_its_first_batch_uses_up_no_epoch(num_workers: int) -> None:
    expected = reference(4)
    with make(num_workers=num_workers) as loader:
        probe = iter(loader)  # what Lightning does before training, then drops it
        assert len(probe) == len(loader)
        del probe
        assert loader.epoch == 0 and len(loader.stats) == 0
        assert loader.state_dict()["epoch"] == 0
        got = []
        for _ in range(4):
            iter(loader)  # dropped again: still nothing
            got.append(indices(loader))
        assert got == expected
        check_epochs_follow_the_plan(loader, 4)


def test_set_epoch_between_iter_and_the_first_batch_applies_to_that_iterator() -> None:
    expected = reference(4)
    with make() as loader:
        indices(loader)
        iterator = iter(loader)
        loader.set_epoch(3)  # a framework may set the epoch after making the iterator
        assert indices(iterator) == expected[3]
        assert loader.epoch == 4 and loader.stats.last is not None
        assert loader.stats.last.epoch == 3


def test_the_iterators_statistics_bind_its_epoch() -> None:
    with make() as loader:
        iterator = iter(loader)
        assert not iterator.started
        assert iterator.stats.epoch == 0  # bound: epoch 0 is taken
        assert loader.epoch == 1 and len(loader.stats) == 1
        assert len(indices(iterator)) == len(loader)
        assert loader.stats[0].complete


@pytest.mark.slow
@pytest.mark.parametrize("persistent", [False, True])
def test_an_unstarted_iterator_starts_no_worker(tmp_path: Path, persistent: bool) -> None:
    with make(
        num_workers=2,
        worker_init_fn=MarkWorker(tmp_path),
        multiprocessing_context="fork",
        persistent_workers=persistent,
    ) as loader:
        for _ in range(3):
            iter(loader)
        assert list(tmp_path.iterdir()) == []
        assert len(indices(loader)) == len(loader)
        assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.slow
def test_an_epoch_with_no_batch_left_starts_no_worker(tmp_path: Path) -> None:
    with make() as first:
        indices(first)
        state = first.state_dict()
    with make(num_workers=2, worker_init_fn=MarkWorker(tmp_path)) as second:
        second.load_state_dict(state)  # epoch 0 with every batch done
        assert indices(second) == []
        assert list(tmp_path.iterdir()) == []
