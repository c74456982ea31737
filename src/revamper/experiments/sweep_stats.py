"""The sweep's statistics: per cell and arm, the paired difference to standard, echo - refurbish.

A *cell* is one task at one training-set size. Within a cell every arm ran with the same seeds,
and the same seed means the same initial weights and sample order, so differences are paired by
seed: the per-seed differences get a mean and a 95% Student-t interval
(:mod:`~revamper.experiments.intervals`). For every r that both echoing and refurbishing ran at,
``echo - refurbish`` is paired the same way: a negative interval means refurbishing kept accuracy
that echoing lost.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from revamper.experiments.intervals import Estimate, paired_difference
from revamper.experiments.summary import reading

BASELINE = "standard"


@dataclasses.dataclass(frozen=True)
class ArmCell:
    """One arm in one cell, over seeds.

    Attributes:
        task: The task.
        train_size: Training samples.
        arm: Arm name.
        kind: Arm kind (``none``, ``standard``, ``echo``, ``refurbish``, ...).
        reuse_factor: r (1 for the arms that cache nothing).
        epochs: Epochs of each run.
        seeds: Seeds it ran with.
        accuracy: Test accuracy.
        vs_standard: Paired difference to ``standard`` (``None`` for standard or without it).
        input_cpu_seconds: Input-pipeline CPU seconds per run.
        process_cpu_seconds: The run's process CPU seconds (training, loading, evaluation).
        diversity: Measured distinct versions per sample.
        diversity_formula: The paper's expected distinct versions.
    """

    task: str
    train_size: int
    arm: str
    kind: str
    reuse_factor: int
    epochs: int
    seeds: list[int]
    accuracy: Estimate
    vs_standard: Estimate | None
    input_cpu_seconds: Estimate
    process_cpu_seconds: Estimate
    diversity: Estimate
    diversity_formula: float

    @property
    def reading(self) -> str:
        """``lower``, ``higher``, ``within noise`` or ``-`` (see :func:`summary.reading`)."""
        return reading(self.vs_standard)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.as_dict() if isinstance(value, Estimate) else value
        out["reading"] = self.reading
        return out


@dataclasses.dataclass(frozen=True)
class EchoVsRefurbish:
    """``echo - refurbish`` accuracy at one r in one cell, paired by seed.

    Attributes:
        task: The task.
        train_size: Training samples.
        reuse_factor: r.
        delta: The paired difference (negative: refurbishing more accurate).
    """

    task: str
    train_size: int
    reuse_factor: int
    delta: Estimate

    @property
    def reading(self) -> str:
        """``refurbish better``, ``echo better`` or ``within noise`` (95% interval)."""
        low, high = self.delta.low, self.delta.high
        if low is None or high is None:
            return "-"
        if high < 0:
            return "refurbish better"
        if low > 0:
            return "echo better"
        return "within noise"


def cells(runs: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """The ``(task, train_size)`` cells of ``runs``, in order of first appearance by task, size."""
    seen: dict[tuple[str, int], None] = {}
    for run in runs:
        seen.setdefault((run["task"], run["train_size"]), None)
    tasks = list(dict.fromkeys(t for t, _ in seen))
    return sorted(seen, key=lambda c: (tasks.index(c[0]), c[1]))


def _accuracy_by_seed(runs: Sequence[dict[str, Any]], arm: str) -> dict[int, float]:
    return {r["seed"]: float(r["test_accuracy"]) for r in runs if r["arm"] == arm}


def summarize_cells(
    runs: Sequence[dict[str, Any]], arm_order: Sequence[str] | None = None
) -> list[ArmCell]:
    """One :class:`ArmCell` per cell and arm that has runs (arms in ``arm_order``)."""
    out = []
    for task, size in cells(runs):
        mine = [r for r in runs if r["task"] == task and r["train_size"] == size]
        names = list(arm_order) if arm_order else list(dict.fromkeys(r["arm"] for r in mine))
        baseline = _accuracy_by_seed(mine, BASELINE)
        for name in names:
            arm_runs = [r for r in mine if r["arm"] == name]
            if not arm_runs:
                continue
            accuracy = _accuracy_by_seed(arm_runs, name)
            first = arm_runs[0]
            out.append(
                ArmCell(
                    task=task,
                    train_size=size,
                    arm=name,
                    kind=str(first.get("kind", name.split("-")[0])),
                    reuse_factor=int(first.get("reuse_factor", 1)),
                    epochs=int(first["epochs"]),
                    seeds=sorted(accuracy),
                    accuracy=Estimate.of(list(accuracy.values())),
                    vs_standard=None if name == BASELINE else paired_difference(accuracy, baseline),
                    input_cpu_seconds=Estimate.of([r["input_cpu_seconds"] for r in arm_runs]),
                    process_cpu_seconds=Estimate.of([r["process_cpu_seconds"] for r in arm_runs]),
                    diversity=Estimate.of([r["diversity_mean"] for r in arm_runs]),
                    diversity_formula=float(first["diversity_formula"]),
                )
            )
    return out


def echo_vs_refurbish(runs: Sequence[dict[str, Any]]) -> list[EchoVsRefurbish]:
    """``echo-rR - refurbish-rR`` per cell and every R both ran at, paired by seed."""
    out = []
    for task, size in cells(runs):
        mine = [r for r in runs if r["task"] == task and r["train_size"] == size]
        factors = sorted(
            {int(r["reuse_factor"]) for r in mine if r.get("kind") == "echo"}
            & {int(r["reuse_factor"]) for r in mine if r.get("kind") == "refurbish"}
        )
        for r in factors:
            delta = paired_difference(
                _accuracy_by_seed(mine, f"echo-r{r}"), _accuracy_by_seed(mine, f"refurbish-r{r}")
            )
            if delta is not None:
                out.append(EchoVsRefurbish(task, size, r, delta))
    return out


@dataclasses.dataclass(frozen=True)
class PooledEchoVsRefurbish:
    """``echo - refurbish`` at one r over every (size, seed) pair of a task.

    Pooling the cells gives more pairs than any one cell has, at the price of mixing sizes whose
    differences may not be alike; read it as "on average over this task's sizes".

    Attributes:
        task: The task.
        reuse_factor: r.
        delta: Mean and 95% t-interval over the pairs.
        negative: Pairs where refurbishing was more accurate.
        positive: Pairs where echoing was more accurate (ties are in neither).
        sign_p: Two-sided sign-test p-value of ``negative`` against ``positive``.
    """

    task: str
    reuse_factor: int
    delta: Estimate
    negative: int
    positive: int
    sign_p: float


def sign_test(negative: int, positive: int) -> float:
    """Two-sided exact sign-test p-value (ties dropped): ``P(|X - n/2| >= |k - n/2|)``."""
    n = negative + positive
    if n == 0:
        return 1.0
    k = min(negative, positive)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / float(2**n)
    return min(1.0, 2 * tail)


def pooled_echo_vs_refurbish(runs: Sequence[dict[str, Any]]) -> list[PooledEchoVsRefurbish]:
    """``echo-rR - refurbish-rR`` per task and R, pooled over the task's sizes, paired by seed."""
    out = []
    for task in dict.fromkeys(t for t, _ in cells(runs)):
        diffs: dict[int, list[float]] = {}
        for row in echo_vs_refurbish(runs):
            if row.task != task:
                continue
            mine = [r for r in runs if r["task"] == task and r["train_size"] == row.train_size]
            echo = _accuracy_by_seed(mine, f"echo-r{row.reuse_factor}")
            refurbish = _accuracy_by_seed(mine, f"refurbish-r{row.reuse_factor}")
            shared = sorted(set(echo) & set(refurbish))
            diffs.setdefault(row.reuse_factor, []).extend(echo[s] - refurbish[s] for s in shared)
        for r, values in sorted(diffs.items()):
            negative = sum(v < 0 for v in values)
            positive = sum(v > 0 for v in values)
            out.append(
                PooledEchoVsRefurbish(
                    task, r, Estimate.of(values), negative, positive, sign_test(negative, positive)
                )
            )
    return out
