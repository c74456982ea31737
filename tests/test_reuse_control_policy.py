"""The loader's reuse policy: the schedule of r values it grows, keeps, saves and restores.

Synthetic epoch statistics (from :class:`tests.test_reuse_control.Machine`) stand in for the
loader's; no clock is involved.
"""

from __future__ import annotations

import logging

import pytest

from revamper.distributed import DistributedSetup
from revamper.loader.reuse_control import DEFAULT_MAX_REUSE_FACTOR, ReuseControl
from revamper.loader.reuse_model import EpochMeasurement
from revamper.loader.reuse_policy import ReusePolicy
from revamper.loader.stats import EpochStats
from tests.test_reuse_control import Machine

SLOW_CONSUMER = Machine(1e-3, 1e-4, 1e-4, 2e-4, workers=2, cores=2.0, step=5e-3)
FAST_CONSUMER = Machine(1e-2, 1e-4, 5e-4, 2e-4, workers=2, cores=2.0, step=0.0)


def as_stats(measured: EpochMeasurement) -> EpochStats:
    """The loader's statistics that give ``measured`` (its CPU split into stages)."""
    stats = EpochStats(
        epoch=measured.epoch,
        samples=measured.samples,
        batches=measured.batches,
        planned_batches=measured.batches,
        planned_misses=measured.computed - measured.unplanned_misses,
        unplanned_misses=measured.unplanned_misses,
        hits=measured.planned_hits - measured.unplanned_misses,
        cache_reads=measured.planned_hits,
        cache_writes=measured.computed,
        cpu_partial=measured.cpu_miss - measured.cpu_write,
        cpu_cache_write=measured.cpu_write,
        cpu_cache_read=measured.cpu_read,
        cpu_final=measured.cpu_common,
        wall_seconds=measured.wall_seconds,
        batch_samples=[measured.samples // measured.batches] * measured.batches,
        reuse_factor=measured.reuse_factor,
    )
    stats.record_wait(measured.first_wait_seconds, first=True)
    stats.record_wait(measured.wait_seconds - measured.first_wait_seconds)
    for _ in range(measured.steps):
        stats.record_step(measured.step_seconds / measured.steps)
    return stats


def policy(spec: object = "auto", bound: int | None = None) -> ReusePolicy:
    return ReusePolicy(spec, bound, setup=DistributedSetup(), num_workers=2)  # type: ignore[arg-type]


def run(p: ReusePolicy, machine: Machine, epochs: range) -> None:
    last = None
    for epoch in epochs:
        p.prepare(epoch, last)
        last = as_stats(machine.run(epoch, p.at(epoch)))


def test_auto_starts_at_r_1_with_the_default_bound_and_grows_one_value_per_epoch() -> None:
    p = policy()
    assert (p.auto, p.initial, p.bound, p.schedule) == (True, 1, DEFAULT_MAX_REUSE_FACTOR, ())
    run(p, FAST_CONSUMER, range(5))
    assert len(p.schedule) == 4 and p.schedule[-1] == 4  # epochs 1..4 chosen
    assert p.identity() == {"reuse_factor": 1, "max_reuse_factor": 4}


def test_a_slow_consumer_runs_r_1_and_the_change_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = policy(bound=3)
    with caplog.at_level(logging.INFO, logger="revamper.loader.reuse_policy"):
        run(p, SLOW_CONSUMER, range(6))
    assert p.schedule == (1, 1, 1, 1, 1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "epoch 1 runs at r=1" in lines[0], lines
    rate = p.predicted_rate(1)
    assert rate is not None and rate > 0


def test_epochs_already_chosen_keep_their_r_and_skipped_ones_take_the_last() -> None:
    p = policy()
    run(p, FAST_CONSUMER, range(3))
    chosen = p.schedule
    assert not p.prepare(1, None) and p.schedule == chosen  # a re-run epoch
    p.prepare(6, None)  # set_epoch(6): epochs 3-5 were skipped, nothing measured
    assert p.schedule[:2] == chosen and p.schedule[2:5] == (chosen[-1],) * 3
    assert len(p.schedule) == 6 and p.at(6) == p.schedule[5] and p.at(100) == p.schedule[-1]


def test_a_loaded_schedule_continues_from_its_last_value() -> None:
    first = policy()
    run(first, FAST_CONSUMER, range(4))
    saved = first.state()
    second = policy()
    second.load(saved)
    assert second.schedule == first.schedule and second.at(3) == first.at(3)
    # The next choice starts from the saved r (no first-choice jump).
    second.prepare(4, as_stats(FAST_CONSUMER.run(3, second.at(3))))
    assert second.schedule[:3] == first.schedule


def test_a_fixed_r_has_no_schedule_but_predicts_its_rate() -> None:
    p = policy(3)
    assert (p.auto, p.initial, p.bound, p.max_reuse_factor) == (False, 3, 3, None)
    run(p, FAST_CONSUMER, range(3))
    assert p.schedule == () and p.at(7) == 3
    assert p.predicted_rate(2) is not None and p.predicted_rate(0) is None
    wider = policy(2, 4)
    assert (wider.initial, wider.bound, wider.max_reuse_factor) == (2, 4, 4)


def test_settings_come_with_a_control_object() -> None:
    p = policy(ReuseControl(max_reuse_factor=6, margin=0.2))
    assert p.bound == 6 and p.describe() == "'auto' (max 6)"
    assert policy(ReuseControl(max_reuse_factor=6), 6).bound == 6


@pytest.mark.parametrize(
    ("spec", "bound", "error", "match"),
    [
        ("fast", None, ValueError, "'auto'"),
        (2.5, None, TypeError, "reuse_factor must be an int or 'auto'"),
        (True, None, TypeError, "reuse_factor"),
        (0, None, ValueError, "reuse_factor must be from 1"),
        (3, 2, ValueError, "max_reuse_factor must be from 3"),
        ("auto", 0, ValueError, "max_reuse_factor"),
        ("auto", "4", TypeError, "max_reuse_factor must be an int"),
        (ReuseControl(max_reuse_factor=3), 4, ValueError, "contradicts"),
    ],
)
def test_bad_arguments_name_what_is_wrong(
    spec: object, bound: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        policy(spec, bound)  # type: ignore[arg-type]


def test_numpy_integers_are_reuse_factors_like_every_other_int_argument() -> None:
    import numpy as np

    from revamper import RevamperLoader

    with RevamperLoader(
        list(range(8)), batch_size=4, reuse_factor=np.int64(2), max_reuse_factor=np.int32(3)
    ) as loader:
        assert loader.plan_config.reuse_factor == 2
