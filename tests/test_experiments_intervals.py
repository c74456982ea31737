"""Means, standard deviations and 95% t-intervals over seeds."""

from __future__ import annotations

import math

import pytest

from revamper.experiments.intervals import Estimate, paired_difference, t_quantile_975


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423), (40, 2.0211),
     (60, 2.0003), (120, 1.9799), (10_000, 1.9602)],
)  # fmt: skip
def test_t_quantiles_match_tables(df: int, expected: float) -> None:
    assert t_quantile_975(df) == pytest.approx(expected, abs=2e-4)


def test_t_quantiles_match_scipy_where_available() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 300):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-4)
    with pytest.raises(ValueError, match="at least 1"):
        t_quantile_975(0)


def test_estimate_of_three_values() -> None:
    estimate = Estimate.of([2.0, 3.0, 4.0])
    assert (estimate.n, estimate.mean, estimate.std) == (3, 3.0, 1.0)
    assert estimate.half_width == pytest.approx(4.3027 / math.sqrt(3))  # 2.48
    assert estimate.low == pytest.approx(3.0 - estimate.half_width)
    assert estimate.high == pytest.approx(3.0 + estimate.half_width)
    assert estimate.excludes_zero()
    assert not Estimate.of([1.0, 2.0, 3.0]).excludes_zero()  # 2 ± 2.48
    assert estimate.as_dict()["ci95_low"] == estimate.low


def test_one_value_has_no_interval() -> None:
    estimate = Estimate.of([0.97])
    assert estimate.std == 0.0 and estimate.half_width is None and estimate.low is None
    assert not estimate.excludes_zero()
    with pytest.raises(ValueError, match="no values"):
        Estimate.of([])


def test_paired_difference_uses_shared_seeds() -> None:
    arm = {0: 0.98, 1: 0.97, 2: 0.99, 7: 0.5}
    standard = {0: 0.97, 1: 0.97, 2: 0.97}
    difference = paired_difference(arm, standard)
    assert difference is not None
    assert difference.n == 3
    assert difference.mean == pytest.approx(0.01)
    assert not difference.excludes_zero()  # +0.01, 0.00, +0.02: the interval reaches below 0
    assert paired_difference({5: 1.0}, standard) is None
