"""The sweep's statistics, the paper's diversity formula, the Pareto front and the report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from revamper.experiments.intervals import t_quantile_975
from revamper.experiments.paper_diversity import expected_versions
from revamper.experiments.sweep_figures import pareto_front
from revamper.experiments.sweep_report import markdown, write_report
from revamper.experiments.sweep_stats import (
    echo_vs_refurbish,
    pooled_echo_vs_refurbish,
    sign_test,
    summarize_cells,
)


def test_formula_limits_match_the_paper() -> None:
    k = 12
    assert expected_versions("none", 1, k, 25) == 1.0
    assert expected_versions("standard", 1, k, 25) == k  # continuous partial part
    assert expected_versions("echo", 4, k, 25) == pytest.approx(3.0)
    # |A_F| = 1 is echoing, r = 1 is standard, for finite and unbounded |A|.
    for full in (math.inf, 50.0):
        echo = expected_versions("echo", 3, k, 1, full)
        assert expected_versions("refurbish", 3, k, 1, full) == pytest.approx(echo)
        standard = expected_versions("standard", 1, k, 7, full)
        assert expected_versions("refurbish", 1, k, 7, full) == pytest.approx(standard)
    # |A_F| = |A| is standard.
    assert expected_versions("refurbish", 3, k, 40, 40) == pytest.approx(
        expected_versions("standard", 1, k, 40, 40)
    )
    # design.md: one RandAugment layer (14 ops) in the final part at r = 3 keeps about 0.93.
    assert expected_versions("refurbish", 3, k, 14) / k == pytest.approx(0.93, abs=0.005)
    with pytest.raises(ValueError, match="unknown arm kind"):
        expected_versions("bogus", 2, k, 25)


def _runs() -> list[dict[str, Any]]:
    accuracy = {  # seed -> arm -> accuracy, one cell
        0: {"standard": 0.90, "echo-r2": 0.85, "refurbish-r2": 0.89, "none": 0.80},
        1: {"standard": 0.92, "echo-r2": 0.86, "refurbish-r2": 0.92, "none": 0.81},
        2: {"standard": 0.91, "echo-r2": 0.85, "refurbish-r2": 0.90, "none": 0.79},
    }
    runs = []
    for seed, arms in accuracy.items():
        for arm, value in arms.items():
            kind, _, r = arm.partition("-r")
            runs.append(
                {
                    "key": f"digits/100/{arm}/{seed}", "task": "digits", "train_size": 100,
                    "arm": arm, "seed": seed, "kind": kind, "reuse_factor": int(r or 1),
                    "epochs": 10, "steps": 20, "test_accuracy": value,
                    "input_cpu_seconds": {"standard": 4.0, "none": 0.5}.get(arm, 2.0),
                    "process_cpu_seconds": 5.0, "diversity_mean": 5.0,
                    "diversity_formula": 5.0,
                }
            )  # fmt: skip
    return runs


def test_paired_differences_per_cell() -> None:
    summaries = {s.arm: s for s in summarize_cells(_runs())}
    assert summaries["standard"].vs_standard is None
    echo = summaries["echo-r2"].vs_standard
    assert echo is not None
    diffs = [-0.05, -0.06, -0.06]
    assert echo.mean == pytest.approx(sum(diffs) / 3)
    std = math.sqrt(sum((d - echo.mean) ** 2 for d in diffs) / 2)
    assert echo.half_width == pytest.approx(t_quantile_975(2) * std / math.sqrt(3))
    assert summaries["echo-r2"].reading == "lower"
    assert summaries["none"].reading == "lower"
    assert summaries["refurbish-r2"].reading == "within noise"
    (row,) = echo_vs_refurbish(_runs())
    assert row.reuse_factor == 2 and row.delta.n == 3
    assert row.delta.mean == pytest.approx((-0.04 - 0.06 - 0.05) / 3)
    assert row.reading == "refurbish better"


def test_pairing_uses_only_shared_seeds() -> None:
    runs = [r for r in _runs() if not (r["arm"] == "standard" and r["seed"] == 2)]
    echo = {s.arm: s for s in summarize_cells(runs)}["echo-r2"]
    assert echo.vs_standard is not None and echo.vs_standard.n == 2
    assert echo.accuracy.n == 3


def test_pareto_front() -> None:
    points = [(1.0, 90.0), (2.0, 95.0), (3.0, 94.0), (0.5, 80.0), (2.0, 95.0), (4.0, 96.0)]
    # (3, 94) is beaten by (2, 95); the two equal points (2, 95) do not dominate each other.
    assert pareto_front(points) == [3, 0, 1, 4, 5]
    assert pareto_front([]) == []


def test_report_works_on_a_partial_sweep(tmp_path: Path) -> None:
    runs = [r for r in _runs() if r["seed"] < 2 and r["arm"] != "refurbish-r2"]
    text = markdown(runs)
    assert "digits, 100 training samples (10 epochs, 20 steps)" in text
    assert "| echo-r2 | 2 |" in text and "refurbish" not in text.split("echo − refurbish")[0]
    written = write_report(tmp_path, runs)
    names = {p.name for p in written}
    assert names == {"sweep.md", "accuracy-digits-cost.png", "accuracy-sizes.png"}
    for path in written:
        assert path.stat().st_size > 0
    assert (tmp_path / "accuracy-digits-cost.png").read_bytes().startswith(b"\x89PNG")


def test_sign_test_and_pooling_over_sizes() -> None:
    assert sign_test(0, 5) == pytest.approx(2 / 32)
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(3, 3) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    other = [{**r, "train_size": 200, "key": r["key"].replace("/100/", "/200/")} for r in _runs()]
    for run in other:  # at 200 samples echoing is better by 0.01 with seed 0 only
        if run["arm"] == "echo-r2":
            run["test_accuracy"] = {0: 0.90, 1: 0.91, 2: 0.89}[run["seed"]]
    (pooled,) = pooled_echo_vs_refurbish(_runs() + other)
    assert (pooled.task, pooled.reuse_factor, pooled.delta.n) == ("digits", 2, 6)
    assert (pooled.negative, pooled.positive) == (5, 1)  # 0.90-0.89 > 0; 0.91-0.92, 0.89-0.90 < 0
    assert pooled.sign_p == pytest.approx(sign_test(5, 1))
    assert pooled.delta.mean == pytest.approx((-0.04 - 0.06 - 0.05 + 0.01 - 0.01 - 0.01) / 6)
    assert "pooled over each task's sizes" in markdown(_runs() + other)
