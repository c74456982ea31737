"""What ``print(loader.stats[e])`` shows: one line for people; ``as_dict()`` keeps everything.

(Issue 12.11: it printed a dataclass with per-batch lists, 20,000 numbers per ImageNet epoch.)
"""

from __future__ import annotations

import time

from revamper import RevamperLoader
from tests.helpers import IndexDataset, stamp_computation

N, B = 400, 2  # 200 batches: the old repr grew with them


def loader() -> RevamperLoader:
    return RevamperLoader(
        IndexDataset(N), batch_size=B, shuffle=True, partial_transform=stamp_computation, seed=0
    )


def test_an_epochs_str_is_one_short_line_with_the_figures_that_matter() -> None:
    with loader() as run:
        for _ in range(2):
            list(run)
        line = str(run.stats[1])
    assert "\n" not in line and len(line) < 400, line
    for part in (
        "epoch 1:",
        f"{N} samples in 200 batches",
        "samples/s",
        f"{run.stats[1].hits} hits",
        f"{run.stats[1].planned_misses} planned + 0 unplanned misses",
        "MB held",
        "MB read",
        "MB written to disk",
        "CPU ms/sample: load ",
        "partial ",
        "final ",
        "cache ",
        "collate ",
    ):
        assert part in line, (part, line)


def test_reprs_are_short_and_as_dict_keeps_everything() -> None:
    with loader() as run:
        for _ in range(8):
            list(run)
        stats = run.stats[0]
        text = repr(stats)
        assert text.startswith("EpochStats(epoch=0,") and len(text) < 250 and "[" not in text
        assert len(stats.as_dict()["batch_cpu"]) == 200
        assert stats.as_dict()["samples"] == N
        whole = repr(run.stats)
        assert whole.startswith("LoaderStats(8 epochs: 0..7") and len(whole) < 400
        assert len(str(run.stats).splitlines()) == 9  # a header and one line per epoch


def test_a_cut_or_resumed_epoch_says_so() -> None:
    with loader() as run:
        for count, _ in enumerate(run, 1):
            if count == 5:
                break
        assert "5 batches of 200 (cut)" in str(run.stats[0])
        state = run.state_dict()
    with loader() as resumed:
        resumed.load_state_dict(state)
        list(resumed)
        assert "195 batches from batch 5" in str(resumed.stats[0])


def test_reading_an_iterators_stats_before_its_first_batch_does_not_start_the_clock() -> None:
    # Found in review: `it.stats` before the loop bound the epoch and started its clock, so the
    # idle time before the first next() counted as the epoch's, and auto measured it.
    with RevamperLoader(IndexDataset(8), batch_size=4, seed=0) as loader:
        batches = iter(loader)
        assert batches.stats.epoch == 0
        time.sleep(0.5)
        for _ in batches:
            pass
        assert batches.stats.wall_seconds < 0.4
