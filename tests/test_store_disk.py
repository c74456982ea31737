"""The disk store and the tiered store: persistence, fault injection, batched reads, placement."""

from __future__ import annotations

import errno
import logging
import multiprocessing as mp
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revamper.store import MISS, DiskStore, SharedMemoryStore, TieredStore
from revamper.store import disk as disk_module
from revamper.store import segments as segments_module
from revamper.store.codec import encode
from revamper.store.manifest import MANIFEST_NAME, transform_identity
from revamper.store.record import record_size

FINGERPRINT = {"num_samples": 100, "reuse_factor": 3, "seed": 0, "partial": "crop"}


def disk(path: Path, **kwargs: Any) -> DiskStore:
    kwargs.setdefault("num_samples", 100)
    kwargs.setdefault("fingerprint", FINGERPRINT)
    return DiskStore(path, **kwargs)


def segment_files(path: Path) -> list[Path]:
    return sorted((path / "segments").glob("*.seg"))


# -- construction ---------------------------------------------------------------------------------
def test_bad_directories_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        disk(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        disk(tmp_path / "file")
    real_access = os.access
    monkeypatch.setattr(
        disk_module.os,
        "access",
        lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode),
    )
    with pytest.raises(ValueError, match="not writable"):
        disk(tmp_path)


# -- persistence ----------------------------------------------------------------------------------
def test_entries_survive_a_restart(tmp_path: Path) -> None:
    store = disk(tmp_path)
    for index in range(10):
        assert store.put(index, 2, np.full(100, index))
    store.close()
    again = disk(tmp_path)
    for index in range(10):
        np.testing.assert_array_equal(again.get(index, 2), np.full(100, index))
    assert again.stats().entries == 10
    assert again.stats().bytes_used == 10 * record_size(encode(np.full(100, 0)))
    again.close()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"fingerprint": {**FINGERPRINT, "seed": 1}}, "seed"),
        ({"fingerprint": {**FINGERPRINT, "partial": "other"}}, "partial"),
        ({"num_samples": 101}, "num_samples"),
    ],
)
def test_a_foreign_cache_is_discarded_with_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, change: dict[str, Any], field: str
) -> None:
    store = disk(tmp_path)
    store.put(1, 0, "old")
    store.close()
    with caplog.at_level(logging.WARNING, logger="revamper.store.disk"):
        other = disk(tmp_path, **change)
    assert any(field in r.getMessage() and "discarding" in r.getMessage() for r in caplog.records)
    assert other.get(1, 0) is MISS
    assert other.stats().entries == 0 and segment_files(tmp_path) == []
    other.close()


def test_an_emptied_cache_directory_starts_fresh(tmp_path: Path) -> None:
    store = disk(tmp_path)
    store.put(1, 0, "old")
    store.close()
    for child in tmp_path.iterdir():
        if child.is_dir():
            for f in child.iterdir():
                f.unlink()
            child.rmdir()
        else:
            child.unlink()
    fresh = disk(tmp_path)
    assert fresh.get(1, 0) is MISS
    assert fresh.put(1, 0, "new") and fresh.get(1, 0) == "new"
    assert (tmp_path / MANIFEST_NAME).exists()
    fresh.close()


def test_transform_identity_is_stable_and_readable() -> None:
    from torchvision import transforms as T

    def crop(x: Any) -> Any:
        return x

    assert "RandomResizedCrop(size=(224, 224)" in transform_identity(T.RandomResizedCrop(224))
    assert transform_identity(crop).endswith(
        "test_transform_identity_is_stable_and_readable.<locals>.crop"
    )
    composed = transform_identity(T.Compose([T.RandomHorizontalFlip(), crop]))
    assert composed.startswith("Compose(RandomHorizontalFlip(p=0.5), ")
    assert " at 0x" not in composed


# -- fault injection -------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_records_read_as_misses_counted_and_warned_once(
    tmp_path: Path, damage: str
) -> None:
    store = disk(tmp_path)
    for index in range(3):
        store.put(index, 0, np.arange(1000) + index)
    (segment,) = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    size = record_size(encode(np.arange(1000)))
    if damage == "truncate":
        data = data[: 2 * size + size // 2]  # the third record is cut in half
        broken = [2]
    else:
        data[size + size // 2] ^= 0x40  # one bit in the second record's payload
        broken = [1]
    store.close()
    segment.write_bytes(bytes(data))
    reader = disk(tmp_path)
    with pytest.warns(RuntimeWarning, match="damaged record"):
        got = reader.get_many([0, 1, 2], [0, 0, 0])
    for index, value in enumerate(got):
        if index in broken:
            assert value is MISS
        else:
            np.testing.assert_array_equal(value, np.arange(1000) + index)
    if damage == "flip":
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert reader.get(1, 0) is MISS  # warned once only
        assert reader.stats().invalid_reads == 2
    reader.close()


def test_full_disk_leaves_the_entry_uncached_and_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = disk(tmp_path)
    assert store.put(0, 0, "kept")

    def full(fd: int, buffers: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segments_module.record.os, "writev", full)
    with pytest.warns(RuntimeWarning, match="could not write sample 1"):
        assert not store.put(1, 0, np.zeros(10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not store.put(0, 1, np.zeros(10))  # replacing: the old entry is outdated too
    monkeypatch.undo()
    assert store.get(1, 0) is MISS and store.get(0, 0) is MISS
    stats = store.stats()
    assert stats.failed_puts == 2 and stats.entries == 0
    assert store.put(2, 0, "after") and store.get(2, 0) == "after"  # training goes on
    store.close()


def _write_forever(path: Path) -> None:
    store = disk(path)
    big = np.random.default_rng(0).integers(0, 255, 2_000_000, dtype=np.uint8)
    index = 0
    while True:
        store.put(index % 100, 0, big)
        index += 1


@pytest.mark.slow
def test_a_worker_killed_mid_write_never_yields_bad_data(tmp_path: Path) -> None:
    disk(tmp_path).close()
    child = mp.get_context("fork").Process(target=_write_forever, args=(tmp_path,))
    child.start()
    time.sleep(1.5)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    store = disk(tmp_path)
    expected = np.random.default_rng(0).integers(0, 255, 2_000_000, dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = store.get_many(list(range(100)), [0] * 100)
    served = [value for value in got if value is not MISS]
    assert served, "some entries were completed before the kill"
    for value in served:
        np.testing.assert_array_equal(value, expected)
    store.close()


# -- segments and reading --------------------------------------------------------------------------
def test_batched_reads_make_one_read_system_call_per_run_of_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = disk(tmp_path)
    for index in range(64):
        store.put(index, 0, np.full(3072, index % 256, dtype=np.uint8))  # 32x32x3-sized
    real_preadv = os.preadv
    segment_reads: list[int] = []

    def counting(fd: int, buffers: Any, offset: int) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".seg"):
            segment_reads.append(len(buffers))
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", counting)
    got = store.get_many(list(range(63, -1, -1)), [0] * 64)
    assert [int(v[0]) for v in got] == [i % 256 for i in range(63, -1, -1)]
    assert segment_reads == [64]  # back-to-back records: one preadv into 64 private buffers
    segment_reads.clear()
    got = store.get_many([0, 10, 40], [0] * 3)  # far apart: one read each
    assert [int(v[0]) for v in got] == [0, 10, 40] and segment_reads == [1, 1, 1]
    store.close()


def test_dead_segments_are_deleted_between_epochs_but_active_ones_kept(tmp_path: Path) -> None:
    store = disk(tmp_path, segment_bytes=1)  # every record starts a new segment
    for generation in range(3):
        for index in range(4):
            store.put(index, generation, np.zeros(100))
    assert len(segment_files(tmp_path)) == 12
    store.on_epoch_start(3)
    # generation 2's four records are live; the writer's active segment is kept too
    assert len(segment_files(tmp_path)) == 4
    for index in range(4):
        assert store.get(index, 2) is not MISS
    store.close()


def test_new_generation_starts_a_new_segment(tmp_path: Path) -> None:
    store = disk(tmp_path)
    for generation in range(3):
        for index in range(5):
            store.put(index, generation, np.zeros(10))
    assert len(segment_files(tmp_path)) == 3
    store.on_epoch_start(3)
    assert len(segment_files(tmp_path)) == 1
    store.close()


def test_prefetch_and_drop_after_read_advise_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int, int]] = []
    monkeypatch.setattr(
        segments_module.os,
        "posix_fadvise",
        lambda fd, off, n, advice: calls.append((off, n, advice)),
    )
    store = disk(tmp_path, drop_after_read=True)
    for index in range(4):
        store.put(index, 0, np.zeros(1000))
    size = record_size(encode(np.zeros(1000)))
    assert calls == [(i * size, size, os.POSIX_FADV_DONTNEED) for i in range(4)]  # written
    calls.clear()
    store.prefetch([0, 1, 3, 2], [0, 0, 0, 7])  # 2 has another generation: not needed
    assert calls == [(0, 4 * size, os.POSIX_FADV_WILLNEED)]  # neighbours merged
    calls.clear()
    store.get_many([3, 0], [0, 0])
    assert calls == [(0, 4 * size, os.POSIX_FADV_DONTNEED)]
    assert store.io_counters().disk_read == 2 * size
    store.close()


# -- the tiered store ------------------------------------------------------------------------------
def test_a_fixed_subset_stays_in_ram_and_disk_reads_are_bounded(tmp_path: Path) -> None:
    entry = record_size(encode(np.zeros(1000, dtype=np.uint8)))
    ram_budget = 10 * entry
    store = TieredStore(SharedMemoryStore(ram_budget), disk(tmp_path, drop_after_read=True))
    n, r = 40, 2
    chunks = np.arange(n) % r
    for index in range(n):
        store.put(index, 0, np.zeros(1000, dtype=np.uint8))
    resident = {i for i in range(n) if store.memory.contains(i)}
    assert len(resident) == 10
    for epoch in range(1, 7):
        before = store.io_counters()
        gens = [epoch if chunks[i] == epoch % r else epoch - 1 for i in range(n)]
        hits = [i for i in range(n) if chunks[i] != epoch % r]
        assert all(v is not MISS for v in store.get_many(hits, [gens[i] for i in hits]))
        for index in range(n):
            if chunks[index] == epoch % r:
                assert store.put(index, epoch, np.zeros(1000, dtype=np.uint8))
        read = (store.io_counters() - before).disk_read
        assert read <= (n - 10) * entry  # at most the entries that do not fit in RAM
        assert {i for i in range(n) if store.memory.contains(i)} == resident
    ram, on_disk = store.tier_bytes()
    assert ram == 10 * entry and on_disk == 30 * entry
    store.close()


def test_tiered_store_needs_a_ram_budget(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="budget_bytes"):
        TieredStore(SharedMemoryStore(), disk(tmp_path))


# -- the slot table -------------------------------------------------------------------------------
def test_slot_check_words_agree_between_python_and_numpy() -> None:
    from revamper.store.slots import SLOT_DTYPE, slot_check, slot_checks

    rng = np.random.default_rng(0)
    rows = np.zeros(200, dtype=SLOT_DTYPE)
    rows["generation"] = rng.integers(0, 2**62, 200)
    rows["offset"] = rng.integers(0, 2**47, 200, dtype=np.uint64)
    rows["length"] = rng.integers(64, 2**32, 200, dtype=np.uint64)
    rows["segment"] = rng.integers(0, 2**32 - 1, 200, dtype=np.uint64)
    indices = rng.integers(0, 2**40, 200)
    expected = [
        slot_check(
            int(i), int(r["generation"]), int(r["offset"]), int(r["length"]), int(r["segment"])
        )
        for i, r in zip(indices, rows, strict=True)
    ]
    assert slot_checks(rows, indices).tolist() == expected


@pytest.mark.parametrize("batch", [1, 64])  # checked in Python / with numpy
def test_a_damaged_slot_is_a_miss_whatever_the_batch_size(tmp_path: Path, batch: int) -> None:
    store = disk(tmp_path)
    for index in range(64):
        store.put(index, 0, np.full(10, index))
    with open(tmp_path / "index", "r+b") as table:
        table.seek(5 * 32 + 8)  # the offset field of sample 5's slot
        table.write(b"\x01")
    indices = [5] if batch == 1 else list(range(64))
    with pytest.warns(RuntimeWarning, match="damaged slot"):
        got = store.get_many(indices, [0] * len(indices))
    for index, value in zip(indices, got, strict=True):
        if index == 5:
            assert value is MISS
        else:
            np.testing.assert_array_equal(value, np.full(10, index))
    assert store.stats().invalid_reads == 1
    store.close()
