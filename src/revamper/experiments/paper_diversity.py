"""The paper's expected diversity: distinct fully augmented versions of one sample in k epochs.

From Lee et al. (USENIX ATC 2021), as ``docs/design.md`` section 4 gives it, with the full
augmentation drawing uniformly from |A| outcomes and the final part from |A_F|:

- standard: ``U = |A| (1 - (1 - 1/|A|)^k)``;
- echoing at r: ``U = |A| (1 - (1 - 1/|A|)^(k/r))``;
- refurbishing at r: ``U = |A| (1 - (1 - (|A_F|/|A|)(1 - (1 - 1/|A_F|)^r))^(k/r))``.

The formulas are the loader variants' own (:mod:`revamper.baselines.versions`, named by each
variant in :mod:`revamper.baselines.variants`); this module applies them to an arm.

In both tasks here the partial part is continuous (random angles, warps, crop boxes), so |A| is
unbounded and the formulas reduce to their limits: ``k``, ``k/r`` and
``(k/r) |A_F| (1 - (1 - 1/|A_F|)^r)``. The formula counts one computation per r uses; the
loader's balanced eviction reuses the first cycle's chunks fewer times, so the measured
diversity of both caching arms sits slightly above it when k is a small multiple of r.
"""

from __future__ import annotations

import math

from revamper.baselines.variants import loader_variant, variant_names
from revamper.baselines.versions import distinct_of_draws

__all__ = ["distinct_of_draws", "expected_versions"]


def expected_versions(
    kind: str,
    reuse_factor: int,
    epochs: int,
    final_outcomes: float,
    full_outcomes: float = math.inf,
) -> float:
    """The paper's expected distinct versions of one sample over ``epochs`` epochs.

    Args:
        kind: A loader variant's name (:mod:`revamper.baselines.variants`: ``none``,
            ``standard``, ``simplified``, ``echo``, ``refurbish``, ...); its formula is the
            variant's ``versions``.
        reuse_factor: r (ignored by the arms that cache nothing).
        epochs: k.
        final_outcomes: |A_F|, the final part's distinct outcomes.
        full_outcomes: |A| (unbounded by default: a continuous partial part).

    Raises:
        ValueError: For an unknown kind or non-positive counts.
    """
    if epochs < 1 or reuse_factor < 1 or final_outcomes < 1 or full_outcomes < 1:
        raise ValueError("epochs, reuse_factor and the outcome counts must be at least 1")
    variant = loader_variant(kind) if kind in variant_names() else None
    if variant is None or variant.versions is None:
        raise ValueError(f"unknown arm kind {kind!r}")
    return variant.versions(float(reuse_factor), float(epochs), final_outcomes, full_outcomes)
