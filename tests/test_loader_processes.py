"""Resume and start methods with real worker processes: what single-process tests cannot show.

A mid-epoch state taken while two workers prefetch must name the next batch *delivered*, not the
next one a worker took; and the ``forkserver`` start method (which pickles everything the
workers get, from a server process that never saw the loader) must execute the plan as fork
and spawn do: every sample once, planned hits served from entries another process wrote.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revamper import RevamperLoader, plan_epoch
from tests.helpers import IndexDataset

pytestmark = pytest.mark.slow

N, B, R = 40, 4, 3


def stamp_computation(x: np.ndarray) -> np.ndarray:
    """Partial: append an id of this computation from the OS, not from a seeded RNG.

    Two loaders with one seed give their workers the same RNG streams, so a seeded id could
    repeat across the runs of one test.
    """
    return np.concatenate([x, np.array([int.from_bytes(os.urandom(7), "little")])])


def make(**kwargs: Any) -> RevamperLoader:
    return RevamperLoader(
        IndexDataset(N),
        batch_size=B,
        shuffle=True,
        partial_transform=stamp_computation,
        reuse_factor=R,
        seed=5,
        **kwargs,
    )


def rows(data: Any) -> list[tuple[int, int]]:
    """``(index, stamp)`` of every sample of a batch: which sample, and which computation."""
    return [(int(row[0]), int(row[1])) for row in data.tolist()]


def test_resume_with_two_workers_yields_exactly_the_remaining_batches(tmp_path: Path) -> None:
    with make() as reference:  # the uninterrupted run's order (a pure function of the plan)
        expected = [[[i for i, _ in rows(data)] for data, _ in reference] for _ in range(3)]
    stop = 3
    seen: dict[int, int] = {}  # the stamp of each sample's latest computation, in the first run
    with make(num_workers=2, cache="disk", cache_dir=tmp_path) as first:
        for data, _ in first:
            seen.update(rows(data))
        iterator = iter(first)
        done = []
        for data, _ in iterator:  # the workers run ahead of this: they prefetch
            done.append(rows(data))
            seen.update(rows(data))
            if len(done) == stop:
                break
        state = first.state_dict()
        del iterator
    assert (state["epoch"], state["batch"]) == (1, stop)
    assert [[i for i, _ in batch] for batch in done] == expected[1][:stop]
    with make(num_workers=2, cache="disk", cache_dir=tmp_path) as second:
        second.load_state_dict(state)
        rest = [rows(data) for data, _ in second]
        assert [[i for i, _ in batch] for batch in rest] == expected[1][stop:]
        plan = plan_epoch(second.plan_config, 1)
        misses = set(plan.indices[plan.planned_miss].tolist())
        for index, stamp in (sample for batch in rest for sample in batch):
            if index in misses:
                assert stamp != seen[index]  # recomputed, as the plan says
            else:
                assert stamp == seen[index], f"sample {index} is not the entry cached for it"
        stats = second.stats[1]
        assert stats.first_batch == stop and stats.complete
        assert stats.unplanned_misses == 0
        assert [[i for i, _ in rows(data)] for data, _ in second] == expected[2]


def test_forkserver_workers_execute_the_plan_exactly() -> None:
    last: dict[int, int] = {}
    with make(num_workers=2, multiprocessing_context="forkserver") as loader:
        for epoch in range(3):
            served = [sample for data, _ in loader for sample in rows(data)]
            assert sorted(index for index, _ in served) == list(range(N))
            plan = plan_epoch(loader.plan_config, epoch)
            misses = set(plan.indices[plan.planned_miss].tolist())
            for index, stamp in served:
                if index in misses:
                    assert stamp != last.get(index)
                else:
                    assert stamp == last[index], f"stale entry for sample {index}"
                last[index] = stamp
            stats = loader.stats[epoch]
            assert stats.planned_misses == len(misses) and stats.unplanned_misses == 0
            assert stats.hits == N - len(misses) and (epoch == 0) == (stats.hits == 0)
