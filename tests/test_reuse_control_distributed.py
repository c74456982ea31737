"""The epoch-boundary exchange of ``reuse_factor="auto"`` between real gloo rank processes.

Each test forks a world of ranks joined through a ``file://`` rendezvous, runs a function on
every rank and gathers what each returned or raised. The whole world must finish within
``WORLD_TIMEOUT_S``, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import dataclasses
import datetime
import multiprocessing as mp
import os
import queue
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch.distributed as dist

from revamper import RevamperLoader
from revamper.distributed import DistributedSetup, EpochExchange, EpochExchangeError
from revamper.loader.reuse_control import ControlState, ReuseControl, decide
from tests.helpers import IndexDataset, stamp_computation
from tests.test_reuse_control import Machine

pytestmark = pytest.mark.slow

WORLD_TIMEOUT_S = 60.0
EXCHANGE_TIMEOUT = datetime.timedelta(seconds=5)


@dataclasses.dataclass
class Outcome:
    rank: int
    value: Any = None
    error: str | None = None
    error_type: str | None = None


def _rank_main(
    fn: Callable[..., Any], rank: int, world: int, init: str, out: Any, args: tuple[Any, ...]
) -> None:
    for name in ("LOCAL_WORLD_SIZE", "LOCAL_RANK", "WORLD_SIZE", "RANK"):
        os.environ.pop(name, None)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=30),
    )
    try:
        outcome = Outcome(rank, value=fn(rank, world, *args))
    except BaseException as exc:
        outcome = Outcome(rank, error=f"{exc}\n{traceback.format_exc()}")
        outcome.error_type = type(exc).__name__
    out.put(outcome)
    if outcome.value != "leave":
        dist.destroy_process_group()


def run_world(fn: Callable[..., Any], world: int, tmp_path: Path, *args: Any) -> list[Outcome]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    init = tmp_path / f"rendezvous-{uuid.uuid4().hex}"
    procs = [
        ctx.Process(target=_rank_main, args=(fn, rank, world, str(init), out, args))
        for rank in range(world)
    ]
    for proc in procs:
        proc.start()
    outcomes: dict[int, Outcome] = {}
    deadline = time.monotonic() + WORLD_TIMEOUT_S
    try:
        while len(outcomes) < world:
            try:
                outcome = out.get(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                pytest.fail(f"ranks {sorted(set(range(world)) - set(outcomes))} hung")
            outcomes[outcome.rank] = outcome
    finally:
        for proc in procs:
            proc.join(max(deadline - time.monotonic(), 1.0))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    return [outcomes[rank] for rank in range(world)]


def _setup(rank: int, world: int) -> DistributedSetup:
    return DistributedSetup(rank, world, 1, "rank", True)


MACHINES = [
    Machine(1e-3, 1e-4, 1e-4, 0.0, workers=2, cores=2.0, step=2e-3),  # keeps up at r = 1
    Machine(1.2e-2, 1e-4, 1e-4, 0.0, workers=2, cores=2.0, step=2e-3),  # needs reuse
    Machine(2e-3, 1e-4, 1e-4, 0.0, workers=2, cores=2.0, step=2e-3),
]


def _choose_three_epochs(rank: int, world: int) -> list[tuple[int, str]]:
    exchange = EpochExchange(_setup(rank, world), EXCHANGE_TIMEOUT)
    assert exchange.communicates
    control, state, r, chosen = ReuseControl(), ControlState(), 1, []
    for epoch in range(3):
        mine = MACHINES[rank].run(epoch, r)
        everyone = exchange.gather(mine, epoch + 1)
        decision, state = decide(control, state, everyone, epoch + 1)
        r = decision.reuse_factor
        chosen.append((r, decision.reason))
    return chosen


def test_every_rank_makes_the_same_choice_from_all_ranks_measurements(tmp_path: Path) -> None:
    outcomes = run_world(_choose_three_epochs, 3, tmp_path)
    for outcome in outcomes:
        assert outcome.error is None, outcome.error
    choices = [outcome.value for outcome in outcomes]
    assert choices[0] == choices[1] == choices[2]
    alone = decide(ReuseControl(), ControlState(), [MACHINES[1].run(0, 1)], 1)[0]
    assert choices[0][0][0] == alone.reuse_factor > 1  # the slowest rank's need
    assert "(rank 1)" in choices[0][0][1]


def _one_rank_leaves(rank: int, world: int) -> Any:
    exchange = EpochExchange(_setup(rank, world), EXCHANGE_TIMEOUT)
    # Rank 1 leaves only once every rank has made the exchange's group: leaving while rank 0
    # still connects to it fails the group's creation ("Connection closed by peer"), which is
    # not what this test is about (it made the test flaky).
    dist.barrier()
    if rank == 1:
        return "leave"  # as a rank that crashed or stopped iterating: it never arrives
    return exchange.gather(MACHINES[rank].run(0, 1), 1)


def test_a_rank_that_never_arrives_is_an_error_on_the_others_not_a_hang(tmp_path: Path) -> None:
    outcomes = run_world(_one_rank_leaves, 2, tmp_path)
    assert outcomes[1].value == "leave"
    assert outcomes[0].error_type == "EpochExchangeError", outcomes[0].error
    assert "before epoch 1" in str(outcomes[0].error)
    assert "Every rank must iterate the same epochs" in str(outcomes[0].error)


def _one_rank_is_late(rank: int, world: int) -> Any:
    exchange = EpochExchange(_setup(rank, world), EXCHANGE_TIMEOUT)
    if rank == 1:  # alive, but busy elsewhere for longer than the timeout
        time.sleep(EXCHANGE_TIMEOUT.total_seconds() + 3)
        return "leave"
    return exchange.gather(MACHINES[rank].run(0, 1), 1)


def test_a_rank_that_is_alive_but_never_comes_times_out_the_others(tmp_path: Path) -> None:
    outcomes = run_world(_one_rank_is_late, 2, tmp_path)
    assert outcomes[0].error_type == "EpochExchangeError", outcomes[0].error
    assert "waited at most 0:00:05" in str(outcomes[0].error)


def _one_rank_fails_to_measure(rank: int, world: int) -> Any:
    exchange = EpochExchange(_setup(rank, world), EXCHANGE_TIMEOUT)
    error = "ValueError: broken timer" if rank == 1 else None
    return exchange.gather(None if error else MACHINES[rank].run(0, 1), 1, error=error)


def test_a_rank_that_failed_makes_every_rank_raise_the_same_error(tmp_path: Path) -> None:
    outcomes = run_world(_one_rank_fails_to_measure, 2, tmp_path)
    for outcome in outcomes:
        assert outcome.error_type == "EpochExchangeError", outcome.error
        assert "rank 1 failed to measure" in str(outcome.error)
        assert "broken timer" in str(outcome.error)


def _ranks_at_other_epochs(rank: int, world: int) -> Any:
    exchange = EpochExchange(_setup(rank, world), EXCHANGE_TIMEOUT)
    try:
        exchange.gather(MACHINES[rank].run(0, 1), 1 + rank)
    except EpochExchangeError as exc:
        return (str(exc), exc.epoch)
    return None


def test_ranks_at_different_epochs_are_told_so(tmp_path: Path) -> None:
    outcomes = run_world(_ranks_at_other_epochs, 2, tmp_path)
    for rank, outcome in enumerate(outcomes):
        assert outcome.error is None, outcome.error
        message, epoch = outcome.value
        assert "rank 0 at epoch 1, rank 1 at epoch 2" in message and epoch == 1 + rank


def test_without_other_ranks_the_exchange_is_this_ranks_value() -> None:
    exchange = EpochExchange(DistributedSetup())
    assert not exchange.communicates and exchange.gather("mine", 4) == ["mine"]
    with pytest.raises(EpochExchangeError, match="broken"):
        exchange.gather(None, 4, error="broken")


def _auto_loader(rank: int) -> RevamperLoader:
    return RevamperLoader(
        IndexDataset(64),
        batch_size=4,
        shuffle=True,
        partial_transform=stamp_computation,
        reuse_factor="auto",
        max_reuse_factor=3,
        cache_scope="rank",
        seed=0,
    )


def _train_auto(rank: int, world: int) -> tuple[tuple[int, ...], list[int]]:
    with _auto_loader(rank) as loader:
        for _ in range(4):
            for _batch in loader:
                if rank == 1:
                    time.sleep(0.002)  # the ranks measure different steps
        return loader.reuse_schedule, [s.reuse_factor for s in loader.stats]


def test_every_rank_of_an_auto_loader_runs_the_same_r(tmp_path: Path) -> None:
    outcomes = run_world(_train_auto, 2, tmp_path)
    for outcome in outcomes:
        assert outcome.error is None, outcome.error
    (schedule0, ran0), (schedule1, ran1) = (o.value for o in outcomes)
    assert schedule0 == schedule1 and len(schedule0) == 3 and ran0 == ran1


def _stop_early(rank: int, world: int) -> Any:
    with _auto_loader(rank) as loader:
        for _ in range(2 if rank == 1 else 3):
            for _batch in loader:
                pass
    return "leave" if rank == 1 else None


def test_a_rank_that_stops_iterating_is_an_error_on_the_others(tmp_path: Path) -> None:
    outcomes = run_world(_stop_early, 2, tmp_path)
    assert outcomes[1].value == "leave"
    assert outcomes[0].error_type == "EpochExchangeError", outcomes[0].error
    assert "before epoch 2" in str(outcomes[0].error)
