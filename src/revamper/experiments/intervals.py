"""Means, spreads and 95% confidence intervals (Student's t) over a handful of seeds.

Self-contained (no SciPy): the two-sided 95% quantile of Student's t comes from a table for
1 to 30 degrees of freedom and from the Cornish-Fisher expansion beyond (error below 1e-4).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (two-sided 95%).

    Raises:
        ValueError: If ``df`` is below 1.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A sample mean with its spread and 95% t-interval.

    Attributes:
        n: Number of values.
        mean: Their mean.
        std: Sample standard deviation (n - 1 in the denominator; 0 for one value).
        half_width: Half-width of the 95% interval for the mean (``None`` for one value).
    """

    n: int
    mean: float
    std: float
    half_width: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate:
        """Estimate the mean of ``values``.

        Raises:
            ValueError: If ``values`` is empty.
        """
        if not values:
            raise ValueError("cannot estimate the mean of no values")
        n = len(values)
        mean = math.fsum(values) / n
        if n == 1:
            return cls(1, mean, 0.0, None)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        return cls(n, mean, std, t_quantile_975(n - 1) * std / math.sqrt(n))

    @property
    def low(self) -> float | None:
        """Lower end of the 95% interval (``None`` for one value)."""
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        """Upper end of the 95% interval (``None`` for one value)."""
        return None if self.half_width is None else self.mean + self.half_width

    def excludes_zero(self) -> bool:
        """Whether the 95% interval lies entirely above or below zero."""
        low, high = self.low, self.high
        return low is not None and high is not None and (low > 0 or high < 0)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: n, mean, std, half-width and both ends of the interval."""
        return {
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "ci95_half_width": self.half_width,
            "ci95_low": self.low,
            "ci95_high": self.high,
        }


def paired_difference(
    values: Mapping[int, float], baseline: Mapping[int, float]
) -> Estimate | None:
    """Estimate the mean of ``values[s] - baseline[s]`` over the keys (seeds) both have.

    Arms run with the same seed start from the same initial weights, so per-seed differences
    remove that share of the noise. ``None`` when no key is shared.
    """
    shared = sorted(set(values) & set(baseline))
    if not shared:
        return None
    return Estimate.of([values[s] - baseline[s] for s in shared])
