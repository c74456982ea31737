"""RevamperLoader in one process: the plan is executed exactly, and nothing served is stale."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

from revamper import RevamperLoader, SampleError, echoing_loader, plan_epoch, standard_loader
from tests.helpers import (
    FailAt,
    FailingDataset,
    IndexDataset,
    mutate_in_place,
    stamp_computation,
    to_tensor,
)


def run_epoch(loader: RevamperLoader) -> dict[int, int]:
    """Consume one epoch; return sample index -> computation stamp, checking identities."""
    seen: dict[int, int] = {}
    for data, target in loader:
        for row, label in zip(data.tolist(), target.tolist(), strict=True):
            index, stamp = row[0], row[1]
            assert index == label, "served another sample's data"
            assert index not in seen, "sample served twice in one epoch"
            seen[index] = stamp
    return seen


def stamped_loader(size: int = 50, **kwargs: Any) -> RevamperLoader:
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("shuffle", True)
    kwargs.setdefault("reuse_factor", 3)
    kwargs.setdefault("seed", 0)
    return RevamperLoader(IndexDataset(size), partial_transform=stamp_computation, **kwargs)


def check_stamps(stamps: list[dict[int, int]], loader: RevamperLoader) -> None:
    """A planned hit serves the entry computed at the sample's most recent computation."""
    last: dict[int, int] = {}
    for epoch, seen in enumerate(stamps):
        plan = plan_epoch(loader.plan_config, epoch)
        misses = set(plan.indices[plan.planned_miss].tolist())
        for index, stamp in seen.items():
            if index in misses:
                assert stamp != last.get(index), "a planned miss was served from the cache"
            else:
                assert stamp == last[index], f"epoch {epoch}: sample {index} served stale data"
            last[index] = stamp


def test_every_sample_once_per_epoch_and_stats_follow_the_plan() -> None:
    with stamped_loader(size=50) as loader:
        assert len(loader) == 7
        stamps = [run_epoch(loader) for _ in range(7)]
        for seen in stamps:
            assert sorted(seen) == list(range(50))
        check_stamps(stamps, loader)
        stats = list(loader.stats)
        assert [s.epoch for s in stats] == list(range(7))
        assert stats[0].planned_misses == 50 and stats[0].hits == 0
        # epoch 0 does not write chunk 1, which epoch 1 recomputes before anyone reads it
        assert stats[0].cache_writes == 50 - stats[1].planned_misses
        for s in stats[1:]:
            assert s.planned_misses in (16, 17) and s.unplanned_misses == 0
            assert s.hits == 50 - s.planned_misses
            assert s.samples == 50 and s.batches == 7 and s.complete
            assert s.bytes_cached > 0 and s.cpu_total > 0
            assert s.cache_writes == s.planned_misses and s.cache_reads == s.hits
            assert s.cpu_cache == s.cpu_cache_read + s.cpu_cache_write
            assert s.batch_samples == [8] * 6 + [2]
            assert sum(s.batch_cpu) == pytest.approx(s.cpu_total)
        assert loader.stats.last is stats[-1]
        assert [d["epoch"] for d in loader.stats.as_dicts()] == list(range(7))
        loader.set_epoch(2)  # a re-run epoch replaces its stats and becomes the latest
        run_epoch(loader)
        assert loader.stats.last is loader.stats[2] and len(loader.stats) == 7


def test_steady_state_reuses_every_entry_r_times() -> None:
    with stamped_loader(size=30, reuse_factor=3) as loader:
        stamps = [run_epoch(loader) for _ in range(9)]
    uses: dict[int, int] = {}
    for seen in stamps[3:]:
        for stamp in seen.values():
            uses[stamp] = uses.get(stamp, 0) + 1
    counts = list(uses.values())
    # entries first computed in epochs 3..8: those complete in the window are used r times
    assert max(counts) == 3 and counts.count(3) >= 30


def test_hits_may_be_mutated_in_place_by_the_final_transform() -> None:
    for partial in (None, to_tensor):  # numpy array, then tensor
        loader = RevamperLoader(
            IndexDataset(10),
            batch_size=5,
            partial_transform=partial,
            final_transform=mutate_in_place,
            reuse_factor=4,
            seed=1,
        )
        with loader:
            for _ in range(4):
                for data, target in loader:
                    assert (data[:, 0] == target + 1000).all()
            assert loader.stats[3].hits > 0


def test_break_mid_epoch_gives_unplanned_misses_never_stale_data() -> None:
    with stamped_loader(size=40, batch_size=4, reuse_factor=2) as loader:
        stamps = [run_epoch(loader)]
        iterator = iter(loader)  # epoch 1: abandoned after 3 batches
        for _ in range(3):
            next(iterator)
        assert not loader.stats[1].complete
        del iterator
        later = [run_epoch(loader) for _ in range(3)]  # epochs 2, 3, 4
        unplanned = sum(loader.stats[e].unplanned_misses for e in (2, 3, 4))
        assert unplanned > 0
        assert loader.stats[4].unplanned_misses == 0  # one full cycle later, all is clean again
        last = stamps[0]
        for seen in later:
            assert sorted(seen) == list(range(40))
        # no stale data: whatever was served at epoch 2 as a planned hit and not recomputed
        # must equal epoch 0's computation unless epoch 1 recomputed it
        assert all(isinstance(v, int) for v in last.values())


def test_seed_reproduces_order_and_miss_plan() -> None:
    def orders(seed: int) -> list[list[int]]:
        with stamped_loader(size=30, seed=seed) as loader:
            out = []
            for _ in range(3):
                out.append([i for data, _ in loader for i in data[:, 0].tolist()])
            return [*out, [s.planned_misses for s in loader.stats]]

    assert orders(5) == orders(5)
    assert orders(5) != orders(6)


def test_seed_from_torch_global_rng_when_not_given() -> None:
    torch.manual_seed(123)
    first = RevamperLoader(IndexDataset(5)).seed
    torch.manual_seed(123)
    assert RevamperLoader(IndexDataset(5)).seed == first


def test_epochs_count_up_and_set_epoch_jumps() -> None:
    with stamped_loader(size=12, batch_size=4) as loader:
        assert loader.epoch == 0
        run_epoch(loader)
        assert loader.epoch == 1
        loader.set_epoch(5)
        iterator = iter(loader)
        assert len(iterator) == 3
        assert loader.epoch == 5  # the epoch starts at the iterator's first batch
        list(iterator)
        assert loader.epoch == 6
        assert sorted(s.epoch for s in loader.stats) == [0, 5]
        # jumping ahead leaves the cache stale for the chunks the plan thinks are cached
        assert loader.stats[5].unplanned_misses > 0
        with pytest.raises(ValueError, match="epoch"):
            loader.set_epoch(-1)


def test_sequential_order_without_shuffle() -> None:
    with stamped_loader(size=10, batch_size=3, shuffle=False) as loader:
        for _ in range(3):
            assert [i for data, _ in loader for i in data[:, 0].tolist()] == list(range(10))


def test_drop_last() -> None:
    with stamped_loader(size=50, batch_size=8, drop_last=True) as loader:
        assert len(loader) == 6
        for _ in range(6):
            seen = run_epoch(loader)
            assert len(seen) == 48
        assert all(s.unplanned_misses == 0 for s in list(loader.stats)[1:])


def test_budget_too_small_stays_correct() -> None:
    one_entry = 64 * 3  # a few hundred bytes per record: 5 entries fit
    with stamped_loader(size=30, cache_bytes=5 * one_entry) as loader:
        stamps = [run_epoch(loader) for _ in range(4)]
        check_stamps_allowing_recompute(stamps)
        stats = list(loader.stats)
        assert stats[0].uncached > 0
        assert sum(s.unplanned_misses for s in stats[1:]) > 0
        assert loader.store is not None
        assert loader.store.stats().bytes_used <= 5 * one_entry


def check_stamps_allowing_recompute(stamps: list[dict[int, int]]) -> None:
    for seen in stamps:
        assert sorted(seen) == list(range(len(seen)))


def test_standard_baseline_caches_nothing() -> None:
    loader = standard_loader(
        IndexDataset(20), batch_size=5, shuffle=True, partial_transform=stamp_computation, seed=0
    )
    with loader:
        assert loader.store is None
        stamps = [run_epoch(loader) for _ in range(3)]
        for s in loader.stats:
            assert s.planned_misses == 20 and s.hits == 0 and s.bytes_cached == 0
        assert not set(stamps[0].values()) & set(stamps[1].values())
    with pytest.raises(TypeError, match="reuse_factor"):
        standard_loader(IndexDataset(2), reuse_factor=2)


def test_echoing_baseline_repeats_identical_copies() -> None:
    loader = echoing_loader(
        IndexDataset(20),
        batch_size=5,
        shuffle=True,
        partial_transform=None,
        final_transform=stamp_computation,
        reuse_factor=2,
        seed=0,
    )
    with loader:
        epochs = [run_epoch(loader) for _ in range(3)]
        assert loader.stats[1].hits == 10
        repeated = sum(epochs[1][i] == epochs[0][i] for i in range(20))
        assert repeated == 10  # the hits are exact copies of epoch 0's fully augmented samples


def test_single_input_items_and_whole_sample_mode() -> None:
    class Plain(torch.utils.data.Dataset[np.ndarray]):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, index: int) -> np.ndarray:
            return np.array([index])

    with RevamperLoader(Plain(), batch_size=6, reuse_factor=2, seed=0) as loader:
        for _ in range(3):
            assert sorted(next(iter(loader))[:, 0].tolist()) == list(range(6))

    def swap(sample: tuple[np.ndarray, int]) -> tuple[int, np.ndarray]:
        return sample[1], sample[0]

    with RevamperLoader(
        IndexDataset(4), batch_size=4, partial_transform=swap, whole_sample=True, seed=0
    ) as loader:
        for _ in range(2):
            target, data = next(iter(loader))
            assert (data[:, 0] == target).all()


def test_dict_items_need_whole_sample() -> None:
    class Dicts(torch.utils.data.Dataset[dict[str, int]]):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> dict[str, int]:
            return {"x": index}

    with pytest.raises(SampleError, match="whole_sample=True"):
        next(iter(RevamperLoader(Dicts(), partial_transform=lambda x: x)))
    with RevamperLoader(Dicts(), batch_size=3, whole_sample=True, reuse_factor=2) as loader:
        assert sorted(next(iter(loader))["x"].tolist()) == [0, 1, 2]


@pytest.mark.parametrize(
    ("stage", "kwargs"),
    [
        ("load", {"dataset": FailingDataset(20, bad=13)}),
        ("partial_transform", {"partial_transform": FailAt(13)}),
        ("final_transform", {"final_transform": FailAt(13)}),
    ],
)
def test_errors_name_the_sample_and_stage(stage: str, kwargs: dict[str, Any]) -> None:
    kwargs = dict(kwargs)
    dataset = kwargs.pop("dataset", IndexDataset(20))
    with RevamperLoader(dataset, batch_size=4, **kwargs) as loader:
        with pytest.raises(SampleError, match=re.escape(f"sample 13 failed in stage '{stage}'")):
            list(loader)
        with pytest.raises(SampleError) as info:
            list(loader)
        assert (info.value.index, info.value.stage) == (13, stage)
        assert info.value.__cause__ is not None


def test_collate_error_names_the_stage() -> None:
    def bad_collate(samples: list[Any]) -> Any:
        raise RuntimeError("no")

    with RevamperLoader(IndexDataset(4), batch_size=2, collate_fn=bad_collate) as loader:
        with pytest.raises(SampleError) as info:
            next(iter(loader))
        assert info.value.stage == "collate" and info.value.index is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reuse_factor": 0}, ValueError, "reuse_factor"),
        ({"reuse_factor": 2.0}, TypeError, "reuse_factor"),
        ({"reuse_factor": True}, TypeError, "reuse_factor"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": None}, TypeError, "batch_size"),
        ({"partial_transform": "crop"}, TypeError, "partial_transform"),
        ({"final_transform": 3}, TypeError, "final_transform"),
        ({"cache_bytes": -1}, ValueError, "cache_bytes"),
        ({"cache_bytes": 1.5}, TypeError, "cache_bytes"),
        ({"seed": -2}, ValueError, "seed"),
        ({"num_workers": -1}, ValueError, "num_workers"),
        ({"cache": "gpu"}, ValueError, "cache"),
        ({"collate_fn": 5}, TypeError, "collate_fn"),
        ({"num_workers": None}, TypeError, "num_workers"),
        ({"generator": 3}, TypeError, "generator must be a Generator"),
        ({"cache_key": 3}, TypeError, "cache_key must be a str"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        RevamperLoader(IndexDataset(4), **kwargs)


def test_bad_datasets() -> None:
    with pytest.raises(ValueError, match="empty"):
        RevamperLoader(IndexDataset(0))

    class Stream(torch.utils.data.IterableDataset[int]):
        def __iter__(self) -> Any:
            return iter(range(3))

    with pytest.raises(TypeError, match="map-style"):
        RevamperLoader(Stream())
    with pytest.raises(TypeError, match="map-style"):
        RevamperLoader(42)


def test_closed_loader_refuses_to_iterate_and_releases_the_store() -> None:
    loader = stamped_loader()
    run_epoch(loader)
    store = loader.store
    assert store is not None
    path = store.path  # type: ignore[attr-defined]
    loader.close()
    assert not path.exists()
    with pytest.raises(RuntimeError, match="closed"):
        iter(loader)


def test_user_store_is_not_closed_by_the_loader() -> None:
    from revamper import SharedMemoryStore

    with SharedMemoryStore() as store:
        with RevamperLoader(IndexDataset(6), batch_size=3, cache=store, seed=0) as loader:
            list(loader)
            written = loader.stats[0].cache_writes
        assert written > 0 and store.stats().entries == written
        with pytest.raises(ValueError, match="cache_bytes"):
            RevamperLoader(IndexDataset(6), cache=store, cache_bytes=10)


def _collate_lists(batch: list[Any]) -> list[Any]:
    return list(batch)


def _init_nothing(worker_id: int) -> None:
    return None


def test_dataloaders_attributes_read_as_on_a_dataloader() -> None:
    # Found in review: none of DataLoader's attributes existed but `dataset`, so code reading
    # loader.batch_size or loader.num_workers (and frameworks) failed with AttributeError.
    options: dict[str, Any] = {
        "batch_size": 3,
        "shuffle": True,
        "drop_last": True,
        "num_workers": 2,
        "collate_fn": _collate_lists,
        "worker_init_fn": _init_nothing,
        "timeout": 5.0,
        "persistent_workers": True,
        "multiprocessing_context": "spawn",
    }
    reference = torch.utils.data.DataLoader(IndexDataset(10), **options)
    with RevamperLoader(IndexDataset(10), **options) as loader:
        for name in (
            "batch_size",
            "drop_last",
            "num_workers",
            "collate_fn",
            "pin_memory",
            "timeout",
            "prefetch_factor",
            "persistent_workers",
            "pin_memory_device",
        ):
            assert getattr(loader, name) == getattr(reference, name), name
        assert type(loader.multiprocessing_context) is type(reference.multiprocessing_context)
        with pytest.raises(AttributeError, match=r"no sampler.*state_dict"):
            loader.sampler  # noqa: B018
        assert not hasattr(loader, "batch_sampler")
        # Lightning's seed_everything(workers=True) sets a worker_init_fn it finds to be None.
        assert not hasattr(loader, "worker_init_fn") and not hasattr(loader, "generator")
        for name in ("worker_init_fn", "generator"):  # a DataLoader would use it: never ignored
            with pytest.raises(AttributeError, match=rf"pass {name}= to RevamperLoader"):
                setattr(loader, name, None)
        with pytest.raises(AttributeError):
            loader.batch_size = 4  # type: ignore[misc]
    with RevamperLoader(IndexDataset(10)) as plain:
        assert plain.collate_fn is torch.utils.data.default_collate
        assert plain.prefetch_factor is None and plain.num_workers == 0


@pytest.mark.parametrize("change", ["grow", "shrink"])
def test_a_data_set_that_changed_size_is_refused_at_the_next_epoch(change: str) -> None:
    # Found in review: samples appended after the loader was built were never yielded (the plan
    # is sized at construction) and a shrunk list failed deep in a worker with an IndexError.
    samples = [np.full(2, i) for i in range(8)]
    with RevamperLoader(samples, batch_size=2, seed=0) as loader:
        assert sum(1 for _ in loader) == 4
        if change == "grow":
            samples.extend(np.full(2, i) for i in range(8, 12))
        else:
            del samples[6:]
        with pytest.raises(RuntimeError, match="build a new loader after changing the data set"):
            next(iter(loader))
