"""What is particular to the shared-memory store: where it lives and how it is released."""

from __future__ import annotations

import errno
import gc
import logging
import multiprocessing as mp
import os
import pickle
import shutil
import signal
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revamper.store import MISS, ArenaStore, SharedMemoryStore, memory_dir
from revamper.store import memory as memory_module
from revamper.store.memory_dir import default_reserve, holds_torch_batches


def test_lives_in_dev_shm_and_close_removes_everything() -> None:
    store = SharedMemoryStore()
    path = store.path
    assert str(path).startswith("/dev/shm/revamper-")
    for index in range(50):
        store.put(index, 0, np.zeros(1000))
    store.close()
    assert not path.exists()


def test_garbage_collection_removes_the_directory() -> None:
    store = SharedMemoryStore()
    path = store.path
    store.put(0, 0, 1)
    del store
    gc.collect()
    assert not path.exists()


def _drop_inherited(store: SharedMemoryStore) -> None:
    # A forked child holds a copy of the owner object; dropping or closing it there must
    # not delete the parent's entries.
    assert not store.is_owner
    store.close()
    del store
    gc.collect()


def test_forked_child_never_removes_the_parents_store() -> None:
    store = SharedMemoryStore()
    store.put(0, 0, "kept")
    child = mp.get_context("fork").Process(target=_drop_inherited, args=(store,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert store.get(0, 0) == "kept"
    store.close()


def _create_and_die(directory: str, conn: Any, hold: Any) -> None:
    store = SharedMemoryStore(directory=directory)
    store.put(0, 0, np.zeros(1000))
    conn.send(str(store.path))  # a pipe: sent before the kill below, unlike a queue
    if hold is not None:
        hold.wait(30)  # alive until the parent has looked
        store.close()
        return
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no finalizer, no atexit


@pytest.mark.slow
def test_a_store_whose_owner_was_killed_is_swept_by_the_next_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_create_and_die, args=(str(tmp_path), sender, None))
    child.start()
    assert receiver.poll(60)
    left = Path(receiver.recv())
    child.join(60)
    assert child.exitcode == -signal.SIGKILL and left.exists()
    with caplog.at_level(logging.WARNING), SharedMemoryStore(directory=tmp_path) as store:
        assert not left.exists()
        assert store.path.exists()
    assert any("ended without closing" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_live_stores_of_this_and_other_processes_are_never_swept(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    (receiver, sender), hold = ctx.Pipe(duplex=False), ctx.Event()
    child = ctx.Process(target=_create_and_die, args=(str(tmp_path), sender, hold))
    child.start()
    assert receiver.poll(60)
    theirs = Path(receiver.recv())
    with SharedMemoryStore(directory=tmp_path) as first, SharedMemoryStore(directory=tmp_path):
        assert first.path.exists() and theirs.exists()
        first.put(1, 0, "here")
        assert first.get(1, 0) == "here"
    hold.set()
    child.join(60)
    assert child.exitcode == 0 and not theirs.exists()


def test_directories_being_built_or_of_older_versions_are_never_swept(tmp_path: Path) -> None:
    building = tmp_path / ".revamper-1-abc"  # a store being created: not yet renamed
    building.mkdir()
    (building / "owner.lock").touch()  # its lock not yet taken
    older = tmp_path / "revamper-2-def"  # no owner lock: not ours to judge
    older.mkdir()
    assert memory_module.sweep_abandoned(tmp_path) == []
    assert building.exists() and older.exists()


def test_a_failed_creation_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(memory_module.Counters, "create", fail)
    with pytest.raises(OSError, match="No space"):
        SharedMemoryStore(directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_file_system_without_a_size_is_not_checked_for_free_space(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An unlimited tmpfs or a ramfs reports f_blocks = f_bavail = 0.
    real = os.statvfs
    with SharedMemoryStore(reserve_bytes=0) as store:

        def sizeless(path: object) -> Any:
            info = real(path)  # type: ignore[arg-type]
            return type("Info", (), {"f_blocks": 0, "f_bavail": 0, "f_frsize": info.f_frsize})

        monkeypatch.setattr(os, "statvfs", sizeless)
        assert memory_module.default_reserve(store.path) == 0
        assert store.put(0, 0, np.zeros(1000))


def test_custom_directory_and_bad_directories(tmp_path: Path) -> None:
    store = SharedMemoryStore(directory=tmp_path)
    assert store.path.parent == tmp_path
    store.close()
    with pytest.raises(ValueError, match="does not exist"):
        SharedMemoryStore(directory=tmp_path / "missing")
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        SharedMemoryStore(directory=file)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_bad_capacity(bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="budget_bytes"):
        SharedMemoryStore(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_reserve(bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="reserve_bytes"):
        SharedMemoryStore(reserve_bytes=bad)  # type: ignore[arg-type]


def test_default_reserve_leaves_room_for_the_loaders_batches() -> None:
    with SharedMemoryStore() as store:
        info = os.statvfs(store.path)
        size = info.f_blocks * info.f_frsize
        assert holds_torch_batches(store.path)
        assert store.reserve_bytes == min(max(256 * 2**20, size // 10), size // 2)


def _large_disk_nine_tenths_full(monkeypatch: pytest.MonkeyPatch, where: Path) -> None:
    """Make ``where``'s file system report 252 GB with 8% (20 GB) free, like a busy disk."""
    real, device = os.statvfs, os.stat(where).st_dev

    def statvfs(path: Any) -> os.statvfs_result:
        if os.stat(path).st_dev != device:
            return real(path)
        blocks = 252 * 10**9 // 4096
        return os.statvfs_result(
            (4096, 4096, blocks, blocks * 8 // 100, blocks * 8 // 100, 10**7, 10**6, 10**6, 0, 255)
        )

    monkeypatch.setattr(os, "statvfs", statvfs)


@pytest.mark.parametrize("make", [SharedMemoryStore, lambda **kw: ArenaStore(10, **kw)])
def test_a_large_disk_with_gigabytes_free_still_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Any
) -> None:
    # CI found it: a store in a directory on a 252 GB disk with 21 GB free kept 10% of the disk
    # (25 GB) "for DataLoader's batches", which never go there, and cached nothing.
    if holds_torch_batches(tmp_path):
        pytest.skip("the temporary directory is on /dev/shm's file system")
    _large_disk_nine_tenths_full(monkeypatch, tmp_path)
    assert default_reserve(tmp_path) == 256 * 2**20
    with make(directory=tmp_path) as store:
        assert store.put(0, 0, np.arange(1000)) and (store.get(0, 0) == np.arange(1000)).all()


def test_without_dev_shm_the_temporary_directory_keeps_only_the_margin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found in review: on a host without /dev/shm (macOS, some containers) the store goes to
    # the temporary directory, which counted as /dev/shm's file system and kept 10% of a
    # large disk free: the failure of the large-disk test above, back by another door.
    monkeypatch.setattr(memory_dir, "DEFAULT_SHM_DIR", str(tmp_path / "no-dev-shm"))
    assert not holds_torch_batches(tmp_path)
    _large_disk_nine_tenths_full(monkeypatch, tmp_path)
    assert default_reserve(tmp_path) == 256 * 2**20
    with SharedMemoryStore(directory=tmp_path) as store:
        assert store.put(0, 0, np.arange(1000)) and (store.get(0, 0) == np.arange(1000)).all()


def test_an_entry_that_would_eat_the_reserve_is_not_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = SharedMemoryStore(reserve_bytes=100_000)
    monkeypatch.setattr(memory_module, "free_bytes", lambda path: 150_000)
    assert store.put(0, 0, np.zeros(10_000, dtype=np.uint8))  # leaves 140 KB: fine
    with pytest.warns(RuntimeWarning, match="shm-size"):
        assert not store.put(1, 0, np.zeros(80_000, dtype=np.uint8))
    assert store.get(1, 0) is MISS
    attached = pickle.loads(pickle.dumps(store))
    assert attached.reserve_bytes == 100_000
    assert SharedMemoryStore.attach(store.path).reserve_bytes == 100_000
    stats = store.stats()
    assert stats.rejected_puts == 1 and stats.entries == 1
    store.close()


def test_full_file_system_leaves_entry_uncached_and_warns_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = SharedMemoryStore()

    def no_space(fd: int, buffers: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(memory_module.record.os, "writev", no_space)
    with pytest.warns(RuntimeWarning, match="could not cache sample 0"):
        assert not store.put(0, 0, np.zeros(10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not store.put(1, 0, np.zeros(10))  # no second warning
    assert store.get(0, 0) is MISS
    stats = store.stats()
    assert stats.failed_puts == 2 and stats.entries == 0 and stats.bytes_used == 0
    assert os.listdir(store.path / "tmp") == []  # no half-written files left
    store.close()


@pytest.mark.parametrize("damage", ["truncate", "flip", "other-index"])
def test_damaged_record_reads_as_miss_and_is_counted(damage: str) -> None:
    store = SharedMemoryStore(checksum=True)
    store.put(7, 0, np.arange(1000))
    store.put(8, 0, np.arange(1000))
    path = Path(store._entry_path(7))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-5] ^= 0xFF
    else:
        data = bytearray(Path(store._entry_path(8)).read_bytes())
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="damaged or foreign entry"):
        assert store.get(7, 0) is MISS
    assert store.stats().invalid_reads == 1
    store.close()


def test_writes_after_close_do_not_recreate_the_directory() -> None:
    store = SharedMemoryStore()
    path = store.path
    attached = pickle.loads(pickle.dumps(store))
    store.close()
    with pytest.warns(RuntimeWarning, match="no longer exists"):
        assert not attached.put(3, 0, np.zeros(5))
    assert attached.get(3, 0) is MISS
    assert not attached.contains(3)
    assert not path.exists()


@pytest.mark.parametrize("planted", ["shard-as-file", "lock-as-directory"])
def test_a_file_or_directory_planted_in_place_of_the_other_leaves_entries_uncached(
    planted: str,
) -> None:
    # Found in review: put and evict raised (NotADirectoryError, IsADirectoryError), which the
    # loader turns into a SampleError that ends the run.
    with SharedMemoryStore() as store:
        assert store.put(0, 0, np.arange(10))
        if planted == "shard-as-file":
            for child in (store.path / "data").iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                    child.write_bytes(b"x")
        else:
            (store.path / "lock").unlink()
            (store.path / "lock").mkdir()
        attached = pickle.loads(pickle.dumps(store))  # a fresh worker opens the files anew
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for target in (store, attached):
                assert target.put(1, 0, np.arange(5)) in (True, False)
                target.evict(1)
                target.on_epoch_start(1)
