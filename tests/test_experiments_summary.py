"""Per-arm summaries: accuracy over seeds, the paired difference to standard and its reading."""

from __future__ import annotations

import pytest

from revamper.experiments.intervals import Estimate
from revamper.experiments.summary import reading, summarize
from revamper.experiments.train import STAGES, RunResult


def run(arm: str, seed: int, accuracy: float, cpu: float = 1.0) -> RunResult:
    return RunResult(
        arm=arm,
        seed=seed,
        test_accuracy=accuracy,
        test_loss=0.1,
        train_seconds=10.0,
        wall_seconds=11.0,
        stall_seconds=2.0,
        train_cpu_seconds=8.0,
        input_cpu_seconds=cpu,
        input_cpu_by_stage={stage: cpu / len(STAGES) for stage in STAGES},
        diversity_mean=3.0,
        diversity_fraction=1.0,
        misses=10,
        hits=0,
        cache_bytes=0,
        epochs=[],
    )


def test_summaries_follow_the_arm_order_and_pair_by_seed() -> None:
    runs = [
        run("standard", 0, 0.980, cpu=6.0),
        run("echo-r2", 0, 0.970),
        run("standard", 1, 0.990, cpu=8.0),
        run("echo-r2", 1, 0.981),
        run("standard", 2, 0.985, cpu=7.0),
        run("echo-r2", 2, 0.975),
    ]
    summaries = summarize(["echo-r2", "missing", "standard"], runs)
    assert [s.arm for s in summaries] == ["echo-r2", "standard"]
    echo, standard = summaries
    assert echo.seeds == [0, 1, 2]
    assert echo.vs_standard is not None and standard.vs_standard is None
    assert echo.vs_standard.mean == pytest.approx(-0.0097, abs=1e-4)
    assert echo.reading == "lower"  # -1.0, -0.9, -1.0 points: the interval excludes 0
    assert standard.reading == "-"
    assert standard.input_cpu_seconds.mean == pytest.approx(7.0)
    assert sum(standard.input_cpu_by_stage.values()) == pytest.approx(7.0)
    record = echo.as_dict()
    assert record["reading"] == "lower" and record["vs_standard"]["n"] == 3
    assert record["accuracy"]["mean"] == pytest.approx(0.9753, abs=1e-4)


def test_readings() -> None:
    assert reading(None) == "-"
    assert reading(Estimate.of([0.01])) == "-"
    assert reading(Estimate.of([0.01, 0.02, 0.015])) == "higher"
    assert reading(Estimate.of([-0.01, -0.02, -0.015])) == "lower"
    assert reading(Estimate.of([-0.01, 0.02, 0.0])) == "within noise"
