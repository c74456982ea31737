"""``reuse_factor="auto"``'s choice of r, on synthetic measurements of a simulated machine.

A :class:`Machine` has true per-sample costs, a true overhead the loader's timers do not see,
workers on cores and a consumer with a fixed step; it turns "an epoch at r" into the
:class:`EpochMeasurement` a loader would record (optionally with noise). The decision logic is
then tested without any clock: it must find r = 1 when the loader keeps up without reuse, a
larger r when it does not, stay within [1, R], settle, and not flap.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from revamper.distributed import DistributedSetup
from revamper.loader import reuse_control, reuse_evidence
from revamper.loader.reuse_control import (
    ControlState,
    Decision,
    ReuseControl,
    decide,
    smallest_sufficient,
)
from revamper.loader.reuse_model import CostModel, EpochMeasurement, fit
from revamper.loader.reuse_policy import ReusePolicy
from revamper.loader.stats import EpochStats

N, B = 1000, 10


@dataclasses.dataclass(frozen=True)
class Machine:
    """The truth behind the measurements (seconds per sample; ``step`` per sample too)."""

    miss: float  # load + partial + write, per computed sample
    read: float
    common: float
    overhead: float
    workers: int
    cores: float
    step: float
    write_share: float = 0.1  # of ``miss``, the cache write
    wall_factor: float = 0.0  # > 0: the workers' wall times are measured, this x their CPU
    handoff: float = 0.0  # per sample, a built batch's way to the consumer (workers only)
    batch: int = B  # samples per batch (N of them per epoch)

    @property
    def capacity(self) -> float:
        if self.workers == 0:
            return 1.0
        return float(self.workers) if self.wall_factor else min(self.workers, self.cores)

    def model(self) -> CostModel:
        w = self.wall_factor or 1.0
        return CostModel(
            miss=self.miss * (1.0 - self.write_share) * w,
            read=self.read * w,
            read_measured=True,
            common=self.common * w,
            failed_hits=0.0,
            overhead=self.overhead,
            capacity=self.capacity,
            serial=self.workers == 0,
            write=self.miss * self.write_share * w,
            first_batch=self.batch if self.workers else 0,
            epoch_samples=N,
        )

    def run(self, epoch: int, r: int, noise: float = 1.0) -> EpochMeasurement:
        """Epoch ``epoch`` at ``r``; as in the planner, an epoch at r = 1 writes nothing."""
        computed = N if epoch == 0 or r == 1 else round(N / r)
        hits = N - computed
        written = computed if epoch == 0 or r > 1 else 0
        write = self.miss * self.write_share
        miss_cpu = computed * self.miss - (computed - written) * write
        cpu = (miss_cpu + hits * self.read + N * self.common) / N
        produce = (cpu * (self.wall_factor or 1.0) + self.overhead) / self.capacity * noise
        if self.workers == 0:
            per, wait, starved = self.step + produce, produce, produce
        else:
            consumer = self.step + self.handoff
            per = max(consumer, produce)
            wait, starved = per - self.step, max(0.0, produce - consumer)
        # With workers, one of them builds the first batch alone (after a short start-up).
        first_wait = 0.02 + self.batch * cpu * (self.wall_factor or 1.0) if self.workers else 0.5
        delivered = N - self.batch
        return EpochMeasurement(
            epoch=epoch,
            reuse_factor=r,
            samples=N,
            batches=N // self.batch,
            computed=computed,
            planned_hits=hits,
            unplanned_misses=0,
            cpu_miss=miss_cpu,
            cpu_write=written * write,
            cpu_read=hits * self.read,
            cpu_common=N * self.common,
            wall_seconds=first_wait + per * delivered,
            wait_seconds=first_wait + wait * delivered,
            first_wait_seconds=first_wait,
            step_seconds=self.step * N,
            steps=N // self.batch,
            first_batch_samples=self.batch,
            num_workers=self.workers,
            cores=self.cores,
            wall_compute=miss_cpu * self.wall_factor,
            wall_read=hits * self.read * self.wall_factor,
            wall_batch=cpu * N * self.wall_factor,
            starved_seconds=starved * delivered,
            writes=written,
        )


def run_decisions(
    machine: Machine, control: ReuseControl, epochs: int, noise: float = 0.0, seed: int = 0
) -> list[Decision]:
    """Auto's decisions for epochs 1..epochs-1 on ``machine`` (epoch 0 computes all)."""
    rng = random.Random(seed)
    state = ControlState()
    r, decisions = 1, []
    for epoch in range(epochs - 1):
        factor = 1.0 + rng.uniform(-noise, noise)
        measured = machine.run(epoch, r, factor)
        decision, state = decide(control, state, [measured], epoch + 1)
        r = decision.reuse_factor
        decisions.append(decision)
    return decisions


def run_auto(
    machine: Machine, control: ReuseControl, epochs: int, noise: float = 0.0, seed: int = 0
) -> list[int]:
    """The r of epochs 1..epochs-1 that auto chooses on ``machine`` (epoch 0 computes all)."""
    return [d.reuse_factor for d in run_decisions(machine, control, epochs, noise, seed)]


MEASURED = ("a lower r was as fast", "the consumer waited, but a higher r was no faster")
"""How moves that measurements made (not predictions: no back-off) are logged."""


def assert_probes_back_off(decisions: list[Decision]) -> None:
    """The first move down after a move up waits 2, 4, 8, ... (up to 64) epochs after it.

    Moves down are predictions with room to spare or probes of one below (which may follow one
    another); a probe that made the consumer wait goes back up, and the next probe must wait
    twice as long as the last. A move down that measured epochs made (to an r measured as fast
    as the current one, or after a higher r was measured no faster) does not wait.
    """
    chosen = [d.reuse_factor for d in decisions]
    last_up, wait = None, 2
    for i in range(1, len(chosen)):
        if chosen[i] > chosen[i - 1]:
            last_up = i
        elif chosen[i] < chosen[i - 1] and last_up is not None:
            if decisions[i].reason.startswith(MEASURED):
                continue
            assert i - last_up >= wait, chosen
            wait, last_up = min(64, wait * 2), None


costs = st.floats(1e-4, 5e-3)
machines = st.builds(
    Machine,
    miss=st.floats(1e-3, 2e-2),
    read=st.floats(1e-5, 5e-4),
    common=st.floats(1e-5, 2e-3),
    overhead=st.floats(0.0, 1e-3),
    workers=st.integers(0, 4),
    cores=st.sampled_from([1.0, 2.0, 4.0]),
    step=st.one_of(st.just(0.0), st.floats(1e-5, 2e-2)),
    wall_factor=st.sampled_from([0.0, 1.0, 1.7, 3.0]),
)
controls = st.builds(ReuseControl, max_reuse_factor=st.integers(1, 8))


def test_a_slow_consumer_gets_r_1_at_the_first_choice() -> None:
    # 50 ms per batch of 10 against about 1 ms of production per sample on 2 workers.
    machine = Machine(1e-3, 1e-4, 1e-4, 2e-4, workers=2, cores=2.0, step=5e-3)
    assert run_auto(machine, ReuseControl(), 6) == [1] * 5


def test_a_consumer_that_takes_no_time_gets_a_large_r_when_the_partial_part_is_expensive() -> None:
    machine = Machine(1e-2, 1e-4, 5e-4, 2e-4, workers=2, cores=2.0, step=0.0)
    chosen = run_auto(machine, ReuseControl(max_reuse_factor=4), 6)
    assert chosen[0] > 1 and chosen[-1] == 4


def test_a_step_between_the_rates_of_r_1_and_r_2_gets_r_2() -> None:
    machine = Machine(4e-3, 1e-4, 2e-4, 0.0, workers=2, cores=2.0, step=0.0)
    p1, p2 = machine.model().production_seconds(1), machine.model().production_seconds(2)
    step = dataclasses.replace(machine, step=(p1 + p2 * 1.2) / 2)  # r = 2 keeps up with margin
    # The first choice tries r = 1 (predicted 17% slower: inside the first probe's 50%), which
    # makes the consumer wait, for two epochs (the first lost less than 25%: it may have been
    # slowed); r goes to 2 and, 17% being outside the usual band, stays.
    assert run_auto(step, ReuseControl(), 12) == [1, 1] + [2] * 9
    # Without probes the first choice is the prediction's.
    assert run_auto(step, ReuseControl(probe=False), 12) == [2] * 11


def test_a_first_trial_of_r_1_that_fails_goes_to_the_warm_prediction() -> None:
    # r = 1 is predicted 44% slower than the fastest r (inside the first probe's 50%), and
    # r = 3 only just keeps up: after the trial r goes where epoch 1's warm measurement says,
    # not one above the trial.
    machine = Machine(1.5e-3, 1e-4, 1.2e-3, 0.0, workers=2, cores=2.0, step=0.0)
    step = dataclasses.replace(machine, step=machine.model().production_seconds(3) * 1.05)
    decisions = run_decisions(step, ReuseControl(), 10)
    assert [d.reuse_factor for d in decisions][:2] == [1, 4], decisions
    assert "trying r=1" in decisions[0].reason and "consumer waited" in decisions[1].reason
    # Predicted more than 50% slower than the fastest: no trial.
    far = dataclasses.replace(machine, step=0.0)
    assert run_auto(far, ReuseControl(), 3)[0] == 4


@settings(max_examples=200, deadline=None)
@given(machine=machines, control=controls)
@example(  # r = 3 only just out-produces the consumer: the margin kept auto at r = 2, 8% slower
    machine=Machine(
        miss=0.001,
        read=0.0003627309904505694,
        common=0.0003627309904505694,
        overhead=0.0001535046400925827,
        workers=3,
        cores=1.0,
        step=0.0003627309904505694,
        wall_factor=1.0,
    ),
    control=ReuseControl(max_reuse_factor=3),
)
def test_auto_settles_between_what_keeps_up_and_what_keeps_up_with_room(
    machine: Machine, control: ReuseControl
) -> None:
    decisions = run_decisions(machine, control, 12)
    chosen = [d.reuse_factor for d in decisions]
    bound = control.max_reuse_factor
    assert all(1 <= r <= bound for r in chosen)
    assert_probes_back_off(decisions)
    # Settled after a few epochs, bar the probes: failed ones are single epochs one below.
    steady = [
        chosen[i - 1] if chosen[i - 1] == chosen[i + 1] else chosen[i]
        for i in range(1, len(chosen) - 1)  # the last may be a probe not judged yet
    ]
    assert len(set(steady[3:])) == 1, chosen
    truth = machine.model()
    # At least the smallest r that is (within the tolerance) as fast as the best, measured
    # without any margin; at most what the prediction with margin and hysteresis asks for.
    # Where every epoch waits (serial, or a step taking no time) a wait says nothing, so r goes
    # up only for more than tolerance + hysteresis: a first choice made before any cache read
    # was measured (epoch 0 takes the write's cost) may stay that close below the best.
    banded = machine.workers == 0 or machine.step <= 0
    slack = control.tolerance + (control.hysteresis if banded else 0.0) + 0.01
    low = smallest_sufficient(truth, machine.step, bound, 0.0, slack)
    high = smallest_sufficient(
        truth, machine.step, bound, control.margin + control.hysteresis, control.tolerance
    )
    assert low <= steady[-1] <= max(low, high), (chosen, low, high)


@settings(max_examples=200, deadline=None)
@given(machine=machines, control=controls)
def test_where_r_1_keeps_up_with_room_auto_runs_r_1_from_epoch_1(
    machine: Machine, control: ReuseControl
) -> None:
    produce = machine.model().production_seconds(1)
    roomy = dataclasses.replace(machine, step=produce * 1.5 if machine.workers else 1.0)
    if machine.workers == 0:  # serial: r = 1 is right once reuse saves under the tolerance
        roomy = dataclasses.replace(roomy, step=produce * 100 / control.tolerance)
    assert run_auto(roomy, control, 4) == [1, 1, 1]


@settings(max_examples=150, deadline=None)
@given(machine=machines, control=controls, seed=st.integers(0, 2**16))
@example(  # serial, a consumer taking no time: the margin opens no band (flapped 5/4 before)
    machine=Machine(
        miss=0.001,
        read=0.00015743188548859112,
        common=0.0017750129865281186,
        overhead=0.0,
        workers=0,
        cores=1.0,
        step=0.0,
    ),
    control=ReuseControl(max_reuse_factor=5),
    seed=0,
)
def test_noise_below_the_hysteresis_does_not_make_r_flap(
    machine: Machine, control: ReuseControl, seed: int
) -> None:
    noise = control.hysteresis / 3
    decisions = run_decisions(machine, control, 30, noise=noise, seed=seed)
    chosen = [d.reuse_factor for d in decisions]
    # Back and forth only as probes that back off: at most 2 + log2(30) moves down.
    assert_probes_back_off(decisions)
    downs = sum(b < a for a, b in itertools.pairwise(chosen))
    assert downs <= 6, chosen


def test_r_goes_up_only_after_the_consumer_waited() -> None:
    machine = Machine(4e-3, 1e-4, 2e-4, 0.0, workers=2, cores=2.0, step=1e-3)
    control = ReuseControl()
    measured = machine.run(3, 2)  # r = 2 does not keep up: the consumer waits
    assert measured.wait_share > control.bottleneck_share
    state = ControlState(current=2)
    decision, _ = decide(control, state, [measured], 4)
    assert decision.reuse_factor > 2 and decision.changed and "waited" in decision.reason
    # The same prediction, but the epoch shows no wait (the consumer kept up): r stays.
    kept_up = dataclasses.replace(
        measured, wait_seconds=measured.first_wait_seconds, starved_seconds=0.0
    )
    prior = fit(measured, None, control.bottleneck_share)
    decision, _ = decide(control, ControlState(2, (prior,)), [kept_up], 4)
    assert decision.reuse_factor == 2 and not decision.changed


def test_a_wait_for_batches_already_built_does_not_move_r_up() -> None:
    # r = 1 keeps up (0.55 ms per sample against a 1 ms step), but each batch takes 0.1 ms per
    # sample to reach the consumer: a wait it pays at any r, which reuse cannot shorten.
    machine = Machine(
        1e-3, 1e-4, 1e-4, 0.0, workers=2, cores=2.0, step=1e-3, handoff=1e-4, wall_factor=1.0
    )
    measured = machine.run(1, 1)
    assert measured.wait_share > 0.05 and measured.starved_share == 0.0
    assert measured.worker_busy_share < 0.6
    assert run_auto(machine, ReuseControl(), 6) == [1] * 5
    # The same wait with workers busy all the time counts: it is their hand-off that is slow.
    busy = dataclasses.replace(measured, wall_batch=measured.wall_seconds * 2)
    assert busy.loader_bound(ReuseControl().bottleneck_share)
    # Counted as a wait for the loader (no stamps from the workers), it would have moved r up.
    unstamped = dataclasses.replace(machine.run(0, 1), starved_seconds=None)
    decision, _ = decide(ReuseControl(probe=False), ControlState(), [unstamped], 1)
    assert decision.reuse_factor > 1


def test_busy_workers_count_only_the_hand_off_beyond_what_an_epoch_that_kept_up_paid() -> None:
    # r = 1 and r = 2 deliver alike (0.93 ms per sample: the 0.85 ms step and a 0.08 ms hand-off
    # of built batches); r = 1 keeps its workers busy 92% of the epoch, r = 2 56%. The wait is
    # 8.6% of either epoch, all of it hand-off, which r = 2 pays as well.
    machine = Machine(
        1.8e-3, 1e-4, 1e-4, 0.0, workers=2, cores=2.0, step=0.85e-3, handoff=8e-5, wall_factor=1.0
    )
    at_1, at_2 = machine.run(1, 1), machine.run(1, 2)
    assert at_1.starved_share == at_2.starved_share == 0.0
    assert at_1.wait_share == pytest.approx(at_2.wait_share) and at_1.wait_share > 0.08
    assert at_1.worker_busy_share >= 0.9 > at_2.worker_busy_share
    share = ReuseControl().bottleneck_share
    # Before any epoch kept up, a busy epoch's whole wait counts (GIL-holding transforms, 12c).
    assert at_1.loader_bound(share)
    kept_up = fit(at_2, None, share)
    assert not at_2.loader_bound(share)
    assert kept_up.handoff == pytest.approx(at_2.handoff_per_sample) and kept_up.handoff > 0
    # After r = 2 kept up, only the wait beyond its hand-off counts: r = 1 kept up too.
    assert not at_1.loader_bound(share, kept_up.handoff)
    after = fit(at_1, kept_up, share)
    assert after.handoff == pytest.approx(at_1.handoff_per_sample)
    # So a probe of r = 1 stays (it used to go back to r = 2 and probe again: 1, 2, 2, 1, 2, ...).
    chosen = run_auto(machine, ReuseControl(), 14)
    assert chosen[3:] == [1] * 10, chosen
    # A wait well beyond the hand-off that kept up still counts, and an epoch that set the
    # pace keeps the hand-off measured before it.
    slow = dataclasses.replace(at_1, wait_seconds=at_1.wait_seconds + 0.1 * at_1.wall_seconds)
    assert slow.loader_bound(share, kept_up.handoff)
    assert fit(slow, kept_up, share).handoff == kept_up.handoff


def three_then_two(step_over_p2: float) -> Machine:
    """A machine whose consumer takes ``step_over_p2`` x r = 2's production time per sample."""
    machine = Machine(4e-3, 1e-4, 2e-4, 0.0, workers=2, cores=2.0, step=0.0)
    return dataclasses.replace(machine, step=machine.model().production_seconds(2) * step_over_p2)


def test_a_probe_finds_the_lower_r_that_the_margin_ruled_out() -> None:
    # r = 2 produces 5% faster than the consumer asks: the 10% margin rules it out in advance
    # (r = 3 first), and only trying it shows that it keeps up.
    assert run_auto(three_then_two(1.05), ReuseControl(), 7) == [3, 2, 2, 2, 2, 2]
    # Without probes auto stays where the margin put it.
    assert run_auto(three_then_two(1.05), ReuseControl(probe=False), 7) == [3] * 6


def test_a_probe_that_makes_the_consumer_wait_goes_back_and_backs_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # r = 2 is 5% too slow: each probe costs one epoch. One epoch measured slower may have
    # been slowed by another job, so r = 2 is probed again after the back-off; two keep auto
    # from trying it again until the first expires (EVIDENCE_EPOCHS: 16 epochs after it).
    chosen = run_auto(three_then_two(0.95), ReuseControl(), 24)
    probes = [i for i, r in enumerate(chosen) if r == 2]
    assert set(chosen) == {2, 3} and chosen[0] == 3
    assert probes == [1, 4, 18], chosen
    # Without measurements to go by, the probes come 2, 4, 8 epochs apart.
    monkeypatch.setattr(reuse_evidence, "EVIDENCE_EPOCHS", 0)
    chosen = run_auto(three_then_two(0.95), ReuseControl(), 24)
    probes = [i for i, r in enumerate(chosen) if r == 2]
    assert probes == [1, 4, 9, 18], chosen
    # After each probe, the next epoch is back at 3.
    assert all(chosen[i + 1] == 3 for i in probes if i + 1 < len(chosen))


def test_every_rank_runs_the_r_that_its_slowest_loader_needs() -> None:
    fast = Machine(1e-3, 1e-4, 1e-4, 0.0, workers=2, cores=2.0, step=2e-3)
    slow = dataclasses.replace(fast, miss=1.2e-2)
    control = ReuseControl()
    alone = [run_auto(m, control, 2)[0] for m in (fast, slow)]
    decision, state = decide(control, ControlState(), [fast.run(0, 1), slow.run(0, 1)], 1)
    assert alone[0] == 1 < alone[1] == decision.reuse_factor
    assert len(state.models) == 2 and len(decision.predicted_rates) == 2
    assert "(rank 1)" in decision.reason
    # A rank that measured nothing this time keeps its model and does not block a choice.
    again, _ = decide(control, state, [fast.run(1, alone[1]), None], 2)
    assert 1 <= again.reuse_factor <= alone[1]


def test_an_epoch_too_short_to_measure_keeps_r() -> None:
    machine = Machine(1e-2, 1e-4, 5e-4, 0.0, workers=2, cores=2.0, step=0.0)
    tiny = dataclasses.replace(machine.run(2, 3), batches=1)
    decision, state = decide(ReuseControl(), ControlState(current=3), [tiny], 3)
    assert decision.reuse_factor == 3 and state.current == 3 and "two batches" in decision.reason
    decision, _ = decide(ReuseControl(), ControlState(), [None], 1)
    assert decision.reuse_factor == 1


def test_the_read_cost_is_the_write_cost_until_an_epoch_read_the_cache() -> None:
    machine = Machine(1e-2, 2e-3, 5e-4, 0.0, workers=2, cores=2.0, step=0.0, write_share=0.05)
    control = ReuseControl()
    first = fit(machine.run(0, 1), None, control.bottleneck_share)
    assert not first.read_measured and first.read == pytest.approx(1e-2 * 0.05)
    second = fit(machine.run(1, 3), first, control.bottleneck_share)
    assert second.read_measured and second.read == pytest.approx(2e-3)
    # An epoch with no hits keeps the measured read cost.
    third = fit(machine.run(2, 1), second, control.bottleneck_share)
    assert third.read == pytest.approx(2e-3)


@given(machine=machines)
def test_the_overhead_is_calibrated_when_the_loader_set_the_pace(machine: Machine) -> None:
    control = ReuseControl()
    measured = machine.run(0, 1)
    model = fit(measured, None, control.bottleneck_share)
    if machine.workers == 0 or measured.wait_share >= control.bottleneck_share:
        assert model.overhead == pytest.approx(machine.overhead, rel=1e-6, abs=1e-9)
    else:
        assert model.overhead == 0.0


def test_measurements_come_from_the_loaders_epoch_stats() -> None:
    stats = EpochStats(
        epoch=2,
        samples=30,
        batches=3,
        planned_misses=8,
        unplanned_misses=2,
        hits=20,
        cpu_load=0.1,
        cpu_partial=0.2,
        cpu_cache_write=0.05,
        cpu_cache_read=0.02,
        cpu_final=0.03,
        cpu_collate=0.01,
        wall_seconds=2.0,
        batch_samples=[10, 10, 10],
        reuse_factor=3,
    )
    stats.record_wait(0.5, first=True)
    stats.record_wait(0.25)
    stats.record_step(0.3)
    measured = EpochMeasurement.from_stats(stats, num_workers=2, cores=2.0)
    assert (measured.computed, measured.planned_hits, measured.reuse_factor) == (10, 22, 3)
    assert measured.cpu_miss == pytest.approx(0.35)
    assert measured.first_wait_seconds == 0.5 and measured.wait_seconds == 0.75
    assert measured.wait_share == pytest.approx(0.25 / 1.5)
    assert stats.wait_share == pytest.approx(measured.wait_share)
    assert stats.measured_rate == pytest.approx(20 / 1.5)
    assert measured.step_per_sample == pytest.approx(0.3 / 10)
    assert measured.usable


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_reuse_factor": 0}, ValueError),
        ({"max_reuse_factor": 65536}, ValueError),
        ({"max_reuse_factor": 2.0}, TypeError),
        ({"max_reuse_factor": True}, TypeError),
        ({"margin": -0.1}, ValueError),
        ({"margin": math.nan}, ValueError),
        ({"tolerance": "a"}, TypeError),
    ],
)
def test_settings_are_checked(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        ReuseControl(**kwargs)  # type: ignore[arg-type]


def test_the_first_probe_corrects_a_cold_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    # r = 1 keeps up in steady state (its production takes 0.9 of the step), but epoch 0 ran
    # cold, 25% slower, and its calibration predicts r = 1 15% slower than r = 2: outside the
    # usual probe band (14%), inside the first probe's (50%), so epoch 1 tries r = 1.
    machine = Machine(4e-3, 1e-4, 2e-4, 0.0, workers=2, cores=2.0, step=0.0)
    warm = dataclasses.replace(machine, step=machine.model().production_seconds(1) / 0.9)

    def run() -> list[int]:
        state, r, chosen = ControlState(), 1, []
        for epoch in range(8):
            measured = warm.run(epoch, r, 1.25 if epoch == 0 else 1.0)
            decision, state = decide(ReuseControl(), state, [measured], epoch + 1)
            r = decision.reuse_factor
            chosen.append(r)
        return chosen

    assert run() == [1] * 8
    # With only the usual band, no epoch that keeps up can correct the cold calibration.
    monkeypatch.setattr(reuse_control, "FIRST_PROBE_BAND", 1.0)
    assert run() == [2] * 8


def test_a_loader_slowed_by_other_processes_is_judged_by_its_workers_wall_time() -> None:
    # Other jobs leave the 2 workers a third of their cores: wall = 3 x CPU. A step that r = 2
    # keeps up with (by wall time) must get r = 2, though the CPU times alone say r = 1.
    machine = Machine(4e-3, 1e-4, 2e-4, 1e-4, workers=2, cores=2.0, step=0.0, wall_factor=3.0)
    p1, p2 = machine.model().production_seconds(1), machine.model().production_seconds(2)
    busy = dataclasses.replace(machine, step=p2 * 1.3)
    assert busy.step < p1  # r = 1 does not keep up
    assert run_auto(busy, ReuseControl(), 6) == [1, 1, 2, 2, 2]  # a first trial, then r = 2
    measured = busy.run(0, 1)
    assert measured.timed_wall and fit(measured, None, 0.02).capacity == 2.0


def test_r_1_is_predicted_without_cache_writes_and_an_epoch_at_r_1_keeps_the_write_cost() -> None:
    machine = Machine(4e-3, 1e-4, 2e-4, 0.0, workers=2, cores=2.0, step=0.0, write_share=0.25)
    control = ReuseControl()
    first = fit(machine.run(0, 1), None, control.bottleneck_share)  # epoch 0 writes
    assert first.write == pytest.approx(1e-3) and first.miss == pytest.approx(3e-3)
    assert first.cpu(1) == pytest.approx(3e-3 + 2e-4)  # an epoch at r = 1 writes nothing
    assert first.cpu(2) == pytest.approx(0.5 * 4e-3 + 0.5 * 1e-3 + 2e-4)
    at_one = machine.run(1, 1)
    assert at_one.writes == 0 and at_one.cpu_write == 0
    again = fit(at_one, first, control.bottleneck_share)
    assert again.write == pytest.approx(1e-3) and again.miss == pytest.approx(3e-3)


def test_where_r_1_keeps_up_only_without_writes_a_probe_finds_it() -> None:
    # r = 1 produces 5% faster than the consumer asks, but only because it writes nothing;
    # the margin would send the first choice to r = 2, and a probe shows r = 1 is enough.
    machine = Machine(4e-3, 1e-4, 2e-4, 0.0, workers=2, cores=2.0, step=0.0, write_share=0.25)
    step = dataclasses.replace(machine, step=machine.model().production_seconds(1) * 1.05)
    assert run_auto(step, ReuseControl(), 8) == [1] * 7  # the first choice's trial
    chosen = run_auto(step, ReuseControl(probe=False), 8)
    assert chosen[0] == 2, chosen


def test_a_probe_of_r_1_that_makes_the_consumer_wait_costs_one_epoch() -> None:
    # r = 1 is 8% too slow: the first choice's trial of it is two epochs (the first lost less
    # than 25%: it may have been slowed), and later probes one each; r = 2 resumes at once from
    # the entries cached before (an epoch at r = 1 moves no pointer). With both of its recent
    # epochs slower, r = 1 is not probed until they expire (16 epochs); the probe after that
    # is the back-off's (one epoch measured slower may have been slowed by another job).
    machine = Machine(4e-3, 1e-4, 2e-4, 0.0, workers=2, cores=2.0, step=0.0)
    step = dataclasses.replace(machine, step=machine.model().production_seconds(1) / 1.08)
    decisions = run_decisions(step, ReuseControl(), 24)
    chosen = [d.reuse_factor for d in decisions]
    probes = [i for i, r in enumerate(chosen) if r == 1]
    assert set(chosen) == {1, 2} and probes == [0, 1, 17, 22], chosen
    assert_probes_back_off(decisions)


def test_with_few_batches_per_epoch_the_first_batch_counts() -> None:
    # r = 1 keeps up after the first batch, which one worker builds alone at r = 1's cost: with
    # 1000 samples in batches of 100 that wait is several per cent of the epoch more than at
    # a larger r, so auto takes a larger r; with batches of 10 it is r = 1.
    machine = Machine(4e-3, 1e-4, 2e-4, 0.0, workers=2, cores=2.0, step=0.0, batch=100)
    step = dataclasses.replace(machine, step=machine.model().production_seconds(1) * 1.3)
    truth, control = step.model(), ReuseControl()
    times = [truth.epoch_seconds(r, step.step, 0.0) for r in (1, 2, 3, 4)]
    assert times[0] > min(times) * 1.05  # all of it the first batch: r = 1 keeps up after it
    assert truth.production_seconds(1) < step.step
    wanted = smallest_sufficient(truth, step.step, 4, control.margin, control.tolerance)
    decisions = run_decisions(step, control, 12)
    chosen = [d.reuse_factor for d in decisions]
    # It settles above r = 1, where the first batch's extra wait is under the bottleneck share
    # (bar one-epoch probes of one below, which back off).
    settled = chosen[-1]
    assert 1 < settled <= wanted and set(chosen[1:]) <= {settled - 1, settled}, chosen
    limit = min(times) * (1.0 + control.tolerance + control.bottleneck_share)
    assert times[settled - 1] <= limit
    assert_probes_back_off(decisions)
    many = dataclasses.replace(step, batch=10)
    assert run_auto(many, control, 8) == [1] * 7
    # At r = 1 the first batch's wait sends r up, as far as the model explains it: a wait that
    # also covers starting the workers (persistent_workers=False) counts no more than that.
    at_one = step.run(3, 1)
    spawned = dataclasses.replace(
        at_one,
        first_wait_seconds=at_one.first_wait_seconds + 2.0,
        wait_seconds=at_one.wait_seconds + 2.0,
        wall_seconds=at_one.wall_seconds + 2.0,
    )
    for measured in (at_one, spawned):
        decision, _ = decide(control, ControlState(current=1), [measured], 4)
        assert decision.reuse_factor > 1 and "first batch" in decision.reason


def test_an_epoch_started_ahead_does_not_wait_for_its_first_batch() -> None:
    # With persistent workers the loader starts the next epoch during the last batches of the
    # running one where it can (always after an epoch at r = 1, at r = 1 otherwise): there
    # the first batch is built before the epoch starts, and its wait is no reason to go up.
    machine = Machine(4e-3, 1e-4, 2e-4, 0.0, workers=2, cores=2.0, step=0.0, batch=100)
    step = dataclasses.replace(machine, step=machine.model().production_seconds(1) * 1.3)
    control = ReuseControl()
    at_one = step.run(3, 1)
    waited, _ = decide(control, ControlState(current=1), [at_one], 4)
    assert waited.reuse_factor > 1 and "first batch" in waited.reason
    ahead, state = decide(control, ControlState(current=1), [at_one], 4, started_ahead=range(1, 5))
    assert ahead.reuse_factor == 1 and "first batch" not in ahead.reason
    assert state.models[0] is not None and not state.models[0].started_ahead  # per decision
    model = fit(at_one, None, control.bottleneck_share)
    only_one = dataclasses.replace(model, started_ahead=frozenset({1}))
    assert only_one.epoch_seconds(1, step.step, 0.0) < model.epoch_seconds(1, step.step, 0.0)
    assert only_one.epoch_seconds(2, step.step, 0.0) == model.epoch_seconds(2, step.step, 0.0)


def test_the_first_epoch_after_a_resume_does_not_measure_the_failed_hits() -> None:
    # Found in review: after a resume the memory cache is empty, every planned hit of the first
    # epoch failed, q = 1 made every r look alike, auto chose r = 1, and an epoch at r = 1 has
    # no planned hit to measure q again: the run stayed at r = 1 for good.
    machine = Machine(1e-2, 2e-3, 5e-4, 0.0, workers=2, cores=2.0, step=0.0, write_share=0.05)
    share = ReuseControl().bottleneck_share
    after = machine.run(4, 3)
    cold = dataclasses.replace(
        after, unplanned_misses=after.planned_hits, computed=after.samples, cold=True
    )
    assert fit(dataclasses.replace(cold, cold=False), None, share).failed_hits == 1.0
    model = fit(cold, None, share)
    assert model.failed_hits == 0.0 and not model.read_measured
    assert model.rate(3) > 1.5 * model.rate(1)  # so auto goes on reusing
    policy = ReusePolicy("auto", None, setup=DistributedSetup(), num_workers=2)
    policy.load([3, 3, 3])  # what load_state_dict does
    # A state saved after an epoch's last batch resumes into an epoch of no batches, and an
    # epoch at r = 1 has no planned hit: neither is the cold epoch, the first one with hits is.
    empty = EpochStats(epoch=3, batch_samples=[])
    no_hits = EpochStats(epoch=3, samples=30, batches=3, batch_samples=[10] * 3)
    hits = EpochStats(epoch=3, samples=30, batches=3, hits=20, batch_samples=[10] * 3)
    colds = [policy._measure(stats, 4) for stats in (empty, no_hits, hits, hits)]
    assert [m.cold for m in colds if m is not None] == [True, True, True, False]
