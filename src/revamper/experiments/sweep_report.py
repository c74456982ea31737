"""The sweep's report: Markdown tables and figures, from the runs its JSONL holds.

It works on any subset of the runs (a sweep still running, or stopped early): every table and
figure shows the seeds that are there, and says how many. ``revamper experiment accuracy
--sweep --report-only --out DIR`` regenerates it from ``DIR/sweep.jsonl`` without training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from revamper.experiments.intervals import Estimate
from revamper.experiments.sweep_figures import plot_cost, plot_sizes
from revamper.experiments.sweep_stats import (
    ArmCell,
    EchoVsRefurbish,
    PooledEchoVsRefurbish,
    cells,
    echo_vs_refurbish,
    pooled_echo_vs_refurbish,
    summarize_cells,
)

REPORT_FILE = "sweep.md"
SIZES_FIGURE = "accuracy-sizes.png"


def cost_figure_name(task: str) -> str:
    """The file name of ``task``'s accuracy-against-cost figure."""
    return f"accuracy-{task}-cost.png"


def _pct(e: Estimate | None, signed: bool = False) -> str:
    if e is None:
        return "–"
    return f"{100 * e.mean:+.2f}" if signed else f"{100 * e.mean:.2f}"


def _ci(e: Estimate | None, signed: bool = False) -> str:
    if e is None or e.low is None or e.high is None:
        return "–"
    fmt = "+.2f" if signed else ".2f"
    text = f"[{100 * e.low:{fmt}}, {100 * e.high:{fmt}}]"
    return f"**{text}**" if signed and e.excludes_zero() else text


def arm_table(summaries: Sequence[ArmCell]) -> str:
    """One cell's arms as a Markdown table."""
    lines = [
        "| arm | seeds | accuracy % (mean ± std) | 95% CI | Δ vs standard | Δ 95% CI | reading "
        "| input CPU s | process CPU s | versions (measured) | versions (paper) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summaries:
        lines.append(
            f"| {s.arm} | {s.accuracy.n} | {_pct(s.accuracy)} ± {100 * s.accuracy.std:.2f} "
            f"| {_ci(s.accuracy)} | {_pct(s.vs_standard, True)} | {_ci(s.vs_standard, True)} "
            f"| {s.reading} | {s.input_cpu_seconds.mean:.1f} | {s.process_cpu_seconds.mean:.1f} "
            f"| {s.diversity.mean:.2f} | {s.diversity_formula:.2f} |"
        )
    return "\n".join(lines)


def echo_table(rows: Sequence[EchoVsRefurbish]) -> str:
    """``echo - refurbish`` at equal r, every cell, as a Markdown table."""
    lines = [
        "| task | training samples | r | seeds | echo − refurbish (points) | 95% CI | reading |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.task} | {row.train_size} | {row.reuse_factor} | {row.delta.n} "
            f"| {_pct(row.delta, True)} | {_ci(row.delta, True)} | {row.reading} |"
        )
    return "\n".join(lines)


def pooled_table(rows: Sequence[PooledEchoVsRefurbish]) -> str:
    """``echo - refurbish`` per task and r, pooled over sizes, as a Markdown table."""
    lines = [
        "| task | r | pairs | echo − refurbish (points) | 95% CI | refurbish better / echo "
        "better | sign test p |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.task} | {row.reuse_factor} | {row.delta.n} | {_pct(row.delta, True)} "
            f"| {_ci(row.delta, True)} | {row.negative} / {row.positive} | {row.sign_p:.3f} |"
        )
    return "\n".join(lines)


def markdown(runs: Sequence[dict[str, Any]], arm_order: Sequence[str] | None = None) -> str:
    """The whole report: one table per cell, then echo - refurbish for every cell."""
    summaries = summarize_cells(runs, arm_order)
    parts = []
    for task, size in cells(runs):
        mine = [s for s in summaries if s.task == task and s.train_size == size]
        epochs = mine[0].epochs if mine else 0
        steps = next(r["steps"] for r in runs if r["task"] == task and r["train_size"] == size)
        parts.append(f"#### {task}, {size} training samples ({epochs} epochs, {steps} steps)")
        parts.append(arm_table(mine))
    parts.append("#### echo − refurbish at equal r (paired by seed; negative: refurbish better)")
    parts.append(echo_table(echo_vs_refurbish(runs)))
    parts.append("#### echo − refurbish at equal r, pooled over each task's sizes (paired by seed)")
    parts.append(pooled_table(pooled_echo_vs_refurbish(runs)))
    return "\n\n".join(parts) + "\n"


def write_report(
    out_dir: Path,
    runs: Sequence[dict[str, Any]],
    arm_order: Sequence[str] | None = None,
    figure_dir: Path | None = None,
) -> list[Path]:
    """Write ``sweep.md`` into ``out_dir`` and the figures into ``figure_dir`` (or ``out_dir``).

    Returns:
        The files written.
    """
    figure_dir = figure_dir or out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    report = out_dir / REPORT_FILE
    report.write_text(markdown(runs, arm_order))
    written.append(report)
    summaries = summarize_cells(runs, arm_order)
    for task in dict.fromkeys(s.task for s in summaries):
        path = figure_dir / cost_figure_name(task)
        if plot_cost(path, summaries, task):
            written.append(path)
    if plot_sizes(figure_dir / SIZES_FIGURE, summaries):
        written.append(figure_dir / SIZES_FIGURE)
    return written
