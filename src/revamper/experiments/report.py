"""The experiment's outputs: a terminal table, a JSON-lines file and a PNG figure.

The JSON-lines file holds one object per line, each with a ``type`` and the ``schema`` version:
``environment`` (machine, versions, CPU settings), ``options`` (how it was run, the command
included), ``step_cost`` (one per step of the full pipeline), ``run`` (one per arm and seed, with
its epochs; written as each run finishes), ``summary`` (one per arm) and ``end`` (the
experiment's wall time and the machine's load average at the end: a load well above the
number of cores means other jobs shared them, which stretches wall times but hardly CPU
seconds).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from revamper.experiments.augment import StepCost
from revamper.experiments.intervals import Estimate
from revamper.experiments.summary import ArmSummary
from revamper.experiments.train import RunResult

SCHEMA_VERSION = 1
_MARKERS = {"echo": "v", "refurbish": "s", "simplified": "D", "none": "X"}
RESULTS_FILE = "accuracy.jsonl"
FIGURE_FILE = "accuracy.png"


class ResultsWriter:
    """Writes the JSON-lines file record by record.

    Each record is flushed as it is written, so an interrupted experiment keeps every run it
    finished.

    Args:
        path: The file to create (its folder is created too); an existing file is replaced.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("w")

    def emit(self, kind: str, body: dict[str, Any]) -> None:
        """Write one record of type ``kind`` (NaN and infinities become null)."""
        record = {"type": kind, "schema": SCHEMA_VERSION, **body}
        self._file.write(json.dumps(_finite(record), allow_nan=False) + "\n")
        self._file.flush()

    def header(
        self,
        environment: dict[str, Any],
        options: dict[str, Any],
        step_costs: Sequence[StepCost],
    ) -> None:
        """Write the environment, the options and the per-step costs."""
        self.emit("environment", environment)
        self.emit("options", options)
        for cost in step_costs:
            self.emit(
                "step_cost",
                {"part": cost.part, "step": cost.step, "ms_per_sample": cost.ms_per_sample},
            )

    def run(self, run: RunResult) -> None:
        """Write one finished run."""
        self.emit("run", run.as_dict())

    def summaries(self, summaries: Sequence[ArmSummary]) -> None:
        """Write the per-arm summaries."""
        for summary in summaries:
            self.emit("summary", summary.as_dict())

    def end(self, wall_seconds: float) -> None:
        """Write the closing record: the experiment's duration and the machine's load then."""
        load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        self.emit("end", {"wall_seconds": wall_seconds, "load_average": load})

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _pct(estimate: Estimate | None, *, signed: bool = False) -> str:
    if estimate is None:
        return "-"
    sign = "+" if signed else ""
    return f"{100 * estimate.mean:{sign}.2f}"


def _interval(estimate: Estimate | None, *, signed: bool = False) -> str:
    if estimate is None or estimate.low is None or estimate.high is None:
        return "-"
    sign = "+" if signed else ""
    return f"[{100 * estimate.low:{sign}.2f}, {100 * estimate.high:{sign}.2f}]"


def render_table(summaries: Sequence[ArmSummary], *, epochs: int) -> Any:
    """The results as one ``rich`` table (percentages for accuracy, seconds per run)."""
    from rich.table import Table

    table = Table(
        title=(
            "Test accuracy (%) over seeds: mean ± std, 95% t-interval; Δ = paired difference "
            "to standard (same seeds). Times are per run."
        ),
        title_justify="left",
        header_style="bold",
    )
    headers = (
        "arm",
        "seeds",
        "accuracy",
        "95% CI",
        "Δ vs standard",
        "Δ 95% CI",
        "reading",
        "train wall s",
        "input CPU s",
        "stall s",
        f"versions / {epochs} uses",
    )
    for header in headers:
        table.add_column(header, justify="left" if header == "arm" else "right")
    for s in summaries:
        delta = s.vs_standard
        delta_ci = _interval(delta, signed=True)
        if delta is not None and delta.excludes_zero():
            delta_ci = f"[bold]{delta_ci}[/bold]"
        table.add_row(
            s.arm,
            str(s.accuracy.n),
            f"{_pct(s.accuracy)} ± {100 * s.accuracy.std:.2f}",
            _interval(s.accuracy),
            _pct(delta, signed=True),
            delta_ci,
            s.reading,
            f"{s.train_seconds.mean:.1f}",
            f"{s.input_cpu_seconds.mean:.1f}",
            f"{s.stall_seconds.mean:.1f}",
            f"{s.diversity.mean:.2f}",
        )
    return table


def plot(path: Path, summaries: Sequence[ArmSummary], *, epochs: int) -> None:
    """Save a PNG: accuracy against input-pipeline CPU time, and against measured diversity.

    One point per arm; vertical bars are the 95% t-interval of the mean accuracy (the standard
    deviation when there is one seed only), horizontal bars one standard deviation.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), constrained_layout=True)
    for s in summaries:
        y = 100 * s.accuracy.mean
        yerr = 100 * (s.accuracy.half_width if s.accuracy.half_width is not None else 0.0)
        marker = _MARKERS.get(s.arm.split("-")[0], "o")
        for axis, x, xerr in (
            (left, s.input_cpu_seconds.mean, s.input_cpu_seconds.std),
            (right, s.diversity.mean, s.diversity.std),
        ):
            axis.errorbar(
                x, y, xerr=xerr, yerr=yerr, fmt=marker, markersize=7, capsize=4, label=s.arm
            )
    left.set_xlabel("input-pipeline CPU seconds per run (loader stats, all workers)")
    left.set_title("Accuracy against input-pipeline cost")
    right.set_xlabel(f"distinct augmented versions per sample over {epochs} epochs (measured)")
    right.set_title("Accuracy against measured diversity")
    for axis in (left, right):
        axis.set_ylabel("test accuracy, % (mean, bars: 95% t-interval)")
        axis.grid(alpha=0.3)
    right.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_costs(costs: Sequence[StepCost]) -> Any:
    """The per-step CPU costs of the full pipeline as a ``rich`` table."""
    from rich.table import Table

    table = Table(
        title="Full pipeline, CPU ms per sample per step (one thread, measured on this machine)",
        title_justify="left",
        header_style="bold",
    )
    for header in ("part", "step", "ms/sample"):
        table.add_column(header, justify="right" if header == "ms/sample" else "left")
    for part in ("partial", "final"):
        mine = [c for c in costs if c.part == part]
        for cost in mine:
            table.add_row(part, cost.step, f"{cost.ms_per_sample:.3f}")
        if mine:
            total = sum(c.ms_per_sample for c in mine)
            table.add_row(part, "[bold]total[/bold]", f"[bold]{total:.3f}[/bold]")
    return table
