"""``revamper experiment accuracy --sweep``: the training-set size x r sweep on two tasks.

Parses the sweep's options, runs the pending runs with a progress bar (rich, with the time
left), and writes the report (:mod:`~revamper.experiments.sweep_report`). ``--report-only``
rebuilds the report from the JSONL without training.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from revamper.cli_args import CliError
from revamper.experiments.sweep import SweepOptions, TaskGrid, default_options
from revamper.experiments.tasks import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sweep's options to the ``accuracy`` experiment's parser."""
    group = parser.add_argument_group(
        "sweep",
        "--sweep trains every arm at several training-set sizes (equal optimisation steps) on "
        "the digits and on photographs (the built-in image set), 5 seeds each; resumes from "
        "the runs --out's sweep.jsonl holds. About an hour on 2 idle cores.",
    )
    group.add_argument("--sweep", action="store_true", help="run the sweep")
    group.add_argument(
        "--tasks", help=f"comma-separated tasks of the sweep (default: {','.join(TASKS)})"
    )
    group.add_argument(
        "--digit-sizes", help="digits training-set sizes (default: 250,500,1000,4000)"
    )
    group.add_argument("--photo-sizes", help="photo training-set sizes (default: 10,20,50)")
    group.add_argument(
        "--jobs", type=int, default=2, help="runs in parallel, one thread each (default: 2)"
    )
    group.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild the sweep's report and figures from --out's sweep.jsonl",
    )
    group.add_argument(
        "--figures", type=Path, help="folder for the sweep's figures (default: --out)"
    )


def _sizes(text: str | None, default: tuple[int, ...], flag: str) -> tuple[int, ...]:
    if text is None:
        return default
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise CliError(f"{flag} takes whole numbers separated by commas, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise CliError(f"{flag} needs sizes of at least 1, got {text!r}")
    return tuple(sorted(set(sizes)))


def resolve(args: argparse.Namespace) -> SweepOptions:
    """The sweep's options from the command line."""
    from revamper.experiments.arms import parse_arms

    for flag in ("epochs", "train_size", "test_size"):
        if getattr(args, flag) is not None:
            name = "--" + flag.replace("_", "-")
            raise CliError(f"{name} has no effect with --sweep: the sweep sets it per cell")
    if args.jobs < 1:
        raise CliError(f"--jobs must be at least 1, got {args.jobs}")
    base = default_options(quick=args.quick, jobs=args.jobs)
    wanted = TASKS if args.tasks is None else tuple(t.strip() for t in args.tasks.split(","))
    unknown = [t for t in wanted if t not in TASKS]
    if unknown or not wanted:
        raise CliError(f"unknown task(s) {', '.join(unknown)!r}: use {', '.join(TASKS)}")
    grids: list[TaskGrid] = []
    for grid in base.grids:
        if grid.task not in wanted:
            continue
        flag = "--digit-sizes" if grid.task == "digits" else "--photo-sizes"
        text = args.digit_sizes if grid.task == "digits" else args.photo_sizes
        grids.append(dataclasses.replace(grid, sizes=_sizes(text, grid.sizes, flag)))
    try:
        arms = tuple(parse_arms(args.arms)) if args.arms else base.arms
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return dataclasses.replace(base, grids=tuple(grids), arms=arms, seeds=args.seeds or base.seeds)


def environment(options: SweepOptions) -> dict[str, Any]:
    """Machine, versions and load at the start of this session."""
    import platform

    import torch
    import torchvision

    import revamper

    return {
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "revamper": revamper.__version__,
        "jobs": options.jobs,
        "num_workers": 0,
        "torch_threads": 1,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the sweep, or only rebuild its report; print the report."""
    from rich.console import Console

    from revamper.experiments import sweep_report
    from revamper.experiments.sweep_records import SWEEP_FILE, read_sweep
    from revamper.experiments.sweep_run import SweepMismatchError

    options = resolve(args)
    out_dir = args.out or Path("results") / time.strftime("accuracy-sweep-%Y%m%d-%H%M%S")
    path = out_dir / SWEEP_FILE
    console = Console(stderr=True)
    if args.report_only:
        if not path.exists():
            raise CliError(f"no sweep to report on: {path} does not exist")
    else:
        try:
            _with_progress(options, path, console, disable=args.no_progress, quick=args.quick)
        except SweepMismatchError as exc:
            raise CliError(str(exc)) from None
    _, runs = read_sweep(path)
    if not runs:
        raise CliError(f"{path} holds no finished runs yet")
    arm_order = [a.name for a in options.arms]
    written = sweep_report.write_report(out_dir, runs, arm_order, args.figures)
    stdout = Console() if Console().is_terminal else Console(width=200)
    stdout.print(sweep_report.markdown(runs, arm_order), markup=False, highlight=False)
    console.print("written: " + ", ".join(str(p) for p in [path, *written]), markup=False)
    return 0


def _with_progress(
    options: SweepOptions, path: Path, console: Any, *, disable: bool, quick: bool
) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from revamper.experiments.sweep_run import run_sweep

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        "left",
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    ) as progress:
        task = progress.add_task("sweep runs", total=None)

        def started(todo: int, already: int) -> None:
            note = " [--quick: a smoke test, not evidence]" if quick else ""
            console.print(
                f"sweep: {todo} runs to do, {already} already in {path}, {options.jobs} at a "
                f"time{note}",
                markup=False,
            )
            progress.update(task, total=todo)

        def done(record: dict[str, Any], count: int, total: int) -> None:
            progress.update(
                task,
                completed=count,
                description=f"{record['key']}: {100 * record['test_accuracy']:.1f}%",
            )

        run_sweep(options, path, environment(options), on_done=done, on_start=started)
