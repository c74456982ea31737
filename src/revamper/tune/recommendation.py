"""The result of tuning: what was measured, and the :class:`Recommendation` made from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from revamper.loader.layout import Transform
from revamper.tune.choice import Verdict, format_bytes
from revamper.tune.diversity import DiversityProfile
from revamper.tune.overhead import Overhead
from revamper.tune.predict import Candidate, Parallelism
from revamper.tune.profile import PipelineProfile

BUSY_CORES = 0.15
"""Cores other processes may keep busy while measuring before the results are flagged."""


@dataclasses.dataclass(frozen=True)
class Measurements:
    """Everything measured about a pipeline on a data set.

    Attributes:
        profile: Per-step CPU costs and per-split cache figures.
        diversity: Distinct outputs of every candidate final part.
        overhead: The loader machinery's CPU cost per sample.
        background_cores: Cores other processes kept busy while measuring (``None``: unknown).
        refurbish_factor: What cached configurations' stages cost in a real loader over their
            profiled cost (1.0: not checked).
        efficiency: The share of the model's throughput that real run reached (1.0: not
            checked).
        checked: The ``(split, r)`` whose real run gave both, if any.
    """

    profile: PipelineProfile
    diversity: DiversityProfile
    overhead: Overhead
    background_cores: float | None = None
    refurbish_factor: float = 1.0
    efficiency: float = 1.0
    checked: tuple[int, int] | None = None

    @property
    def disturbed(self) -> bool:
        """Whether other processes were busy enough to inflate the measured costs."""
        return self.background_cores is not None and self.background_cores > BUSY_CORES


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """The configuration to use, what is predicted for it, and the table it was chosen from.

    Attributes:
        partial_transform: The cached part (``None`` at ``r`` = 1: nothing is cached).
        final_transform: The part re-run on every use.
        reuse_factor: ``r``.
        split: Leading steps of the pipeline in the cached part.
        samples_per_second: Predicted steady-state loader throughput.
        speedup: That throughput over standard loading's.
        cache_bytes: Bytes the cache holds for the whole data set.
        diversity: The normalised diversity the choice used (the lower of the two estimates).
        diversity_formula: The paper's formula's figure.
        diversity_measured: The measured figure.
        candidates: Every configuration predicted, standard first.
        verdicts: Why each candidate won or lost, in the same order.
        parallelism: The workers and cores assumed.
        batch_size: The batch size assumed.
        num_samples: Size of the data set.
        min_diversity: The diversity asked for.
        budget_bytes: The memory budget (``None``: none).
        pipeline: The pipeline's name.
        step_names: Its steps' names.
        measurements: The raw measurements.
        fixed_split: Whether the pipeline came as a ``(partial, final)`` pair, so that only
            ``r`` was chosen.
    """

    partial_transform: Transform | None
    final_transform: Transform | None
    reuse_factor: int
    split: int
    samples_per_second: float
    speedup: float
    cache_bytes: int
    diversity: float
    diversity_formula: float
    diversity_measured: float
    candidates: tuple[Candidate, ...]
    verdicts: tuple[Verdict, ...]
    parallelism: Parallelism
    batch_size: int
    num_samples: int
    min_diversity: float
    budget_bytes: int | None
    pipeline: str
    step_names: tuple[str, ...]
    measurements: Measurements
    fixed_split: bool = False

    @property
    def chosen(self) -> Candidate:
        """The chosen row of the table."""
        for candidate, verdict in zip(self.candidates, self.verdicts, strict=True):
            if verdict.chosen:
                return candidate
        raise AssertionError("a recommendation always has a chosen candidate")

    @property
    def standard(self) -> Candidate:
        """The standard-loading row of the table."""
        return next(c for c in self.candidates if c.is_standard)

    @property
    def assumption(self) -> str:
        """The workers, cores and batch size the prediction assumes, in words."""
        return f"{self.parallelism.describe()}; batch {self.batch_size}"

    def bench_command(self, *extra: str) -> str:
        """The ``revamper bench`` command that measures this choice against standard.

        Args:
            *extra: More arguments to append (the data, the pipeline).
        """
        if self.reuse_factor == 1:
            scenarios = "standard"
        else:
            scenarios = f"standard,refurbish:{self.reuse_factor} --split {self.split}"
        return (
            f"revamper bench --scenarios {scenarios} --workers {self.parallelism.num_workers} "
            f"--batch-size {self.batch_size}" + "".join(f" {arg}" for arg in extra)
        )

    def table(self) -> list[dict[str, Any]]:
        """The table as JSON-ready rows."""
        return [
            {**dataclasses.asdict(c), "diversity": c.diversity, **dataclasses.asdict(v)}
            for c, v in zip(self.candidates, self.verdicts, strict=True)
        ]

    def explain(self, *, others: bool = True, bench_args: Sequence[str] = ()) -> str:
        """The recommendation, its constraints and assumptions, and why every other row lost.

        Args:
            others: Also list every other configuration with the reason it lost.
            bench_args: Extra arguments for the ``revamper bench`` command it suggests.
        """
        names = list(self.step_names)
        if self.reuse_factor == 1:
            head = "Load as usual (no cache): the whole pipeline runs on every use."
        else:
            cached = ", ".join(names[: self.split]) or "the raw items"
            rerun = ", ".join(names[self.split :]) or "nothing (data echoing)"
            head = (
                f"Cache {cached}; reuse each cached sample {self.reuse_factor} times "
                f"(r = {self.reuse_factor}); re-run {rerun} on every use."
            )
        standard = self.standard.samples_per_second
        budget = (
            "no memory budget"
            if self.budget_bytes is None
            else f"cache within {format_bytes(self.budget_bytes)}"
        )
        m = self.measurements
        calibrated = "calibrated with a real loader" if m.overhead.measured else "assumed"
        lines = [
            head,
            f"Predicted: {self.samples_per_second:.0f} samples/s, {self.speedup:.2f}x standard "
            f"loading ({standard:.0f} samples/s); cache {format_bytes(self.cache_bytes)} for "
            f"{self.num_samples:,} samples; diversity {self.diversity:.2f} of standard's "
            f"(formula {self.diversity_formula:.2f}, measured {self.diversity_measured:.2f}).",
            f"Constraints: diversity at least {self.min_diversity:.2f} of standard's; {budget}.",
            f"Assumed: {self.assumption}; costs measured on {m.profile.items} items; loader "
            f"overhead {m.overhead.worker * 1e3:.2f} ms/sample in workers and "
            f"{m.overhead.main * 1e3:.2f} ms in the main process ({calibrated}); no other "
            "process competing for the cores.",
            f"Check it: {self.bench_command(*bench_args)}",
        ]
        if m.checked is not None:
            split, r = m.checked
            lines.append(
                f"Checked with a short real run of split {split}, r={r}: in a loader, the stages "
                f"of cached configurations cost {m.refurbish_factor:.2f}x their profiled CPU "
                "time (cache traffic between recomputations), and the loader reached "
                f"{m.efficiency:.0%} of the modelled speed (epoch boundaries); every prediction "
                "includes both."
            )
        if m.disturbed:
            lines.append(
                f"Warning: other processes kept {m.background_cores:.1f} cores busy while this "
                "was measured, which inflates CPU costs; measure again on a quiet machine."
            )
        if self.fixed_split:
            lines.append(
                "The pipeline came as a (partial, final) pair, so only r was chosen; pass its "
                "steps as a list to choose the split point too."
            )
        if not others:
            return "\n".join(lines)
        lines.append("Why not the others:")
        for candidate, verdict in zip(self.candidates, self.verdicts, strict=True):
            if verdict.chosen:
                continue
            where = "" if candidate.is_standard else f" [{candidate.description}]"
            lines.append(f"  {candidate.label}{where}: {verdict.reason}")
        return "\n".join(lines)
