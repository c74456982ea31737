"""The paper's expected diversity: distinct fully augmented versions of one sample in k epochs.

From Lee et al. (USENIX ATC 2021), as ``docs/design.md`` section 4 gives it, with the full
augmentation drawing uniformly from |A| outcomes and the final part from |A_F|:

- standard: ``U = |A| (1 - (1 - 1/|A|)^k)``;
- echoing at r: ``U = |A| (1 - (1 - 1/|A|)^(k/r))``;
- refurbishing at r: ``U = |A| (1 - (1 - (|A_F|/|A|)(1 - (1 - 1/|A_F|)^r))^(k/r))``.

In both tasks here the partial part is continuous (random angles, warps, crop boxes), so |A| is
unbounded and the formulas reduce to their limits: ``k``, ``k/r`` and
``(k/r) |A_F| (1 - (1 - 1/|A_F|)^r)``. The formula counts one computation per r uses; the
loader's balanced eviction reuses the first cycle's chunks fewer times, so the measured
diversity of both caching arms sits slightly above it when k is a small multiple of r.
"""

from __future__ import annotations

import math


def distinct_of_draws(outcomes: float, draws: float) -> float:
    """Expected distinct values among ``draws`` uniform draws from ``outcomes`` values."""
    if math.isinf(outcomes):
        return draws
    return float(outcomes * (1.0 - (1.0 - 1.0 / outcomes) ** draws))


def expected_versions(
    kind: str,
    reuse_factor: int,
    epochs: int,
    final_outcomes: float,
    full_outcomes: float = math.inf,
) -> float:
    """The paper's expected distinct versions of one sample over ``epochs`` epochs.

    Args:
        kind: ``none``, ``standard``, ``simplified``, ``echo`` or ``refurbish``.
        reuse_factor: r (ignored by the arms that cache nothing).
        epochs: k.
        final_outcomes: |A_F|, the final part's distinct outcomes.
        full_outcomes: |A| (unbounded by default: a continuous partial part).

    Raises:
        ValueError: For an unknown kind or non-positive counts.
    """
    if epochs < 1 or reuse_factor < 1 or final_outcomes < 1 or full_outcomes < 1:
        raise ValueError("epochs, reuse_factor and the outcome counts must be at least 1")
    k, r = float(epochs), float(reuse_factor)
    if kind == "none":
        return 1.0
    if kind in ("standard", "simplified"):
        return distinct_of_draws(full_outcomes, k)
    if kind == "echo":
        return distinct_of_draws(full_outcomes, k / r)
    if kind == "refurbish":
        per_entry = distinct_of_draws(final_outcomes, r)  # |A_F| (1 - (1 - 1/|A_F|)^r)
        if math.isinf(full_outcomes):
            return (k / r) * per_entry
        return float(full_outcomes * (1.0 - (1.0 - per_entry / full_outcomes) ** (k / r)))
    raise ValueError(f"unknown arm kind {kind!r}")
