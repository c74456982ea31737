"""The cost model of DESIGN.md section 3."""

from __future__ import annotations

import pytest

from revamper.costmodel import StageCosts
from revamper.loader.stats import BatchStats

COSTS = StageCosts(load=0.1, partial=2.4, final=0.8, collate=0.2, get=0.06, put=0.12)


def test_standard_is_the_sum_of_stages() -> None:
    assert COSTS.standard() == pytest.approx(3.5)


def test_refurbishing_formula() -> None:
    r = 3
    expected = (0.1 + 2.4 + 0.12) / r + (1 - 1 / r) * 0.06 + 0.8 + 0.2
    assert COSTS.refurbishing(r) == pytest.approx(expected)
    assert COSTS.refurbishing_bound(r) == pytest.approx(3.5 / expected)


def test_r1_is_standard_and_bound_grows_with_r() -> None:
    assert COSTS.refurbishing(1) == COSTS.standard()
    bounds = [COSTS.refurbishing_bound(r) for r in range(1, 7)]
    assert bounds == sorted(bounds)
    assert bounds[0] == 1.0
    # never beyond what removing load and partial entirely would give
    assert bounds[-1] < 3.5 / (0.8 + 0.2 + 0.06)
    with pytest.raises(ValueError, match="reuse_factor"):
        COSTS.refurbishing(0)


def test_echoing_caches_the_final_part_too() -> None:
    assert COSTS.echoing(3) == pytest.approx((0.1 + 2.4 + 0.8 + 0.12) / 3 + 2 / 3 * 0.06 + 0.2)
    assert COSTS.echoing_bound(3) > COSTS.refurbishing_bound(3)


def test_from_stats_divides_by_the_samples_that_ran_each_stage() -> None:
    stats = BatchStats(
        samples=100,
        planned_misses=30,
        unplanned_misses=3,
        hits=67,
        cache_reads=70,
        cache_writes=33,
        cpu_load=3.3,
        cpu_partial=66.0,
        cpu_final=80.0,
        cpu_cache_read=7.0,
        cpu_cache_write=6.6,
        cpu_collate=20.0,
    )
    costs = StageCosts.from_stats(stats)
    assert costs.load == pytest.approx(0.1) and costs.partial == pytest.approx(2.0)
    assert costs.final == pytest.approx(0.8) and costs.collate == pytest.approx(0.2)
    assert costs.get == pytest.approx(0.1) and costs.put == pytest.approx(0.2)
    merged = StageCosts(1, 2, 3, 4).with_cache_costs(costs)
    assert (merged.load, merged.get, merged.put) == (1, costs.get, costs.put)
