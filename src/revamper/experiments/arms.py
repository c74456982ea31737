"""The arms of the accuracy experiment and the loader each one trains from.

An arm is a loader variant of :mod:`revamper.baselines.variants` (every registered variant is an
arm), all built on :class:`~revamper.RevamperLoader` with the same batch size, workers and seed,
so they differ only in what is augmented and cached:

- ``none``: no augmentation (only the conversion to the model's input), nothing cached;
- ``standard``: the full pipeline on every use, nothing cached (a plain DataLoader's work);
- ``simplified``: the full pipeline without its elastic step, on every use, nothing cached;
- ``echo:r``: data echoing, the fully augmented sample cached and repeated r times;
- ``refurbish:r``: data refurbishing, the partial part cached and reused r times, the final part
  re-run on every use;
- ``unbalanced:r``: refurbishing without the cache-aware shuffle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from revamper.baselines.variants import loader_of_kind, loader_variant, variant_names
from revamper.experiments.augment import Augmentation, augmentation
from revamper.loader import RevamperLoader

Kind = str
"""A loader variant's name (:func:`~revamper.baselines.variants.variant_names`)."""
KINDS: tuple[Kind, ...] = variant_names()


def _takes_r(kind: Kind) -> bool:
    return loader_variant(kind).takes_r


@dataclasses.dataclass(frozen=True)
class Arm:
    """One configuration of the experiment.

    Attributes:
        kind: What to train with (see the module docstring).
        reuse_factor: r (1 for the arms that cache nothing).
    """

    kind: Kind
    reuse_factor: int = 1

    @property
    def name(self) -> str:
        """``none``, ``standard``, ``echo-r2``, ``refurbish-r3``, ...: unique within a run."""
        return f"{self.kind}-r{self.reuse_factor}" if _takes_r(self.kind) else self.kind

    @property
    def pipeline(self) -> str:
        """The augmentation it uses: ``full``, ``simplified`` or ``none``."""
        return loader_variant(self.kind).pipeline

    @classmethod
    def parse(cls, spec: str) -> Arm:
        """Parse ``kind``, ``kind:r`` or an arm's name such as ``echo-r2``.

        Raises:
            ValueError: With a one-line message saying what is accepted.
        """
        text = spec.strip()
        kind, sep, r_text = text.partition(":")
        if not sep and "-r" in text:
            kind, _, r_text = text.partition("-r")
        if kind not in variant_names():
            words = [f"{k}:R" if _takes_r(k) else k for k in variant_names()]
            accepted = ", ".join(words[:-1]) + " or " + words[-1]
            raise ValueError(f"unknown arm {spec!r}: use {accepted}")
        if not _takes_r(kind):
            if r_text:
                raise ValueError(f"arm {kind!r} takes no reuse factor, got {spec!r}")
            return cls(kind)
        try:
            r = int(r_text)
        except ValueError:
            raise ValueError(f"arm {spec!r} needs a whole reuse factor, e.g. {kind}:3") from None
        if r < 2:
            raise ValueError(f"the reuse factor of {spec!r} must be at least 2 (1 is standard)")
        return cls(kind, r)

    def make_loader(
        self,
        dataset: Any,
        pipelines: Callable[[str], Augmentation] = augmentation,
        **loader_kwargs: Any,
    ) -> RevamperLoader:
        """Build this arm's loader over ``dataset`` (items ``(input, label, index)``).

        Args:
            dataset: The training data set.
            pipelines: Gives the task's pipeline by name (``full``, ``simplified``, ``none``);
                the digits' pipelines by default.
            **loader_kwargs: Passed to the loader (batch size, shuffle, workers, seed, ...).
        """
        pipeline = pipelines(self.pipeline)
        return loader_of_kind(
            self.kind,
            dataset,
            partial_transform=pipeline.partial_transform,
            final_transform=pipeline.final_transform,
            reuse_factor=self.reuse_factor,
            **loader_kwargs,
        )


DEFAULT_ARMS = "none,standard,simplified,echo:2,echo:3,echo:4,refurbish:2,refurbish:3,refurbish:4"
"""Every arm the experiment compares unless told otherwise."""


def parse_arms(text: str) -> list[Arm]:
    """Parse a comma-separated list of arms.

    Raises:
        ValueError: For an unknown or repeated arm, or an empty list.
    """
    arms = [Arm.parse(spec) for spec in text.split(",") if spec.strip()]
    if not arms:
        raise ValueError("no arms given: list some, e.g. --arms standard,refurbish:3")
    names = [arm.name for arm in arms]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"--arms lists an arm twice: {', '.join(repeated)}")
    return arms


def arm_names(arms: Sequence[Arm]) -> list[str]:
    """The names of ``arms``, in order."""
    return [arm.name for arm in arms]
