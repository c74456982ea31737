"""``revamper tune``: measure a pipeline on a data set and recommend a split point and ``r``.

``revamper plan`` is the command's old name, kept as an alias (the planner is
:mod:`revamper.plan`, the tuner :mod:`revamper.tune`: the command now says which it runs).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import Any

from revamper.cli_args import CliError, HelpFormatter, non_negative_int, parse_size, positive_int

logger = logging.getLogger(__name__)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number between 0 and 1, got {text!r}"
        ) from None
    if not 0 <= value <= 1:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


NAME = "tune"
ALIASES = ("plan",)
"""Old names of the command, still accepted (each its own parser, so errors name what was typed)."""

_DESCRIPTION = (
    "Profile every step of the pipeline on the data (CPU time, cached entry size, cache "
    "read and write costs), count the distinct outputs of every candidate final part, "
    "calibrate the loader's own overhead, then predict samples/s, cache size and "
    "diversity for every split point and reuse factor 1-5, and recommend the fastest "
    "that keeps enough diversity and fits the memory budget."
)


def register(subparsers: Any) -> None:
    """Add the ``tune`` sub-command and its old name ``plan``."""
    summary = "recommend where to split the pipeline and how often to reuse each cached sample"
    _add_arguments(
        subparsers.add_parser(
            NAME, help=summary, description=_DESCRIPTION, formatter_class=HelpFormatter
        )
    )
    for alias in ALIASES:
        _add_arguments(
            subparsers.add_parser(
                alias,
                help=f"the old name of {NAME!r}: {summary}",
                description=_DESCRIPTION,
                formatter_class=HelpFormatter,
            )
        )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        help="an ImageFolder (class sub-folders of images); default: the built-in data set",
    )
    parser.add_argument(
        "--images", type=positive_int, default=2000, help="size of the built-in data set"
    )
    parser.add_argument(
        "--pipeline",
        default="imagenet",
        help="imagenet, light, imagenet-fused, light-fused, or module:function returning a "
        "list of transforms",
    )
    parser.add_argument(
        "--fused",
        action="store_true",
        help="fuse the pipeline's leading decode + RandomResizedCrop into one cheaper step "
        "(FusedDecodeCrop: same crops, JPEGs decoded only at the scale the crop needs)",
    )
    parser.add_argument(
        "--budget", type=parse_size, help="memory budget of the cache, e.g. 8GB (default: none)"
    )
    parser.add_argument(
        "--min-diversity",
        type=_fraction,
        default=0.9,
        help="lowest acceptable diversity, as a fraction of standard training's",
    )
    parser.add_argument(
        "--workers", type=non_negative_int, default=2, help="DataLoader worker processes"
    )
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument(
        "--cores",
        type=positive_int,
        help="CPU cores the loader may use (default: those this process may use)",
    )
    parser.add_argument(
        "--sample", type=positive_int, default=100, help="items to profile (50-200 is typical)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--plot", type=Path, help="write the throughput-diversity figure (PNG)")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    parser.set_defaults(handler=run)


def _dataset(args: argparse.Namespace) -> Any:
    from revamper.datasets.builtin import builtin_data_dir
    from revamper.datasets.folder import DataError, image_folder, scan_image_folder

    try:
        if args.data is not None:
            scan_image_folder(args.data)
            root = args.data
        else:
            root = builtin_data_dir(num_images=args.images, progress=not args.no_progress)
    except (DataError, ImportError) as exc:
        raise CliError(str(exc)) from None
    return image_folder(root)


def run(args: argparse.Namespace) -> int:
    """Measure, predict, recommend; print the tables and the explanation."""
    from rich.console import Console
    from rich.markup import escape

    from revamper.pipelines import fused_or_error, load_pipeline
    from revamper.tune import ProfileError, UnsplittableError, recommend, report

    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise CliError(f"--plot writes a PNG: give a path ending in .png, got {args.plot}")
    try:
        pipeline = load_pipeline(args.pipeline)
        if args.fused:
            pipeline = fused_or_error(pipeline)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    dataset = _dataset(args)
    console = Console(stderr=True)
    console.print(
        escape(
            f"revamper {args.command}: {len(dataset)} images, pipeline {pipeline.name} "
            f"({', '.join(pipeline.step_names)}), {args.workers} workers, batch {args.batch_size}"
        )
    )
    try:
        status = (
            console.status("measuring the pipeline...", spinner="dots")
            if not args.no_progress
            else contextlib.nullcontext()
        )
        with status:
            recommendation = recommend(
                dataset,
                pipeline,
                budget_bytes=args.budget,
                min_diversity=args.min_diversity,
                num_workers=args.workers,
                batch_size=args.batch_size,
                cores=args.cores,
                items=args.sample,
                seed=args.seed,
            )
    except (UnsplittableError, ProfileError) as exc:
        raise CliError(" ".join(str(exc).split())) from None
    stdout = Console()
    if not stdout.is_terminal:
        stdout = Console(width=200)
    for table in report.render_tables(recommendation):
        stdout.print(table)
    bench_args = [] if args.pipeline == "imagenet" else ["--pipeline", args.pipeline]
    bench_args += ["--fused"] if args.fused else []
    if args.data is not None:
        bench_args += ["--data", str(args.data)]
    elif args.images != 2000:
        bench_args += ["--images", str(args.images)]
    text = recommendation.explain(others=False, bench_args=bench_args)
    stdout.print(escape(text), highlight=False)
    if args.plot is not None:
        report.plot(args.plot, recommendation)
        console.print(f"figure: {args.plot}")
    return 0
