"""``revamper bench`` with the ``auto`` scenario: fixed r and auto side by side, with diversity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from revamper.bench.scenarios import Scenario
from revamper.cli import main
from tests.test_bench_cli import make_folder


def test_auto_is_a_scenario_whose_r_is_the_bound() -> None:
    auto = Scenario.parse("auto:3")
    assert auto.name == "auto-r3" and auto.caches and auto.reuse_factor == 3


@pytest.mark.slow
def test_step_ms_shows_fixed_r_and_auto_with_their_r_and_diversity(
    tmp_path: Path, capsys: Any
) -> None:
    data = make_folder(tmp_path / "data", classes=2, per_class=12)
    out = tmp_path / "out"
    argv = ["bench", "--data", str(data), "--reuse", "2", "--workers", "0", "--step-ms", "2"]
    small = ["--epochs", "3", "--repeats", "1", "--batch-size", "4", "--no-progress"]
    assert main([*argv, *small, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "auto-r2" in printed and "diversity" in printed  # on by default with --step-ms
    records = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    summaries = {r["scenario"]: r for r in records if r["type"] == "summary"}
    assert summaries["standard"]["diversity"] == 1.0
    assert summaries["refurbish-r2"]["diversity"] == 0.5 and summaries["refurbish-r2"][
        "reuse_factors"
    ] == [2]
    chosen = summaries["auto-r2"]["reuse_factors"]
    assert chosen and set(chosen) <= {1, 2}
    fresh = summaries["auto-r2"]["diversity"]
    assert 0.5 <= fresh <= 1.0
