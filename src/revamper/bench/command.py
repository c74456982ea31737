"""``revamper bench``: standard, echoing and refurbishing side by side on the same data."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from revamper.cli_args import (
    CliError,
    HelpFormatter,
    int_list,
    non_negative_float,
    parse_size,
    positive_int,
)
from revamper.store import store_kinds

logger = logging.getLogger(__name__)

DEFAULTS = {"images": 2000, "epochs": 4, "repeats": 3}
QUICK = {"images": 300, "epochs": 3, "repeats": 1}
QUICK_SCENARIOS = "standard,simplified,echo:3,refurbish:3,unbalanced:3"


def register(subparsers: Any) -> None:
    """Add the ``bench`` sub-command."""
    parser = subparsers.add_parser(
        "bench",
        help="compare standard, echoing and refurbishing loaders on the same data",
        description=(
            "Run standard loading, a simplified pipeline, data echoing and data refurbishing "
            "side by side (interleaved repeats, fresh workers and cache for each run), then "
            "report samples/s per epoch, the consumer's wait per batch, CPU time per stage, "
            "memory, and the analytic speed-up bound from the measured stage costs."
        ),
        formatter_class=HelpFormatter,
    )
    data = parser.add_argument_group("data and pipeline")
    data.add_argument(
        "--data",
        type=Path,
        help="an ImageFolder (class sub-folders of images); default: the built-in data set, "
        "generated on first use from photographs shipped with scikit-image and scikit-learn",
    )
    data.add_argument(
        "--images", type=positive_int, help="size of the built-in data set (default: 2000)"
    )
    data.add_argument(
        "--pipeline",
        default="imagenet",
        help="imagenet, light, imagenet-fused, light-fused, or module:function returning a "
        "list of transforms or a (partial, final) pair",
    )
    data.add_argument(
        "--fused",
        action="store_true",
        help="fuse the pipeline's leading decode + RandomResizedCrop into one cheaper step "
        "(FusedDecodeCrop); --split then counts the fused step as one",
    )
    data.add_argument(
        "--split",
        type=int,
        help="number of leading pipeline steps in the cached (partial) part; default: the "
        "pipeline's own (for imagenet: 2, decode + RandomResizedCrop)",
    )
    _add_run_arguments(parser.add_argument_group("what to run"))
    out = parser.add_argument_group("output")
    out.add_argument(
        "--out",
        type=Path,
        help="folder for bench.jsonl and bench.png (default: results/bench-<time>)",
    )
    out.add_argument("--no-plot", action="store_true", help="skip the PNG figure")
    out.add_argument(
        "--report",
        type=Path,
        metavar="JSONL",
        help="run nothing: print the tables of an earlier run's bench.jsonl and write its "
        "bench.md next to it",
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def _add_run_arguments(runs: Any) -> None:
    """The ``what to run`` options: scenarios, sizes, repeats, workers, the cache."""
    runs.add_argument(
        "--scenarios",
        help="comma-separated: standard, simplified, echo:R, refurbish:R, unbalanced:R, auto:R "
        "(reuse_factor='auto' up to R), limit (r -> infinity: every steady-state use a hit), "
        "torch (a plain torch DataLoader, the whole pipeline as one transform) (each may add "
        "/PIPELINE to run a pipeline of its own, e.g. refurbish:3/light, and end in +fused: "
        "decode and crop fused), and the peers ffcv and dali (other loaders, when installed) "
        "(default: standard, "
        "simplified, echo at the middle r, refurbish at each --reuse, unbalanced at the "
        "middle r, and with --step-ms auto at the largest --reuse)",
    )
    runs.add_argument(
        "--reuse", type=int_list, default=[2, 3, 4], help="reuse factors for refurbishing"
    )
    runs.add_argument("--epochs", type=positive_int, help="epochs per run, at least 2 (default: 4)")
    runs.add_argument(
        "--repeats", type=positive_int, help="interleaved repeats of every scenario (default: 3)"
    )
    runs.add_argument("--batch-size", type=positive_int, default=64)
    runs.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    runs.add_argument(
        "--step-ms",
        type=non_negative_float,
        default=0.0,
        help="simulated accelerator step per batch, in ms (0: measure the loader alone)",
    )
    runs.add_argument("--seed", type=int, default=0)
    runs.add_argument(
        "--cache",
        choices=store_kinds(),
        default="memory",
        help="where refurbishing and echoing cache (a scenario may name its own: refurbish:3@disk)",
    )
    runs.add_argument(
        "--cache-dir",
        type=Path,
        help="where disk caches are made, one fresh folder per run (default: the temp dir)",
    )
    runs.add_argument(
        "--cache-bytes",
        type=parse_size,
        help="memory budget of the cache, e.g. 200MB (with --cache disk: the RAM tier)",
    )
    runs.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test in well under a minute: "
        + ", ".join(f"--{k} {v}" for k, v in QUICK.items())
        + f", scenarios {QUICK_SCENARIOS}",
    )


def _scenarios(args: argparse.Namespace) -> list[Any]:
    from revamper.bench.scenarios import Scenario

    if args.scenarios:
        specs = [s for s in args.scenarios.split(",") if s.strip()]
    elif args.quick:
        specs = QUICK_SCENARIOS.split(",")
    else:
        middle = 3 if 3 in args.reuse else args.reuse[0]
        specs = ["standard", "simplified", f"echo:{middle}"]
        specs += [f"refurbish:{r}" for r in args.reuse] + [f"unbalanced:{middle}"]
        if args.step_ms > 0:  # with a consumer step, the loader's own choice of r next to them
            specs.append(f"auto:{max(args.reuse)}")
    try:
        scenarios = [Scenario.parse(spec) for spec in specs]
    except ValueError as exc:
        raise CliError(str(exc)) from None
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise CliError(f"--scenarios lists a scenario twice: {', '.join(names)}")
    return scenarios


def _dataset(args: argparse.Namespace) -> Any:
    from revamper.datasets.builtin import builtin_data_dir
    from revamper.datasets.folder import DataError, image_folder, scan_image_folder

    try:
        if args.data is not None:
            info = scan_image_folder(args.data)
            logger.info(
                "using %s: %d images in %d classes", args.data, info.num_images, len(info.classes)
            )
            root = args.data
        else:
            root = builtin_data_dir(num_images=args.images, progress=not args.no_progress)
    except DataError as exc:
        raise CliError(str(exc)) from None
    except ImportError as exc:
        raise CliError(str(exc)) from None
    return image_folder(root)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write its report."""
    from rich.console import Console
    from rich.markup import escape

    from revamper.bench import harness, summary
    from revamper.errors import SampleError
    from revamper.pipelines import fused_or_error, load_pipeline

    if args.report is not None:
        return _rerender(args.report)
    for key, normal in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else normal)
    if args.epochs < 2:
        raise CliError("--epochs must be at least 2 (epoch 0, then steady-state epochs)")
    if args.workers < 0:
        raise CliError(f"--workers must be 0 or more, got {args.workers}")
    if args.seed < 0:
        raise CliError(f"--seed must be 0 or more, got {args.seed}")
    scenarios = _scenarios(args)
    try:
        pipeline = load_pipeline(args.pipeline)
        if args.fused:
            pipeline = fused_or_error(pipeline)
        if args.split is not None:
            pipeline.check_split(args.split)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    console = Console(stderr=True)
    scenarios = _runnable(scenarios, pipeline, console)
    dataset = _dataset(args)
    options = harness.BenchOptions(
        epochs=args.epochs,
        repeats=args.repeats,
        batch_size=args.batch_size,
        num_workers=args.workers,
        step_ms=args.step_ms,
        seed=args.seed,
        split=args.split,
        cache_bytes=args.cache_bytes,
        cache=args.cache,
        cache_dir=None if args.cache_dir is None else str(args.cache_dir),
    )
    if args.cache_dir is not None and not args.cache_dir.is_dir():
        raise CliError(f"--cache-dir {args.cache_dir} is not an existing folder")
    out_dir = args.out or Path("results") / time.strftime("bench-%Y%m%d-%H%M%S")
    console.print(
        escape(
            f"revamper bench: {len(dataset)} images, pipeline {pipeline.name} "
            f"[{pipeline.describe_split(args.split)}], {len(scenarios)} scenarios x "
            f"{args.repeats} repeats x {args.epochs} epochs, batch {args.batch_size}, "
            f"{args.workers} workers, step {args.step_ms:g} ms"
        )
    )
    try:
        runs = _run_with_progress(scenarios, dataset, pipeline, options, console, args)
    except SampleError as exc:
        path = _sample_path(dataset, exc.index)
        where = f" ({path})" if path else ""
        first_line = str(exc).strip().splitlines()[-1]
        raise CliError(
            f"sample {exc.index}{where} failed in stage {exc.stage}: {first_line}"
        ) from None
    summaries = summary.summarize(scenarios, runs, options)
    _write_report(out_dir, args, options, pipeline, scenarios, runs, summaries)
    console.print(
        f"results: {out_dir / 'bench.jsonl'}, bench.md" + ("" if args.no_plot else ", bench.png")
    )
    return 0


def _runnable(scenarios: list[Any], pipeline: Any, console: Any) -> list[Any]:
    """The scenarios that can run here, saying why each other one is skipped."""
    from rich.markup import escape

    skipped = [s.name for s in scenarios if not s.available(pipeline)]
    scenarios = [s for s in scenarios if s.available(pipeline)]
    for name in skipped:
        console.print(f"[yellow]skipping {name}: pipeline {pipeline.name!r} has no variant[/]")
    absent = {s.name: s.missing() for s in scenarios}
    for name, why in absent.items():
        if why is not None:
            console.print(escape(f"skipping {name}: {why}"), style="yellow", soft_wrap=True)
    scenarios = [s for s in scenarios if absent[s.name] is None]
    if not scenarios:
        raise CliError("no scenario left to run")
    return scenarios


def _write_report(
    out_dir: Path,
    args: argparse.Namespace,
    options: Any,
    pipeline: Any,
    scenarios: list[Any],
    runs: Any,
    summaries: Any,
) -> None:
    """Write bench.jsonl, bench.md and the figure, and print the tables and headlines."""
    from rich.console import Console
    from rich.markup import escape

    from revamper.bench import harness, report

    out_dir.mkdir(parents=True, exist_ok=True)
    options_record = {
        **report.options_dict(options),
        "data": str(args.data) if args.data else f"builtin:{args.images}",
        "pipeline": pipeline.name,
        "split": pipeline.describe_split(args.split),
        "scenarios": [s.name for s in scenarios],
        "command": args.command_line,
    }
    report.write_jsonl(
        out_dir / "bench.jsonl", harness.environment(), options_record, runs, summaries
    )
    if not args.no_plot:
        report.plot(out_dir / "bench.png", runs, summaries)
    (out_dir / "bench.md").write_text(
        report.markdown(summaries, step_ms=args.step_ms, command=options_record["command"])
    )
    stdout = Console()
    if not stdout.is_terminal:
        stdout = Console(width=160)  # a file or pipe: no need to squeeze the tables
    for table in report.render_tables(summaries, step_ms=args.step_ms):
        stdout.print(table)
    for line in report.headlines(summaries, step_ms=args.step_ms):
        stdout.print(escape(line))


def _rerender(path: Path) -> int:
    """Print the tables of an earlier run and write its bench.md."""
    import json

    from rich.console import Console
    from rich.markup import escape

    from revamper.bench import report
    from revamper.bench.summary import ScenarioSummary

    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    options = next((r for r in records if r.get("type") == "options"), None)
    summaries = [ScenarioSummary.from_dict(r) for r in records if r.get("type") == "summary"]
    if options is None or not summaries:
        raise CliError(f"{path} is not a bench.jsonl with options and summaries")
    step_ms = float(options.get("step_ms", 0.0))
    stdout = Console() if Console().is_terminal else Console(width=160)
    for table in report.render_tables(summaries, step_ms=step_ms):
        stdout.print(table)
    for line in report.headlines(summaries, step_ms=step_ms):
        stdout.print(escape(line))
    command = str(options.get("command", "revamper bench"))
    (path.parent / "bench.md").write_text(
        report.markdown(summaries, step_ms=step_ms, command=command)
    )
    return 0


def _sample_path(dataset: Any, index: int | None) -> str | None:
    samples = getattr(dataset, "samples", None)
    if index is None or samples is None or not 0 <= index < len(samples):
        return None
    return str(samples[index][0])


def _run_with_progress(
    scenarios: list[Any],
    dataset: Any,
    pipeline: Any,
    options: Any,
    console: Any,
    args: argparse.Namespace,
) -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from revamper.bench import harness

    total = len(scenarios) * options.repeats * options.epochs
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=args.no_progress,
        transient=True,
    ) as progress:
        task = progress.add_task("epochs", total=total)

        def on_epoch(record: Any) -> None:
            progress.update(
                task,
                advance=1,
                description=f"{record.scenario} r{record.repeat} e{record.epoch}: "
                f"{record.samples_per_second:.0f} samples/s",
            )

        return harness.run_benchmark(scenarios, dataset, pipeline, options, on_epoch)
