"""The sweep's figures: accuracy against input-pipeline CPU per cell, and against data size.

- :func:`plot_cost`: one figure per task, one panel per training-set size. Each arm is a point
  at (mean input-pipeline CPU seconds per run, mean test accuracy) with its 95% t-interval;
  echoing and refurbishing are each joined as r grows, starting from ``standard`` (r = 1); the
  Pareto front (no other arm both cheaper and more accurate) is drawn as a grey step line and
  its points ringed.
- :func:`plot_sizes`: accuracy against training-set size per arm (top row), and the paired
  difference to standard with its interval (bottom row), one column per task.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from revamper.experiments.sweep_stats import ArmCell

_STYLE = {
    "none": ("X", "tab:gray"),
    "standard": ("o", "black"),
    "simplified": ("D", "tab:purple"),
    "echo": ("v", "tab:red"),
    "refurbish": ("s", "tab:blue"),
}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (lower cost x, higher accuracy y).

    A point is dominated when another is at most as costly and at least as accurate, and
    strictly better in one of the two. Returned in order of increasing cost.
    """
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox <= x and oy >= y) and (ox < x or oy > y)
            for j, (ox, oy) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _half(estimate: Any) -> float:
    return float(estimate.half_width) if estimate.half_width is not None else 0.0


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cost_panel(axis: Any, arms: Sequence[ArmCell]) -> None:
    xs = [a.input_cpu_seconds.mean for a in arms]
    ys = [100 * a.accuracy.mean for a in arms]
    labelled: set[str] = set()
    for a, x, y in zip(arms, xs, ys, strict=True):
        marker, colour = _STYLE.get(a.kind, ("o", "tab:green"))
        label = a.kind if a.reuse_factor > 1 else a.arm  # one legend entry per way of caching
        axis.errorbar(
            x, y, yerr=100 * _half(a.accuracy), fmt=marker, color=colour, capsize=3,
            markersize=6, label=None if label in labelled else label,
        )  # fmt: skip
        labelled.add(label)
        if a.reuse_factor > 1:
            axis.annotate(
                f"r{a.reuse_factor}", (x, y), textcoords="offset points", xytext=(5, 3),
                fontsize=7, color=colour,
            )  # fmt: skip
    standard = [a for a in arms if a.arm == "standard"]
    for kind in ("echo", "refurbish"):
        line = sorted((a for a in arms if a.kind == kind), key=lambda a: a.reuse_factor)
        line = standard + line
        if len(line) > 1:
            axis.plot(
                [a.input_cpu_seconds.mean for a in line],
                [100 * a.accuracy.mean for a in line],
                "-", color=_STYLE[kind][1], alpha=0.6, linewidth=1.2,
            )  # fmt: skip
    front = pareto_front(list(zip(xs, ys, strict=True)))
    if front:
        fx, fy = [xs[i] for i in front], [ys[i] for i in front]
        axis.step(fx, fy, where="post", color="0.5", linestyle="--", linewidth=1, zorder=0)
        axis.scatter(fx, fy, s=160, facecolors="none", edgecolors="0.4", linewidths=1.2)
    axis.grid(alpha=0.3)


def plot_cost(path: Path, summaries: Sequence[ArmCell], task: str) -> bool:
    """Accuracy against input CPU for ``task``, one panel per size; ``False`` if no data."""
    mine = [s for s in summaries if s.task == task]
    sizes = sorted({s.train_size for s in mine})
    if not sizes:
        return False
    plt = _pyplot()
    cols = min(len(sizes), 4)
    rows = (len(sizes) + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False, constrained_layout=True
    )
    for k, size in enumerate(sizes):
        axis = axes[k // cols][k % cols]
        arms = [s for s in mine if s.train_size == size]
        _cost_panel(axis, arms)
        epochs = arms[0].epochs
        axis.set_title(f"{task}: {size} training samples, {epochs} epochs", fontsize=10)
        axis.set_xlabel("input-pipeline CPU s per run")
        axis.set_ylabel("test accuracy % (95% CI)")
    for k in range(len(sizes), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(8, len(labels)))
    fig.suptitle(
        f"{task}: accuracy against input-pipeline CPU (lines: standard, then r = 2, 4, 8; "
        "dashed and ringed: Pareto front)",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_sizes(path: Path, summaries: Sequence[ArmCell]) -> bool:
    """Accuracy and paired difference to standard against training-set size, per arm."""
    tasks = list(dict.fromkeys(s.task for s in summaries))
    if not tasks:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(
        2, len(tasks), figsize=(6.2 * len(tasks), 8), squeeze=False, constrained_layout=True
    )
    for col, task in enumerate(tasks):
        mine = [s for s in summaries if s.task == task]
        arms = list(dict.fromkeys(s.arm for s in mine))
        top, bottom = axes[0][col], axes[1][col]
        for k, arm in enumerate(arms):
            points = sorted((s for s in mine if s.arm == arm), key=lambda s: s.train_size)
            kind = points[0].kind
            marker, colour = _STYLE.get(kind, ("o", "tab:green"))
            alpha = 0.45 + 0.55 * (points[0].reuse_factor / 8 if points[0].reuse_factor > 1 else 1)
            shift = 1 + 0.012 * (k - len(arms) / 2)  # spread the bars apart on the log axis
            xs = [s.train_size * shift for s in points]
            top.errorbar(
                xs, [100 * s.accuracy.mean for s in points],
                yerr=[100 * _half(s.accuracy) for s in points],
                fmt=f"{marker}-", color=colour, alpha=alpha, capsize=3, label=arm,
            )  # fmt: skip
            deltas = [s for s in points if s.vs_standard is not None]
            if deltas:
                bottom.errorbar(
                    [s.train_size * shift for s in deltas],
                    [100 * s.vs_standard.mean for s in deltas],  # type: ignore[union-attr]
                    yerr=[100 * _half(s.vs_standard) for s in deltas],
                    fmt=f"{marker}-", color=colour, alpha=alpha, capsize=3, label=arm,
                )  # fmt: skip
        bottom.axhline(0, color="black", linewidth=0.8)
        sizes = sorted({s.train_size for s in mine})
        for axis in (top, bottom):
            axis.set_xscale("log")
            axis.set_xticks(sizes, [str(n) for n in sizes])
            axis.minorticks_off()
            axis.set_xlim(sizes[0] / 1.3, sizes[-1] * 1.3)
            axis.set_xlabel("training samples (equal optimisation steps)")
            axis.grid(alpha=0.3)
        top.set_title(f"{task}: test accuracy")
        top.set_ylabel("test accuracy % (95% CI)")
        bottom.set_title(f"{task}: paired difference to standard")
        bottom.set_ylabel("Δ accuracy, points (95% CI)")
        top.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
