"""Benchmark summaries from synthetic records, and the memory sampler."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np
import pytest

from revamper.bench.harness import EpochRecord, RunRecord
from revamper.bench.procfs import PeakMemorySampler, process_tree, tree_pss_bytes
from revamper.bench.scenarios import Scenario
from revamper.bench.summary import summarize


def record(scenario: str, repeat: int, epoch: int, wall: float, **stats: float) -> EpochRecord:
    base = {
        "samples": 100,
        "planned_misses": 100 if epoch == 0 else 33,
        "unplanned_misses": 0,
        "hits": 0 if epoch == 0 else 67,
        "cache_reads": 0 if epoch == 0 else 67,
        "cache_writes": 0,
        "cpu_load": 0.01,
        "cpu_partial": 0.2,
        "cpu_final": 0.08,
        "cpu_cache_read": 0.0,
        "cpu_cache_write": 0.0,
        "cpu_collate": 0.02,
    }
    base.update(stats)
    base["batch_cpu"] = [0.1, 0.1, 0.2, 0.05]  # the last, short batch is left out of the CV
    base["batch_samples"] = [30, 30, 30, 10]
    return EpochRecord(scenario, repeat, epoch, 100, wall, [wall / 4] * 4, base)


def run(scenario: str, repeat: int, walls: list[float], **stats: float) -> RunRecord:
    epochs = [record(scenario, repeat, e, w, **stats) for e, w in enumerate(walls)]
    return RunRecord(scenario, repeat, epochs, 10_000, 0)


def test_ratios_are_paired_within_repeats() -> None:
    # repeat 1 ran on a machine twice as slow: paired ratios stay at 2.0
    no_cache = {"planned_misses": 100, "hits": 0, "cache_reads": 0}
    runs = [
        run("standard", 0, [1.0, 1.0, 1.0], **no_cache),
        run("refurbish-r3", 0, [1.0, 0.5, 0.5], cpu_partial=0.066),
        run("standard", 1, [2.0, 2.0, 2.0], **no_cache),
        run("refurbish-r3", 1, [2.0, 1.0, 1.0], cpu_partial=0.066),
    ]
    scenarios = [Scenario("standard"), Scenario("refurbish", 3)]
    standard, refurbish = summarize(scenarios, runs)
    assert refurbish.steady_speedup is not None
    assert refurbish.steady_speedup.median == pytest.approx(2.0)
    assert refurbish.steady_speedup.low == pytest.approx(2.0)
    assert refurbish.steady_sps is not None
    assert (refurbish.steady_sps.low, refurbish.steady_sps.high) == (100, 200)
    assert refurbish.epoch0_speedup is not None
    assert refurbish.epoch0_speedup.median == pytest.approx(1.0)
    assert standard.bound == 1.0
    # stage costs from standard: (0.1 + 2 + 0.8 + 0.2) ms; refurbishing at r=3 reads for free here
    expected_bound = 3.1 / ((0.1 + 2.0) / 3 + 0.8 + 0.2)
    assert refurbish.bound == pytest.approx(expected_bound)
    assert refurbish.fraction_of_bound == pytest.approx(2.0 / expected_bound)
    assert refurbish.wait_cv == pytest.approx(0.0)  # per epoch: every wait alike
    assert refurbish.misses_per_epoch["planned"] == 33
    assert refurbish.batch_cpu_cv == pytest.approx(np.std([1, 1, 2]) / np.mean([1, 1, 2]))


def test_without_standard_there_are_no_ratios() -> None:
    (only,) = summarize([Scenario("refurbish", 2)], [run("refurbish-r2", 0, [1.0, 0.5])])
    assert only.steady_speedup is None and only.bound is None


def _sleep() -> None:
    time.sleep(3)


def test_memory_of_the_process_tree() -> None:
    child = mp.get_context("fork").Process(target=_sleep)
    child.start()
    try:
        assert child.pid in process_tree(os.getpid())
        total = tree_pss_bytes()
        assert total is not None and total > 10 * 2**20
        with PeakMemorySampler(interval=0.05) as sampler:
            time.sleep(0.2)
        assert sampler.peak_bytes is not None and sampler.peak_bytes > 10 * 2**20
    finally:
        child.terminate()
        child.join()


def test_lru_replay_reads_what_an_lru_of_that_size_misses() -> None:
    from revamper.bench.lru import simulate_lru
    from revamper.plan import PlanConfig, plan_epoch

    config = PlanConfig(num_samples=300, reuse_factor=3, batch_size=10, seed=1)
    everything = simulate_lru(config, 5, 100.0, 300 * 100.0)
    assert everything == [0.0] * 5  # it all fits: nothing is read from disk
    nothing = simulate_lru(config, 5, 100.0, 0.0)
    for epoch in range(1, 5):
        hits = int((~plan_epoch(config, epoch).planned_miss).sum())
        assert nothing[epoch] == hits * 100.0  # every hit comes from disk
    half = simulate_lru(config, 5, 100.0, 150 * 100.0)
    for epoch in range(2, 5):
        # a random order each epoch: an LRU of half the entries keeps far less than half the hits
        assert 0.7 * nothing[epoch] < half[epoch] < nothing[epoch]
