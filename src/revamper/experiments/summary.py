"""One summary per arm: accuracy, time, input-pipeline CPU and diversity over seeds.

Accuracies are summarised by their mean, standard deviation and 95% t-interval over seeds, and
by the paired difference to the ``standard`` arm (same seeds, so the same initial weights): an
interval for the difference that contains 0 means the experiment cannot tell the two apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from revamper.experiments.intervals import Estimate, paired_difference
from revamper.experiments.train import RunResult

BASELINE = "standard"


def reading(delta: Estimate | None) -> str:
    """What a paired difference to standard shows, in words.

    ``lower`` or ``higher`` only when the 95% interval excludes 0; ``within noise`` otherwise
    (which is not evidence of equality either); ``-`` without an interval.
    """
    if delta is None or delta.low is None or delta.high is None:
        return "-"
    if delta.high < 0:
        return "lower"
    if delta.low > 0:
        return "higher"
    return "within noise"


@dataclasses.dataclass(frozen=True)
class ArmSummary:
    """What the report says about one arm.

    Attributes:
        arm: Arm name.
        seeds: The seeds it ran with.
        accuracy: Final test accuracy over seeds.
        vs_standard: Paired difference of accuracy to ``standard`` (``None`` without it, and
            for ``standard`` itself).
        train_seconds: Wall time of the training epochs over seeds.
        input_cpu_seconds: Loader CPU seconds per run over seeds.
        stall_seconds: Time the training loop waited for batches, per run, over seeds.
        diversity: Mean distinct versions per sample over seeds.
        diversity_fraction: Distinct versions per use over seeds.
        input_cpu_by_stage: Mean loader CPU seconds per run, by stage.
    """

    arm: str
    seeds: list[int]
    accuracy: Estimate
    vs_standard: Estimate | None
    train_seconds: Estimate
    input_cpu_seconds: Estimate
    stall_seconds: Estimate
    diversity: Estimate
    diversity_fraction: Estimate
    input_cpu_by_stage: dict[str, float]

    @property
    def reading(self) -> str:
        """What the paired difference to standard shows (see :func:`reading`)."""
        return reading(self.vs_standard)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out: dict[str, Any] = {"arm": self.arm, "seeds": self.seeds, "reading": self.reading}
        for field in (
            "accuracy",
            "vs_standard",
            "train_seconds",
            "input_cpu_seconds",
            "stall_seconds",
            "diversity",
            "diversity_fraction",
        ):
            value = getattr(self, field)
            out[field] = None if value is None else value.as_dict()
        out["input_cpu_by_stage"] = self.input_cpu_by_stage
        return out


def summarize(arm_names: Sequence[str], runs: Sequence[RunResult]) -> list[ArmSummary]:
    """One :class:`ArmSummary` per arm that has runs, in the order of ``arm_names``."""
    baseline = {r.seed: r.test_accuracy for r in runs if r.arm == BASELINE}
    summaries = []
    for name in arm_names:
        mine = [r for r in runs if r.arm == name]
        if not mine:
            continue
        accuracy = {r.seed: r.test_accuracy for r in mine}
        stages = mine[0].input_cpu_by_stage.keys()
        summaries.append(
            ArmSummary(
                arm=name,
                seeds=sorted(accuracy),
                accuracy=Estimate.of([r.test_accuracy for r in mine]),
                vs_standard=None if name == BASELINE else paired_difference(accuracy, baseline),
                train_seconds=Estimate.of([r.train_seconds for r in mine]),
                input_cpu_seconds=Estimate.of([r.input_cpu_seconds for r in mine]),
                stall_seconds=Estimate.of([r.stall_seconds for r in mine]),
                diversity=Estimate.of([r.diversity_mean for r in mine]),
                diversity_fraction=Estimate.of([r.diversity_fraction for r in mine]),
                input_cpu_by_stage={
                    s: sum(r.input_cpu_by_stage[s] for r in mine) / len(mine) for s in stages
                },
            )
        )
    return summaries
