"""A damaged shared-memory store costs recomputations, never a crash, a hang or wrong data.

Entry files truncated (before or while they are read), with bytes flipped, grown sparse, or
replaced by a link, a FIFO, a directory or another user's file; counters out of range. Each must
read as a miss (counted in ``invalid_reads``, one warning per process) or be reset.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revamper.store import MISS, SharedMemoryStore
from revamper.store import memory_entry as entry_module
from revamper.store.counters import Counters
from tests.helpers import record_allocations

NOBODY = 65534
DAMAGED = "damaged or foreign entry"


def _store_with(index: int, value: Any, **kwargs: Any) -> tuple[SharedMemoryStore, Path]:
    store = SharedMemoryStore(**kwargs)
    assert store.put(index, 0, value)
    return store, Path(store._entry_path(index))


def _get_quietly(store: SharedMemoryStore, index: int) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return store.get(index, 0)


def test_a_symlinked_entry_is_a_miss_and_its_target_is_never_written(tmp_path: Path) -> None:
    store, path = _store_with(7, np.arange(100))
    target = tmp_path / "record"
    target.write_bytes(path.read_bytes())  # a valid record of this very store
    path.unlink()
    path.symlink_to(target)
    with pytest.warns(RuntimeWarning, match=DAMAGED):
        assert store.get(7, 0) is MISS
    assert not store.contains(7)
    assert store.stats().invalid_reads == 1
    before = target.read_bytes()
    assert store.put(7, 0, np.arange(5))  # replaces the link, not what it points to
    np.testing.assert_array_equal(store.get(7, 0), np.arange(5))
    assert target.read_bytes() == before
    store.close()


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    return thread, out


def test_a_fifo_entry_is_a_miss_and_never_blocks() -> None:
    store, path = _store_with(7, np.arange(100))
    path.unlink()
    os.mkfifo(path, 0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        getter, got = _in_thread(lambda: store.get(7, 0))
        getter.join(10)
        checker, contained = _in_thread(lambda: store.contains(7))
        checker.join(10)
    blocked = getter.is_alive() or checker.is_alive()
    for _ in range(2):  # unblock a reader stuck in open() (the old code), then let it finish
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            break
    assert not blocked
    assert got == [MISS] and contained == [False]
    assert store.stats().invalid_reads == 1
    store.evict(7)
    assert not os.path.lexists(path)
    store.close()


def test_a_directory_entry_is_a_miss_and_can_be_replaced_or_evicted() -> None:
    store, path = _store_with(7, np.arange(100))
    path.unlink()
    path.mkdir()
    (path / "inside").write_bytes(b"x" * 100)
    assert _get_quietly(store, 7) is MISS
    assert not store.contains(7)
    assert store.put(7, 0, np.arange(3))
    np.testing.assert_array_equal(store.get(7, 0), np.arange(3))
    path.unlink()
    path.mkdir()
    store.evict(7)
    assert not os.path.lexists(path)
    store.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_an_entry_of_another_user_is_a_miss() -> None:
    store, path = _store_with(7, np.arange(100))
    os.chown(path, NOBODY, -1)
    assert _get_quietly(store, 7) is MISS
    assert not store.contains(7)
    assert store.stats().invalid_reads == 1
    store.close()


@pytest.mark.parametrize("size", [0, 10, 64, 100])
def test_a_truncated_entry_is_a_miss(size: int) -> None:
    store, path = _store_with(7, np.arange(1000))
    os.truncate(path, size)
    assert _get_quietly(store, 7) is MISS
    assert store.stats().invalid_reads == 1
    store.close()


def test_an_entry_truncated_while_it_is_read_is_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = _store_with(7, np.zeros((224, 224, 3), dtype=np.uint8))
    real = os.preadv

    def truncating(fd: int, buffers: Any, offset: int) -> int:
        os.ftruncate(fd, 4096)  # another process cuts the file short mid-read
        return real(fd, buffers, offset)

    monkeypatch.setattr(entry_module.os, "preadv", truncating)
    assert _get_quietly(store, 7) is MISS
    monkeypatch.undo()
    assert store.stats().invalid_reads == 1
    store.close()


@pytest.mark.parametrize("capacity", [None, 100_000])
def test_a_sparse_entry_claiming_a_huge_size_is_a_miss(capacity: int | None) -> None:
    store, path = _store_with(7, np.arange(1000), budget_bytes=capacity)
    os.truncate(path, 2**40)  # a terabyte, almost none of it allocated
    assert _get_quietly(store, 7) is MISS
    assert store.stats().invalid_reads == 1
    store.close()


def test_a_sparse_entry_within_the_file_systems_size_is_a_miss_without_reading_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, path = _store_with(7, np.arange(1000))
    os.truncate(path, 2**29)  # 512 MiB, within the tmpfs: a valid header, then holes
    asked = record_allocations(monkeypatch, entry_module)
    assert _get_quietly(store, 7) is MISS
    assert max(asked, default=0) < 2**20  # the header's size disagreed: nothing allocated
    assert store.stats().invalid_reads == 1
    store.close()


def _flip(data: bytes, rng: np.random.Generator, low: int, high: int) -> bytes:
    damaged = bytearray(data)
    for position in rng.integers(low, high, size=rng.integers(1, 4)):
        damaged[position] ^= int(rng.integers(1, 256))
    return bytes(damaged)


def test_random_byte_flips_anywhere_never_serve_wrong_data_by_default() -> None:
    value = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    store, path = _store_with(7, value)
    original = path.read_bytes()
    rng = np.random.default_rng(1)
    served = 0
    for _ in range(300):
        path.write_bytes(_flip(original, rng, 0, len(original)))
        back = _get_quietly(store, 7)
        assert back is MISS or np.array_equal(back, value)
        served += back is not MISS
    assert served < 30  # only flips in the header's padding leave the record valid
    store.close()


def test_without_checksum_flips_never_crash_and_header_flips_never_serve_wrong_data() -> None:
    # Without a checksum a flipped payload or meta byte can go unnoticed (hence the default);
    # reading must still never raise, and a damaged header must never pass.
    value = {"image": np.arange(3000, dtype=np.int16).reshape(30, 100), "label": 3}
    store, path = _store_with(7, value, checksum=False)
    original = path.read_bytes()
    rng = np.random.default_rng(2)
    for _ in range(300):
        path.write_bytes(_flip(original, rng, 0, 64))
        back = _get_quietly(store, 7)
        assert back is MISS or (
            back["label"] == 3 and np.array_equal(back["image"], value["image"])
        )
    for _ in range(300):
        path.write_bytes(_flip(original, rng, 0, len(original)))
        _get_quietly(store, 7)
    store.close()


def test_damaged_entries_warn_once_per_process_and_are_all_counted() -> None:
    store = SharedMemoryStore()
    for index in range(3):
        store.put(index, 0, np.arange(100))
        os.truncate(store._entry_path(index), 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [store.get(index, 0) for index in range(3)]
    assert results == [MISS] * 3
    assert len([w for w in caught if DAMAGED in str(w.message)]) == 1
    assert store.stats().invalid_reads == 3
    store.close()


def test_a_link_left_at_the_temporary_name_is_never_written_through(tmp_path: Path) -> None:
    store = SharedMemoryStore()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, store.path / "tmp" / f"7.{os.getpid()}")
    assert store.put(7, 0, np.arange(10))
    np.testing.assert_array_equal(store.get(7, 0), np.arange(10))
    assert victim.read_text() == "precious"
    store.close()


# -- counters out of range ----------------------------------------------------------------------


def _set_counters(store: SharedMemoryStore, **values: int) -> None:
    counters = Counters(store.path)
    with counters.locked():
        for name, value in values.items():
            counters.set(name, value)
    counters.close()


def test_a_damaged_byte_count_is_recounted_and_the_budget_works_again() -> None:
    store = SharedMemoryStore(budget_bytes=100_000)
    store.put(0, 0, np.zeros(1000, dtype=np.uint8))
    store.put(1, 0, np.zeros(1000, dtype=np.uint8))
    held = store.stats().bytes_used
    _set_counters(store, bytes=2**61)
    with pytest.warns(RuntimeWarning, match="recounted"):
        assert store.put(2, 0, np.zeros(1000, dtype=np.uint8))
    stats = store.stats()
    assert stats.entries == 3 and stats.bytes_used == held * 3 // 2
    store.close()


@pytest.mark.parametrize(
    "values",
    [{"bytes": -5}, {"entries": -1}, {"entries": 10**6}, {"bytes": 2**63 - 1, "entries": 2}],
)
def test_impossible_usage_counters_are_recounted_from_the_entries(values: dict[str, int]) -> None:
    store = SharedMemoryStore()
    store.put(0, 0, np.zeros(100))
    store.put(1, 0, np.zeros(100))
    expected = store.stats()
    _set_counters(store, **values)
    with pytest.warns(RuntimeWarning, match="recounted"):
        stats = store.stats()
    assert (stats.entries, stats.bytes_used) == (expected.entries, expected.bytes_used)
    store.close()


def test_statistics_out_of_range_are_reset() -> None:
    store = SharedMemoryStore()
    store.put(0, 0, 1)
    _set_counters(store, invalid=-3, puts=2**63 - 1, rejected=-(2**63), failed=-1)
    stats = store.stats()
    assert (stats.invalid_reads, stats.puts, stats.rejected_puts, stats.failed_puts) == (0,) * 4
    assert store.stats() == stats
    store.close()


def _work_after_counters_truncated(store: SharedMemoryStore, conn: Any) -> None:
    store.put(0, 0, np.arange(10))
    os.truncate(store.path / "counters", 0)  # under this process's open counters
    store.put(1, 0, np.arange(10))
    stats = store.stats()
    conn.send((store.get(1, 0).tolist(), stats.entries >= 0))


@pytest.mark.slow
def test_counters_truncated_under_a_worker_never_kill_it() -> None:
    with SharedMemoryStore() as store:
        ctx = mp.get_context("fork")
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_work_after_counters_truncated, args=(store, sender))
        child.start()
        child.join(60)
        assert child.exitcode == 0  # not -SIGBUS
        assert receiver.recv() == (list(range(10)), True)
        assert store.put(2, 0, 2) and store.get(2, 0) == 2


def test_a_linked_shard_directory_is_never_written_through(tmp_path: Path) -> None:
    store = SharedMemoryStore()
    store.put(0, 0, 0)
    victim = tmp_path / "victim"
    victim.mkdir()
    shard = store.path / "data" / "0"
    shutil.rmtree(shard)
    shard.symlink_to(victim)
    attached = pickle.loads(pickle.dumps(store))  # a fresh process's view: no shard known yet
    assert attached.put(1, 0, np.arange(4))
    assert list(victim.iterdir()) == []
    np.testing.assert_array_equal(store.get(1, 0), np.arange(4))
    store.close()


def test_counts_skewed_by_damage_are_recounted_at_the_next_epoch() -> None:
    store = SharedMemoryStore()
    for index in range(4):
        store.put(index, 0, np.arange(100))
    one = store.stats().bytes_used // 4
    path = Path(store._entry_path(0))
    path.unlink()
    path.mkdir()  # damage the counts cannot see: still 4 entries by the counters
    assert _get_quietly(store, 0) is MISS
    store.on_epoch_start(1)
    stats = store.stats()
    assert (stats.entries, stats.bytes_used) == (3, 3 * one)
    store.close()


def _put_and_die(store: SharedMemoryStore) -> None:
    import signal

    from revamper.store import memory as memory_module

    def killed_before_rename(tmp: str, path: str) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    memory_module.replace_entry = killed_before_rename  # type: ignore[assignment]
    store.put(3, 0, np.zeros(50_000))


def test_a_record_half_written_by_a_killed_worker_is_removed_at_the_next_epoch() -> None:
    store = SharedMemoryStore()
    child = mp.get_context("fork").Process(target=_put_and_die, args=(store,))
    child.start()
    child.join(60)
    assert child.exitcode == -9
    tmp = store.path / "tmp"
    assert os.listdir(tmp) == [f"3.{child.pid}"]  # 400 KB nobody counts
    store.on_epoch_start(1)
    assert os.listdir(tmp) == [f"3.{child.pid}"]  # too recent to be sure (another namespace)
    mine = tmp / f"4.{os.getpid()}"  # a live process's record in progress
    mine.write_bytes(b"x")
    (tmp / f"5.{10**30}").write_bytes(b"x")  # not a name of ours (no such pid): left alone
    for name in os.listdir(tmp):
        os.utime(tmp / name, (1, 1))  # written long ago
    store.on_epoch_start(2)
    assert sorted(os.listdir(tmp)) == sorted([mine.name, f"5.{10**30}"])
    assert store.put(3, 0, np.ones(4)) and np.all(store.get(3, 0) == 1)
    store.close()


def test_the_clean_up_of_dead_writers_never_follows_a_link_nor_deletes_a_directory(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("report.2024", "backup.99999"):
        (victim / name).write_text("yours")
    (victim / "project.77777").mkdir()
    (victim / "project.77777" / "main.c").write_text("int main;")
    store = SharedMemoryStore()
    tmp = store.path / "tmp"
    (tmp / "3.999999").mkdir()  # a directory planted under a dead writer's name
    (tmp / "notes.4242").write_text("not a record name")
    for name in (*os.listdir(victim), *os.listdir(tmp)):
        for where in (victim, tmp):
            if (where / name).exists():
                os.utime(where / name, (1, 1))
    store.on_epoch_start(1)
    assert sorted(os.listdir(tmp)) == ["3.999999", "notes.4242"]
    shutil.rmtree(tmp)
    os.symlink(victim, tmp)  # tmp replaced by a link to the user's files
    store.on_epoch_start(2)
    assert sorted(os.listdir(victim)) == ["backup.99999", "project.77777", "report.2024"]
    assert (victim / "project.77777" / "main.c").read_text() == "int main;"
    store.close()


@pytest.mark.parametrize("offset", [16, 60])  # the generation field, the header's padding
def test_a_flipped_header_byte_is_caught_by_the_checksum(offset: int) -> None:
    """One bit in the generation made an entry of generation 2 pass as one of generation 3."""
    store, path = _store_with(7, np.arange(100))
    data = bytearray(path.read_bytes())
    data[offset] ^= 1  # generation 0 -> 1 (or a padding bit)
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert store.get(7, 1) is MISS and store.get(7, 0) is MISS
    assert store.stats().invalid_reads >= 1
    store.close()
