"""The paper's expected diversity of each kind of loader: distinct versions of one sample.

From Lee et al. (USENIX ATC 2021), as ``docs/design.md`` section 4 gives it, with the full
augmentation drawing uniformly from |A| outcomes and the final part from |A_F|, over k epochs:

- standard: ``U = |A| (1 - (1 - 1/|A|)^k)``;
- echoing at r: ``U = |A| (1 - (1 - 1/|A|)^(k/r))``;
- refurbishing at r: ``U = |A| (1 - (1 - (|A_F|/|A|)(1 - (1 - 1/|A_F|)^r))^(k/r))``.

An unbounded |A| (``math.inf``: a continuous partial part) gives the limits ``k``, ``k/r`` and
``(k/r) |A_F| (1 - (1 - 1/|A_F|)^r)``. Each :class:`~revamper.baselines.variants.LoaderVariant`
names its formula (``versions``), so the experiments read it from the variant registry.
"""

from __future__ import annotations

import math

__all__ = [
    "distinct_of_draws",
    "echoing_versions",
    "no_augmentation_versions",
    "refurbishing_versions",
    "standard_versions",
]


def distinct_of_draws(outcomes: float, draws: float) -> float:
    """Expected distinct values among ``draws`` uniform draws from ``outcomes`` values."""
    if math.isinf(outcomes):
        return draws
    return float(outcomes * (1.0 - (1.0 - 1.0 / outcomes) ** draws))


def no_augmentation_versions(r: float, k: float, final: float, full: float) -> float:
    """One version: nothing is random."""
    del r, k, final, full
    return 1.0


def standard_versions(r: float, k: float, final: float, full: float) -> float:
    """A fresh full augmentation per use: k draws from |A|."""
    del r, final
    return distinct_of_draws(full, k)


def echoing_versions(r: float, k: float, final: float, full: float) -> float:
    """One full augmentation per r uses: k/r draws from |A|."""
    del final
    return distinct_of_draws(full, k / r)


def refurbishing_versions(r: float, k: float, final: float, full: float) -> float:
    """One partial augmentation per r uses, each reused with r fresh final ones."""
    per_entry = distinct_of_draws(final, r)  # |A_F| (1 - (1 - 1/|A_F|)^r)
    if math.isinf(full):
        return (k / r) * per_entry
    return float(full * (1.0 - (1.0 - per_entry / full) ** (k / r)))
