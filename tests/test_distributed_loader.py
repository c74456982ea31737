"""RevamperLoader under torch.distributed: real rank processes in a gloo group on this machine.

Each test forks a world of rank processes joined through a ``file://`` rendezvous (no ports to
race for), runs a function on every rank, and gathers what each rank returns (or the error it
raised). Collectives time out after 30 s and the whole world after 60 s, so a hang fails.

Two set-ups: 2 ranks on one machine, and 2 "machines" of 2 ranks simulated with
``local_world_size=2`` in a 4-process group (each simulated machine gets its own cache).
"""

from __future__ import annotations

import dataclasses
import datetime
import multiprocessing as mp
import os
import queue
import random
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch.distributed as dist

from revamper import PlanConfig, RevamperLoader, plan_epoch
from revamper.distributed import DistributedSetupError
from revamper.plan.partition import group_samples
from revamper.store import DiskStore, SharedMemoryStore, TieredStore
from tests.helpers import IndexDataset

pytestmark = pytest.mark.slow

WORLD_TIMEOUT_S = 60.0


@dataclasses.dataclass
class Outcome:
    """What one rank returned, or the error it raised."""

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
    dist.destroy_process_group()


def run_world(fn: Callable[..., Any], world: int, tmp_path: Path, *args: Any) -> list[Outcome]:
    """Run ``fn(rank, world, *args)`` on every rank of a fresh gloo world; outcomes by rank."""
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
        for proc in procs:
            proc.join(max(deadline - time.monotonic(), 1.0))
            assert proc.exitcode == 0, f"a rank process exited with {proc.exitcode}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    return [outcomes[rank] for rank in range(world)]


def values(outcomes: list[Outcome]) -> list[Any]:
    """Every rank's value, failing with the first rank's error if any rank raised."""
    for outcome in outcomes:
        assert outcome.error is None, f"rank {outcome.rank} raised: {outcome.error}"
    return [outcome.value for outcome in outcomes]


class Stamp:
    """Partial transform: append the computing rank and a random id of this computation."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, np.array([self.rank, random.getrandbits(62)], dtype=np.int64)])


@dataclasses.dataclass
class RankReport:
    """What a training rank saw: per epoch, its (index, computed_by, id) rows and counts."""

    rank: int
    pid: int
    batches: int
    config: PlanConfig
    store_path: str
    is_owner: bool
    rows: list[list[tuple[int, int, int]]]
    planned_misses: list[int]
    unplanned_misses: list[int]
    hits: list[int]
    entries: list[int]
    bytes_used: list[int]
    shm_dirs: list[str]


def _store_path(store: Any) -> tuple[str, bool]:
    if isinstance(store, TieredStore):
        store = store.memory
    if isinstance(store, SharedMemoryStore):
        return str(store.path), store.is_owner
    assert isinstance(store, DiskStore)
    return str(store.path), False


def train(rank: int, world: int, epochs: int, kwargs: dict[str, Any]) -> RankReport:
    """Build a loader over IndexDataset, run ``epochs`` epochs in step with the other ranks."""
    options = dict(kwargs)
    size = options.pop("size")
    if options.pop("env_local_world_size", None):
        os.environ["LOCAL_WORLD_SIZE"] = str(options.pop("local_world_size"))
    loader = RevamperLoader(
        IndexDataset(size), partial_transform=Stamp(rank), shuffle=True, **options
    )
    path, is_owner = _store_path(loader.store)
    report = RankReport(
        rank,
        os.getpid(),
        len(loader),
        loader.plan_config,
        path,
        is_owner,
        [],
        [],
        [],
        [],
        [],
        [],
        [],
    )
    for epoch in range(epochs):
        rows = []
        for data, target in loader:
            for row, label in zip(data.tolist(), target.tolist(), strict=True):
                assert row[0] == label, "served another sample's data"
                rows.append((row[0], row[1], row[2]))
        stats = loader.stats[epoch]
        dist.barrier()  # what DDP's gradient all-reduce does: ranks stay within an epoch
        store = loader.store.stats() if loader.store is not None else None
        report.rows.append(rows)
        report.planned_misses.append(stats.planned_misses)
        report.unplanned_misses.append(stats.unplanned_misses)
        report.hits.append(stats.hits)
        report.entries.append(store.entries if store else 0)
        report.bytes_used.append(store.bytes_used if store else 0)
        dist.barrier()  # nobody writes the next epoch's entries before everyone has counted
    report.shm_dirs = sorted(n for n in os.listdir("/dev/shm") if n.startswith("revamper-"))
    dist.barrier()  # every rank is done reading before the owners close
    loader.close()
    return report


def check_epochs(reports: list[RankReport], size: int, reuse_factor: int) -> int:
    """Check coverage, misses per cache group and entry freshness; return cross-rank hits."""
    group_size = reports[0].config.group_size
    groups = [reports[g : g + group_size] for g in range(0, len(reports), group_size)]
    assert len({r.batches for r in reports}) == 1, "ranks run different numbers of batches"
    latest: dict[int, set[tuple[int, int]]] = {}  # index -> stamps of its latest computation
    cross_rank_hits = 0
    for epoch in range(len(reports[0].rows)):
        counts = np.zeros(size, dtype=np.int64)
        computed: dict[int, set[tuple[int, int]]] = {}
        for report in reports:
            plan = plan_epoch(report.config, epoch)
            assert [row[0] for row in report.rows[epoch]] == plan.indices.tolist()
            np.add.at(counts, plan.indices, 1)
            assert report.unplanned_misses[epoch] == 0
            for (index, by, stamp), miss in zip(
                report.rows[epoch], plan.planned_miss.tolist(), strict=True
            ):
                if miss:
                    assert (by, stamp) not in latest.get(index, set()), "a miss served a hit"
                    assert by == report.rank, "a planned miss was not computed by its rank"
                    computed.setdefault(index, set()).add((by, stamp))
                else:
                    assert (by, stamp) in latest[index], f"stale entry for sample {index}"
                    assert by // group_size == report.rank // group_size, "another group's entry"
                    cross_rank_hits += by != report.rank
        # Coverage: exactly once across ranks, or at least once with a few repeats (padding),
        # or at most once with drop_last.
        total = sum(r.config.num_used for r in reports)
        assert counts.sum() == total
        if reports[0].config.drop_last:
            assert counts.max() == 1
        else:
            assert counts.min() >= 1 and total - size == int((counts - 1).sum())
        latest.update(computed)
        for number, group in enumerate(groups):
            config = group[0].config
            part = group_samples(size, config.num_groups, number, config.seed, config.shuffle)
            misses = sum(r.planned_misses[epoch] for r in group)
            extra = sum(r.config.num_used for r in group) - part.size  # repeats, or drops if < 0
            if epoch == 0:
                assert misses == part.size + extra
            else:
                assert abs(misses - part.size / reuse_factor) <= group_size + abs(extra)
            # One cache's worth of memory per group: at most one entry per sample of its part.
            assert len({r.entries[epoch] for r in group}) == 1
            assert 0 < group[0].entries[epoch] <= part.size
    return cross_rank_hits


def assert_released(reports: list[RankReport]) -> None:
    for report in reports:
        assert not Path(report.store_path).exists() or not report.store_path.startswith(
            "/dev/shm"
        ), f"{report.store_path} leaked"


def test_two_ranks_of_one_machine_share_one_cache(tmp_path: Path) -> None:
    size, r, epochs = 60, 3, 4
    kwargs = {
        "size": size,
        "batch_size": 4,
        "reuse_factor": r,
        "seed": 7,
        "num_workers": 1,
        "local_world_size": 2,
        "env_local_world_size": True,  # detected from torchrun's variable
    }
    reports: list[RankReport] = values(run_world(train, 2, tmp_path, epochs, kwargs))
    leader, member = reports
    assert leader.store_path == member.store_path and leader.is_owner and not member.is_owner
    assert leader.config.group_size == 2 and leader.batches == 8  # 30 samples per rank
    made = [n for n in leader.shm_dirs for r in reports if n.startswith(f"revamper-{r.pid}-")]
    assert made == [Path(leader.store_path).name]  # the machine's only cache directory
    cross = check_epochs(reports, size, r)
    assert cross > 10, "no rank served entries that the other rank computed"
    # Steady state: both ranks together hold about one entry per sample, once.
    assert leader.entries[-1] >= size * (r - 1) // r
    assert leader.bytes_used[-1] == member.bytes_used[-1]
    assert_released(reports)


def test_two_machines_of_two_ranks_each_get_their_own_cache(tmp_path: Path) -> None:
    size, r, epochs = 101, 3, 4  # 26 samples per rank: each machine repeats a few
    kwargs = {
        "size": size,
        "batch_size": 5,
        "reuse_factor": r,
        "seed": 3,
        "num_workers": 0,
        "local_world_size": 2,
    }
    reports: list[RankReport] = values(run_world(train, 4, tmp_path, epochs, kwargs))
    paths = [report.store_path for report in reports]
    assert paths[0] == paths[1] != paths[2] == paths[3]
    made = {n for n in reports[0].shm_dirs for r in reports if n.startswith(f"revamper-{r.pid}-")}
    assert made == {Path(paths[0]).name, Path(paths[2]).name}  # one directory per machine
    assert [report.is_owner for report in reports] == [True, False, True, False]
    assert {report.batches for report in reports} == {6}
    owned = [{row[0] for report in reports[g : g + 2] for row in report.rows[0]} for g in (0, 2)]
    assert not owned[0] & owned[1] and len(owned[0] | owned[1]) == size
    assert check_epochs(reports, size, r) > 0
    assert_released(reports)


def test_private_caches_per_rank(tmp_path: Path) -> None:
    size, r = 43, 2  # with drop_last: 21 samples per rank, minus a last partial batch of 1
    kwargs = {
        "size": size,
        "batch_size": 4,
        "drop_last": True,
        "reuse_factor": r,
        "seed": 5,
        "cache_scope": "rank",
        "local_world_size": 2,
    }
    reports: list[RankReport] = values(run_world(train, 2, tmp_path, 3, kwargs))
    assert reports[0].store_path != reports[1].store_path
    made = {n for n in reports[0].shm_dirs for r in reports if n.startswith(f"revamper-{r.pid}-")}
    assert made == {Path(r.store_path).name for r in reports}  # one directory per rank
    assert all(report.is_owner for report in reports)
    assert reports[0].config.group_size == 1 and {r.batches for r in reports} == {5}
    assert check_epochs(reports, size, r) == 0  # a rank only ever reads its own entries
    assert_released(reports)


def test_disk_and_tiered_caches_are_shared_per_machine(tmp_path: Path) -> None:
    size, r = 40, 2
    for cache_bytes in (None, 600):  # disk only; a small RAM tier in front of the disk
        cache_dir = tmp_path / f"cache-{cache_bytes}"
        cache_dir.mkdir()
        kwargs = {
            "size": size,
            "batch_size": 4,
            "reuse_factor": r,
            "seed": 9,
            "local_world_size": 2,
            "cache": "disk",
            "cache_dir": str(cache_dir),
            "cache_bytes": cache_bytes,
        }
        reports: list[RankReport] = values(run_world(train, 2, tmp_path, 3, kwargs))
        assert reports[0].store_path == reports[1].store_path
        assert check_epochs(reports, size, r) > 0
        assert_released(reports)
        assert (cache_dir / "revamper-cache.json").exists()


def mismatches(rank: int, world: int) -> list[tuple[str, str, str]]:
    """Build loaders whose arguments differ on one rank; report what each attempt raised."""
    base: dict[str, Any] = {"batch_size": 2, "reuse_factor": 2, "seed": 1, "local_world_size": 2}
    odd = rank == world - 1
    attempts: list[tuple[str, int, dict[str, Any]]] = [
        ("seed", 10, {**base, "seed": 2 if odd else 1}),
        ("num_samples", 11 if odd else 10, base),
        ("reuse_factor", 10, {**base, "reuse_factor": 3 if odd else 2}),
        ("batch_size", 10, {**base, "batch_size": 4 if odd else 2}),
        ("cache_scope", 10, {**base, "cache_scope": "rank" if odd else "machine"}),
        ("cache_bytes", 10, {**base, "cache_bytes": 10**6 if odd else None}),
        ("create", 10, {**base, "cache": "disk", "cache_dir": "/nonexistent/revamper-test"}),
    ]
    results = []
    for name, size, kwargs in attempts:
        try:
            RevamperLoader(IndexDataset(size), **kwargs).close()
        except DistributedSetupError as exc:
            results.append((name, type(exc).__name__, str(exc)))
        else:
            results.append((name, "none", ""))
    # Another rank "on another machine" than its cache group's leader.
    import revamper.distributed.agreement as agreement

    if odd:
        agreement.socket.gethostname = lambda: "elsewhere"  # type: ignore[attr-defined]
    try:
        RevamperLoader(IndexDataset(10), **base).close()
    except DistributedSetupError as exc:
        results.append(("host", type(exc).__name__, str(exc)))
    # With seed=None everywhere, every rank takes rank 0's seed (their torch RNGs differ here),
    # so both report the same seed.
    import torch

    torch.manual_seed(100 + rank)
    with RevamperLoader(IndexDataset(10), 2, local_world_size=2, cache_scope="rank") as loader:
        results.append(("seed-none", "none", str(loader.seed)))
    return results


def test_ranks_that_disagree_all_raise_naming_the_field(tmp_path: Path) -> None:
    reports: list[list[tuple[str, str, str]]] = values(run_world(mismatches, 2, tmp_path))
    assert reports[0] == reports[1]  # every rank raises the same error
    for rank_results in reports:
        by_name = {name: (kind, message) for name, kind, message in rank_results}
        for field in ("seed", "num_samples", "reuse_factor", "batch_size", "cache_scope"):
            kind, message = by_name[field]
            assert kind == "DistributedSetupError", field
            assert f"all ranks must agree on {field}" in message
            assert "rank 0 has" in message and "rank 1 has" in message
        kind, message = by_name["cache_bytes"]
        assert kind == "DistributedSetupError" and "ranks 0-1" in message
        kind, message = by_name["create"]
        assert "rank 0 failed to create the shared cache" in message and "does not exist" in message
        kind, message = by_name["host"]
        assert "run on different machines" in message and "'elsewhere'" in message


def _from_pipeline_on_rank(rank: int, world: int) -> tuple[int, int, int]:
    import time as clock

    def slow_step(x: np.ndarray) -> np.ndarray:
        end = clock.thread_time() + 0.001
        while clock.thread_time() < end:
            pass
        return x

    def final_step(x: np.ndarray) -> np.ndarray:
        # Rank 1's final part is random, rank 0's is not: measured alone, rank 0 would cache
        # the whole pipeline and rank 1 only its first step, and the ranks would disagree.
        if rank == 1:
            return x + np.random.randint(0, 1000, x.shape)
        return x + 0

    # The ranks' final_step closures differ (rank), so their identities differ too: the same
    # cache_key tells the handshake that the ranks mean the same partial transform.
    loader = RevamperLoader.from_pipeline(
        IndexDataset(64),
        [slow_step, final_step],
        batch_size=8,
        seed=4,
        cache_scope="rank",
        cache_key="slow-then-final",
    )
    with loader:
        return loader.plan_config.reuse_factor, len(loader), len(list(loader))


def test_from_pipeline_chooses_once_for_all_ranks(tmp_path: Path) -> None:
    first, second = values(run_world(_from_pipeline_on_rank, 2, tmp_path))
    assert first == second  # one choice, made on rank 0, so the ranks agree
    assert first[1] == first[2] == 4
