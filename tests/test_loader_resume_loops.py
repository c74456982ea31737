"""Resuming inside the training loops people write, compared with the uninterrupted run.

A checkpoint taken right after an epoch's last batch says "epoch e, every batch done" (as
torchdata's ``StatefulDataLoader`` does, issue 12.10): the resumed loader first yields the zero
batches left of epoch e, then epoch e + 1. So both the plain loop
``for epoch in range(state["epoch"], E): for batch in loader`` and the README's loop, which also
calls ``loader.set_epoch(epoch)`` at the top of every epoch, continue exactly as the run that was
never interrupted: the same samples in the same batches and the same miss plan, epoch by epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from revamper import RevamperLoader
from tests.helpers import IndexDataset, stamp_computation

N, B, R, E = 36, 4, 3, 6  # 9 batches per epoch


def make(cache_dir: Path, **kwargs: Any) -> RevamperLoader:
    return RevamperLoader(
        IndexDataset(N),
        batch_size=B,
        shuffle=True,
        partial_transform=stamp_computation,
        reuse_factor=R,
        seed=3,
        cache="disk",  # survives the restart: the miss plan can be compared exactly
        cache_dir=cache_dir,
        **kwargs,
    )


Epoch = tuple[int, list[list[int]], int, int]  # epoch, batches' indices, planned, unplanned


def record(loader: RevamperLoader, epoch: int, *, set_epoch: bool, stop: int | None = None) -> Any:
    """Run one epoch of a training loop; with ``stop``, checkpoint after that many batches."""
    if set_epoch:
        loader.set_epoch(epoch)
    got: list[list[int]] = []
    state = None
    for data, _ in loader:
        got.append(data[:, 0].tolist())
        if stop is not None and len(got) == stop:
            state = loader.state_dict()  # inside the loop, right after the batch
            if stop < len(loader):
                break
    if stop is None:
        stats = loader.stats[epoch]
        return epoch, got, stats.planned_misses, stats.unplanned_misses
    return got, state


def uninterrupted(tmp: Path, *, set_epoch: bool, num_workers: int) -> list[Epoch]:
    cache = tmp / "reference"
    cache.mkdir()
    with make(cache, num_workers=num_workers) as loader:
        return [record(loader, epoch, set_epoch=set_epoch) for epoch in range(E)]


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("set_epoch", [False, True], ids=["plain-loop", "set_epoch-loop"])
@pytest.mark.parametrize("stop", [9, 4], ids=["end-of-epoch", "mid-epoch"])
def test_a_resumed_loop_continues_exactly_as_the_uninterrupted_run(
    tmp_path: Path, num_workers: int, set_epoch: bool, stop: int
) -> None:
    expected = uninterrupted(tmp_path, set_epoch=set_epoch, num_workers=num_workers)
    cache = tmp_path / "run"
    cache.mkdir()
    with make(cache, num_workers=num_workers) as first:
        done = [record(first, epoch, set_epoch=set_epoch) for epoch in range(2)]
        head, state = record(first, 2, set_epoch=set_epoch, stop=stop)
        if stop == len(first):  # the loop ended the epoch normally: the state does not move
            assert first.state_dict() == state
    assert done == expected[:2] and head == expected[2][1][:stop]
    assert (state["epoch"], state["batch"]) == (2, stop)
    with make(cache, num_workers=num_workers) as second:  # the restarted job
        second.load_state_dict(state)
        resumed = [record(second, epoch, set_epoch=set_epoch) for epoch in range(state["epoch"], E)]
    tail = resumed[0]
    assert tail[1] == expected[2][1][stop:]  # nothing left after an epoch's last batch
    assert resumed[1:] == expected[3:]  # then every later epoch as if never interrupted


def test_setting_the_next_epoch_after_an_end_of_epoch_state_starts_it_afresh(
    tmp_path: Path,
) -> None:
    expected = uninterrupted(tmp_path, set_epoch=True, num_workers=0)
    with make(tmp_path) as first:
        for epoch in range(3):
            record(first, epoch, set_epoch=True)
        state = first.state_dict()
    assert (state["epoch"], state["batch"]) == (2, 9)
    with make(tmp_path) as second:
        second.load_state_dict(state)
        second.set_epoch(3)  # a loop counting from the epoch after the checkpoint's
        assert [record(second, epoch, set_epoch=True) for epoch in range(3, E)] == expected[3:]
