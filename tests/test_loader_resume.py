"""Mid-epoch resume (state_dict / load_state_dict) and the disk cache through the loader."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from revamper import RevamperLoader, plan_epoch
from revamper.distributed import DistributedSetup
from revamper.loader.store_setup import cache_fingerprint, persisted_seed
from revamper.plan import reads_left
from revamper.store import DiskStore, TieredStore
from revamper.store.manifest import manifest_for, write_manifest
from tests.helpers import IndexDataset, stamp_computation

N, B, R = 40, 4, 3


def make(tmp: Path | None = None, **kwargs: Any) -> RevamperLoader:
    if tmp is not None:
        kwargs.setdefault("cache", "disk")
        kwargs.setdefault("cache_dir", tmp)
    return RevamperLoader(
        IndexDataset(N),
        batch_size=B,
        shuffle=True,
        partial_transform=stamp_computation,
        reuse_factor=R,
        **{"seed": 5, **kwargs},
    )


def batches(iterator: Any, limit: int | None = None) -> list[list[int]]:
    out = []
    for data, _ in iterator:
        out.append(data[:, 0].tolist())
        if limit is not None and len(out) == limit:
            break
    return out


def reference(epochs: int) -> list[list[list[int]]]:
    with make() as loader:
        return [batches(loader) for _ in range(epochs)]


@pytest.mark.parametrize("stop", [0, 4, 9, 10])  # start, middle, last batch, end of epoch 2
@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_resume_yields_exactly_the_remaining_batches(tmp_path: Path, stop: int, cache: str) -> None:
    expected = reference(4)
    disk = tmp_path if cache == "disk" else None
    with make(disk) as first:
        for _ in range(2):
            batches(first)
        iterator = iter(first)
        done = batches(iterator, stop) if stop else []
        state = first.state_dict()
        del iterator
    assert done == expected[2][:stop]
    # After an epoch's last batch the state says so (that epoch, all its batches done), as
    # torchdata's does; an iterator that has not started (stop 0) changes nothing.
    epoch, batch = (1, 10) if stop == 0 else (2, stop)
    assert (state["epoch"], state["batch"]) == (epoch, batch)
    with make(disk) as second:
        second.load_state_dict(state)
        rest = [batches(second) for _ in range(epoch, 4)]
        assert rest == [expected[epoch][batch:], *expected[epoch + 1 : 4]]
        resumed = second.stats[epoch]
        assert resumed.first_batch == batch and resumed.complete
        plan = plan_epoch(second.plan_config, epoch)
        lo = int(plan.batch_bounds[batch])
        assert resumed.planned_misses + resumed.unplanned_misses >= int(
            plan.planned_miss[lo:].sum()
        )
        unplanned = sum(s.unplanned_misses for s in second.stats)
        if cache == "disk":
            assert unplanned == 0  # the disk cache survived the restart
        else:
            assert unplanned > 0


def test_memory_resume_recomputes_each_lost_entry_once() -> None:
    with make() as first:
        for _ in range(2):
            batches(first)
        iterator = iter(first)
        batches(iterator, 5)
        state = first.state_dict()
        del iterator
    with make() as second:
        second.load_state_dict(state)
        for _ in range(1 + R):
            batches(second)
        config = second.plan_config
        # A sample is lost if the plan expects to read its entry before recomputing it: it is
        # recomputed (unplanned) at its first read, then served from the cache again.
        lost = set()
        for epoch in range(2, 3 + R):
            plan = plan_epoch(config, epoch)
            lo = int(plan.batch_bounds[5]) if epoch == 2 else 0
            ids, miss = plan.indices[lo:], plan.planned_miss[lo:]
            for index, is_miss in zip(ids.tolist(), miss.tolist(), strict=True):
                if is_miss:
                    lost.add(("done", index))
                elif ("done", index) not in lost:
                    lost.add(("lost", index))
        expected = sum(1 for kind, _ in lost if kind == "lost")
        assert sum(s.unplanned_misses for s in second.stats) == expected
        assert second.stats[2 + R].unplanned_misses == 0


def test_state_between_epochs_and_after_set_epoch() -> None:
    with make() as loader:
        assert loader.state_dict()["epoch"] == 0 and loader.state_dict()["batch"] == 0
        batches(loader)
        assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (0, 10)
        iter(loader)  # an iterator that has not started changes nothing
        assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (0, 10)
        loader.set_epoch(1)
        assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (1, 0)
        loader.set_epoch(7)
        assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (7, 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 6}, "seed"),
        ({"balance_misses": False}, "balance_misses"),
        ({"batch_size": 5}, "batch_size"),
        ({"version": 99}, "not a RevamperLoader state"),
        ({"batch": 11}, "state\\['batch'\\]"),
        ({"epoch": -1}, "state\\['epoch'\\]"),
    ],
)
def test_incompatible_states_are_refused(change: dict[str, Any], message: str) -> None:
    with make() as loader:
        state = {**loader.state_dict(), **change}
        with pytest.raises(ValueError, match=message):
            loader.load_state_dict(state)


def test_set_epoch_keeps_a_resumed_position_in_that_epoch_only() -> None:
    expected = reference(4)
    with make() as first:
        batches(first)
        batches(first)
        batches(iter(first), 4)
        state = first.state_dict()
    with make() as second:
        second.load_state_dict(state)
        second.set_epoch(2)  # what a training loop does at the top of every epoch
        assert batches(second) == expected[2][4:]
        second.set_epoch(3)
        assert batches(second) == expected[3]
    with make() as third:
        third.load_state_dict(state)
        third.set_epoch(3)  # another epoch: the resumed position does not apply
        assert batches(third) == expected[3]


def test_a_loader_without_seed_takes_the_seed_of_the_state() -> None:
    with make(seed=None) as first:
        batches(first)
        batches(iter(first), 3)
        state = first.state_dict()
    with make(seed=state["seed"]) as same:
        batches(same)
        expected = batches(same)[3:]
    with make(seed=None) as second:
        second.load_state_dict(state)
        assert second.seed == state["seed"]
        assert batches(second) == expected


def test_a_loader_that_ran_an_epoch_keeps_its_seed() -> None:
    with make(seed=None, generator=torch.Generator().manual_seed(1)) as first:
        state = first.state_dict()
    with make(seed=None, generator=torch.Generator().manual_seed(2)) as second:
        assert second.seed != state["seed"]
        batches(second)  # its cache now holds its own plan's entries
        with pytest.raises(ValueError, match="seed"):
            second.load_state_dict(state)


def test_a_disk_caches_seed_is_reused_only_for_the_same_rank_layout(tmp_path: Path) -> None:
    fingerprint = cache_fingerprint(
        num_samples=N,
        reuse_factor=R,
        seed=0,
        partial_transform=stamp_computation,
        whole_sample=False,
        cache_key=None,
    )
    single = DistributedSetup()
    write_manifest(tmp_path, manifest_for({**fingerprint, "seed": 9}, N))
    assert persisted_seed(tmp_path, fingerprint, single) == 9
    made_by_ranks = {**fingerprint, "seed": 9, "world_size": 2, "cache_group_size": 2}
    write_manifest(tmp_path, manifest_for({**made_by_ranks, "cache_group": 0}, N))
    assert persisted_seed(tmp_path, fingerprint, single) is None
    assert persisted_seed(tmp_path, {**fingerprint, "reuse_factor": 2}, single) is None


def test_an_older_state_without_balance_misses_loads_into_any_loader() -> None:
    with make(balance_misses=False) as loader:
        state = loader.state_dict()
        del state["balance_misses"]
        loader.load_state_dict(state)


def test_reusing_a_disk_caches_seed_still_draws_from_torchs_rng(tmp_path: Path) -> None:
    seeds, draws = [], []
    for _ in range(2):  # the first run makes the cache, the second reuses its seed
        torch.manual_seed(0)
        with make(tmp_path, seed=None) as loader:
            draws.append(torch.rand(1).item())  # e.g. the model's initialisation
            seeds.append(loader.seed)
            batches(loader)
    assert seeds[0] == seeds[1] and draws[0] == draws[1]


def test_a_disk_cache_without_seed_survives_a_restart(tmp_path: Path) -> None:
    with make(tmp_path, seed=None) as first:
        batches(first)
        batches(iter(first), 3)
        state = first.state_dict()
        seed = first.seed
    with make(tmp_path, seed=None) as second:
        assert second.seed == seed  # the cache's seed, not a new one
        second.load_state_dict(state)
        batches(second)
        batches(second)
        assert sum(s.unplanned_misses for s in second.stats) == 0
    with make(tmp_path, seed=None, cache_key="other") as third:
        assert third.store is not None and third.store.stats().entries == 0  # made for another


def test_a_state_between_epochs_of_zero_batches_keeps_its_epoch() -> None:
    loader = RevamperLoader(IndexDataset(3), batch_size=4, drop_last=True, seed=0)
    assert len(loader) == 0
    loader.set_epoch(1)
    state = loader.state_dict()
    loader.set_epoch(0)
    loader.load_state_dict(state)
    assert loader.epoch == 1
    loader.close()


def test_disk_cache_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs cache_dir"):
        make(cache="disk")
    with pytest.raises(ValueError, match="only with cache='disk'"):
        make(cache="memory", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        make(tmp_path / "missing")
    with make(tmp_path) as loader:
        assert isinstance(loader.store, DiskStore)
    with make(tmp_path, cache_bytes=1000) as loader:
        assert isinstance(loader.store, TieredStore)


def test_the_loader_builds_its_stores_from_the_registry(tmp_path: Path) -> None:
    with make() as memory, make(tmp_path) as disk:
        assert (memory.store.kind, disk.store.kind) == ("memory", "disk")  # type: ignore[union-attr]
        assert not memory.store.persistent and disk.store.persistent  # type: ignore[union-attr]
    with make(tmp_path, cache_bytes=1000) as tiered:  # a disk cache with a RAM budget
        assert tiered.store is not None and tiered.store.kind == "tiered"
    with pytest.raises(ValueError, match=r"cache must be one of .*'tiered'"):
        make(cache="ram")


def test_a_different_partial_transform_invalidates_the_disk_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with make(tmp_path) as loader:
        batches(loader)
    with make(tmp_path) as loader:  # same everything: reused
        loader.set_epoch(1)
        batches(loader)
        assert loader.stats[1].unplanned_misses == 0
    with caplog.at_level(logging.WARNING), make(tmp_path, cache_key="v2") as loader:
        loader.set_epoch(1)
        batches(loader)
        assert loader.stats[1].unplanned_misses > 0
    assert any("partial" in r.getMessage() for r in caplog.records)


def test_tiered_cache_reads_at_most_what_does_not_fit_in_ram(tmp_path: Path) -> None:
    with make(tmp_path, cache_bytes=10**9) as probe:
        batches(probe)
        entry = probe.store.stats().bytes_used // probe.stats[0].cache_writes  # type: ignore[union-attr]
    budget = 10 * entry
    with make(tmp_path, cache_bytes=budget) as loader:
        for _ in range(5):
            batches(loader)
        store = loader.store
        assert isinstance(store, TieredStore)
        ram, disk = store.tier_bytes()
        assert ram <= budget
        for stats in list(loader.stats)[1:]:
            assert stats.unplanned_misses == 0
            assert stats.bytes_read_disk <= 1.05 * disk
            assert stats.bytes_read_memory > 0 and stats.bytes_read_disk > 0


def test_a_tiered_cache_recomputes_once_only_what_its_ram_tier_lost(tmp_path: Path) -> None:
    with make(tmp_path, cache_bytes=10**9) as probe:
        batches(probe)
        entry = probe.store.stats().bytes_used // probe.stats[0].cache_writes  # type: ignore[union-attr]
    with make(tmp_path, cache_bytes=10 * entry) as first:
        for _ in range(2):
            batches(first)
        state = first.state_dict()
        assert isinstance(first.store, TieredStore)
        in_ram = first.store.memory.stats().entries
        assert in_ram > 0
    with make(tmp_path, cache_bytes=10 * entry) as second:
        second.load_state_dict(state)
        for _ in range(R + 1):
            batches(second)
        lost = [s.unplanned_misses for s in second.stats]
        assert 0 < sum(lost) <= in_ram  # each RAM entry at most once; the disk ones survived
        assert lost[-1] == 0


def test_reads_left_matches_what_the_loader_writes() -> None:
    with make() as loader:
        batches(loader)
        plan = plan_epoch(loader.plan_config, 0)
        worth = reads_left(plan.chunks, R, 0) > 0
        assert loader.stats[0].cache_writes == int(np.count_nonzero(worth))
