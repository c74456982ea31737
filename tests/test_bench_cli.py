"""``revamper bench`` end to end with tiny sizes, and its one-line argument errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from revamper.cli import main


def make_folder(root: Path, classes: int = 3, per_class: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.jpg", quality=90)
    return root


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


SMALL = ["--epochs", "2", "--repeats", "1", "--batch-size", "8", "--no-progress"]


@pytest.mark.slow
def test_smoke_run_writes_schema_checked_results_and_figure(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    out = tmp_path / "out"
    scenarios = "standard,simplified,echo:2,refurbish:2,unbalanced:2"
    argv = ["bench", "--data", str(data), "--scenarios", scenarios, "--workers", "1"]
    small = ["--epochs", "2", "--repeats", "2", "--batch-size", "8", "--no-progress"]
    assert main([*argv, *small, "--out", str(out)]) == 0
    records = read_jsonl(out / "bench.jsonl")
    kinds = [r["type"] for r in records]
    assert kinds[:2] == ["environment", "options"]
    assert all(r["schema"] == 1 for r in records)
    env = records[0]
    for key in ("cpu_count", "torch", "torchvision", "start_method", "python"):
        assert env[key]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert len(epochs) == 5 * 2 * 2  # scenarios x repeats x epochs
    for record in epochs:
        assert record["samples"] == 24
        assert len(record["waits"]) == 3  # batches of 8
        assert record["samples_per_second"] > 0
        assert {"planned_misses", "hits", "cpu_partial", "cpu_final"} <= set(record["stats"])
    summaries = {r["scenario"]: r for r in records if r["type"] == "summary"}
    assert list(summaries) == [
        "standard",
        "simplified",
        "echo-r2",
        "refurbish-r2",
        "unbalanced-r2",
    ]
    standard, refurbish = summaries["standard"], summaries["refurbish-r2"]
    assert standard["steady_speedup"]["median"] == pytest.approx(1.0)
    assert standard["bound"] == 1.0 and standard["cache_bytes"] == 0
    # The bound comes from the measured stage costs: on 24 tiny images a cache write can cost
    # more than half a partial transform, so it may be below 1 (speed is the benchmarks' job).
    assert 0 < refurbish["bound"] < float("inf") and refurbish["fraction_of_bound"] > 0
    assert refurbish["misses_per_epoch"]["planned"] == 12  # N / r
    assert refurbish["cache_bytes"] > 0
    assert summaries["simplified"]["bound"] is None
    for summary in summaries.values():
        assert set(summary["wait_ms"]) == {"p50", "p95", "max", "mean"}
        assert summary["wait_cv"] is not None
    runs = [r for r in records if r["type"] == "run"]
    assert len(runs) == 10
    markdown = (out / "bench.md").read_text()
    assert markdown.startswith("Command: `revamper bench --data ")
    assert "| refurbish-r2 |" in markdown and "- refurbish-r2: " in markdown
    options = next(r for r in records if r["type"] == "options")
    assert options["command"].startswith("revamper bench")
    png = (out / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    # --report re-renders an earlier run without running anything
    (out / "bench.md").unlink()
    assert main(["bench", "--report", str(out / "bench.jsonl")]) == 0
    assert (out / "bench.md").read_text() == markdown


@pytest.mark.slow
def test_step_ms_reports_epoch_time_and_stall(tmp_path: Path, capsys: Any) -> None:
    data = make_folder(tmp_path / "data", classes=2, per_class=8)
    out = tmp_path / "out"
    argv = ["bench", "--data", str(data), "--scenarios", "standard,refurbish:2"]
    assert main([*argv, *SMALL, "--workers", "0", "--step-ms", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stall s/epoch" in printed
    assert "refurbish-r2: " in printed and "faster end to end" in printed  # the headline
    summaries = [r for r in read_jsonl(out / "bench.jsonl") if r["type"] == "summary"]
    for summary in summaries:
        assert summary["epoch_seconds"]["median"] >= 2 * 0.005  # two batches of 5 ms steps
        assert summary["epoch_time_speedup"]["median"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--scenarios", "bogus"], "unknown scenario"),
        (["--scenarios", "refurbish:x"], "whole reuse factor"),
        (["--scenarios", "standard,standard"], "twice"),
        (["--pipeline", "nosuch"], "unknown pipeline"),
        (["--pipeline", "nosuchmodule:f"], "cannot import"),
        (["--split", "9"], "split must be between"),
        (["--epochs", "1"], "at least 2"),
        (["--workers", "-1"], "--workers"),
        (["--report", "/nonexistent/bench.jsonl"], "cannot read"),
    ],
)
def test_bad_arguments_give_one_line_errors(
    args: list[str], message: str, capsys: Any, tmp_path: Path
) -> None:
    data = ["--data", str(make_folder(tmp_path / "d", 1, 2))] if "--data" not in args else []
    assert main(["bench", *data, *args, "--no-progress", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [["--epochs", "0"], ["--repeats", "-2"], ["--step-ms", "-1"], ["--batch-size", "x"]],
)
def test_non_positive_numbers_are_rejected_by_the_parser(args: list[str], capsys: Any) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", *args])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_empty_and_unreadable_folders(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["bench", "--data", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "empty" in capsys.readouterr().err
    bad = make_folder(tmp_path / "bad", 1, 2)
    (bad / "class0" / "broken.jpg").write_bytes(b"not a jpeg at all")
    assert main(["bench", "--data", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and len(err.strip().splitlines()) == 1


def test_help_lists_the_subcommand_and_its_options(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bench" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for option in ("--data", "--pipeline", "--split", "--step-ms", "--quick", "--scenarios"):
        assert option in text


@pytest.mark.slow
def test_disk_cache_run_reports_disk_reads_and_the_lru_comparison(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", classes=2, per_class=12)
    out = tmp_path / "out"
    argv = ["bench", "--data", str(data), "--scenarios", "standard,refurbish:3@disk"]
    assert main([*argv, *SMALL, "--epochs", "3", "--cache-bytes", "1MB", "--workers", "1",
                 "--cache-dir", str(tmp_path), "--out", str(out)]) == 0  # fmt: skip
    records = read_jsonl(out / "bench.jsonl")
    disk = next(r for r in records if r["type"] == "summary" and r["scenario"].endswith("disk"))
    figures = disk["disk"]
    assert figures["disk_bytes"] > 0 and figures["ram_bytes"] <= 2**20
    assert figures["read_per_epoch"] <= 1.05 * figures["disk_bytes"]
    assert figures["lru_read_per_epoch"] is not None
    assert [p for p in tmp_path.iterdir() if p.name.startswith("revamper-bench-")] == []
