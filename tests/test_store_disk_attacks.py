"""The disk store under attack: planted files, links, other users, two owners, full disks.

Each test reproduces an attack of issue 11 that the store used to lose: another user's planted
cache, a symbolic link where a cache file should be, two loaders on one directory, a record of
another incarnation of the cache, a disk that fills up (``SIGBUS`` through a map), a segment
cut short under a reader. Attacks that would kill the process on old code run in a forked child,
so that the test sees the exit status instead of dying with it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import pickle
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revamper.store import MISS, DiskStore
from revamper.store.manifest import MANIFEST_NAME, read_manifest, write_manifest
from revamper.store.ownership import CacheInUseError
from revamper.store.permissions import UnsafeCacheError
from tests.helpers import record_allocations

FINGERPRINT = {"num_samples": 100, "reuse_factor": 3, "seed": 0, "partial": "crop"}
NOBODY = 65534
CACHE_FILES = ("index", "counters", "lock", "owner.lock", MANIFEST_NAME)


def disk(path: Path, **kwargs: Any) -> DiskStore:
    kwargs.setdefault("num_samples", 100)
    kwargs.setdefault("fingerprint", FINGERPRINT)
    return DiskStore(path, **kwargs)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def run_in_child(target: Callable[..., None], *args: Any) -> int | None:
    """Run ``target`` in a forked child; its exit code (negative: killed by that signal)."""
    child = mp.get_context("fork").Process(target=target, args=args)
    child.start()
    child.join(120)
    return child.exitcode


def as_nobody(target: Callable[..., None], *args: Any) -> None:
    """Run ``target`` as another user (uid 65534) in a child; skip where that is impossible."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to act as another user with setuid")

    def body() -> None:
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        target(*args)

    assert run_in_child(body) == 0


# -- item 1: ownership and modes -------------------------------------------------------------
def test_what_the_store_creates_is_private(tmp_path: Path) -> None:
    old = os.umask(0)  # the modes must not depend on the umask
    try:
        store = disk(tmp_path)
        store.put(1, 0, np.zeros(10))
    finally:
        os.umask(old)
    for name in CACHE_FILES:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((tmp_path / "segments").stat().st_mode) == 0o700
    for segment in (tmp_path / "segments").iterdir():
        assert stat.S_IMODE(segment.stat().st_mode) == 0o600
    store.close()


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    cache = private_dir(tmp_path / "cache")
    cache.chmod(mode)
    with pytest.raises(UnsafeCacheError) as caught:
        disk(cache)
    message = str(caught.value)
    assert str(cache) in message and f"mode {mode:04o}" in message and "uid" in message
    assert "chmod" in message  # says what to do
    assert list(cache.iterdir()) == []  # nothing created in it


@pytest.mark.parametrize("name", [*CACHE_FILES, "segments", "segments/00000000.seg"])
@pytest.mark.parametrize("attack", ["other-owner", "group-writable"])
def test_a_cache_file_someone_else_could_write_is_refused(
    tmp_path: Path, name: str, attack: str
) -> None:
    if attack == "other-owner" and os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    store = disk(tmp_path)
    store.put(1, 0, np.zeros(10))
    store.close()
    target = tmp_path / name
    if attack == "other-owner":
        os.chown(target, NOBODY, NOBODY)
    else:
        target.chmod(stat.S_IMODE(target.stat().st_mode) | 0o020)
    with pytest.raises(UnsafeCacheError) as caught:
        disk(tmp_path)
    message = str(caught.value)
    assert str(target) in message and "mode 0" in message
    if attack == "other-owner":
        assert f"uid {NOBODY}" in message and "another user" in message


def _plant_cache(directory: Path) -> None:
    """As the attacker: a cache in a world-writable directory, with a chosen seed."""
    cache = directory / "cache"
    cache.mkdir(mode=0o755)
    write_manifest(
        cache,
        {
            "format": "revamper-disk-cache",
            "format_version": 3,
            "codec_version": 2,
            "num_samples": 100,
            "fingerprint": {**FINGERPRINT, "seed": 1234},
            "run_id": "00" * 16,
        },
    )
    (cache / "index").write_bytes(b"\xff" * 3200)


def test_a_cache_planted_by_another_user_is_refused_and_its_seed_never_adopted(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    shared = Path(tempfile.mkdtemp(prefix="revamper-scratch-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shared.chmod(0o1777)  # a shared scratch directory the other user can reach
    as_nobody(_plant_cache, shared)
    planted = shared / "cache"
    assert planted.stat().st_uid == NOBODY
    with caplog.at_level(logging.WARNING):
        assert read_manifest(planted) is None  # so persisted_seed adopts nothing
    assert any("another user" in r.getMessage() for r in caplog.records)
    with pytest.raises(UnsafeCacheError, match=f"uid {NOBODY}"):
        disk(planted)
    with pytest.raises(UnsafeCacheError, match="writable by group or others"):
        disk(shared)


def test_persisted_seed_ignores_a_manifest_of_another_user(tmp_path: Path) -> None:
    from revamper.distributed import DistributedSetup
    from revamper.loader.store_setup import persisted_seed

    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    store = disk(tmp_path, fingerprint={**FINGERPRINT, "seed": 7})
    store.close()
    fingerprint = {**FINGERPRINT, "seed": 0}
    assert persisted_seed(tmp_path, fingerprint, DistributedSetup()) == 7
    os.chown(tmp_path / MANIFEST_NAME, NOBODY, NOBODY)
    assert persisted_seed(tmp_path, fingerprint, DistributedSetup()) is None


# -- item 2: no symlink games ------------------------------------------------------------------
@pytest.mark.parametrize("name", [*CACHE_FILES, "segments"])
def test_a_planted_link_is_refused_and_its_target_untouched(tmp_path: Path, name: str) -> None:
    cache = private_dir(tmp_path / "cache")
    victim = tmp_path / "thesis.tex"
    victim.write_bytes(b"years of work\n" * 100)
    if name == "segments":
        victim = private_dir(tmp_path / "photos")
        (victim / "holiday.jpg").write_bytes(b"jpeg")
    (cache / name).symlink_to(victim)
    with pytest.raises(UnsafeCacheError, match="symbolic link"):
        disk(cache)
    if name == "segments":
        assert (victim / "holiday.jpg").read_bytes() == b"jpeg"
    else:
        assert victim.read_bytes() == b"years of work\n" * 100


def test_a_link_planted_while_the_store_runs_is_never_written_through(tmp_path: Path) -> None:
    cache = private_dir(tmp_path / "cache")
    store = disk(cache, segment_bytes=1)  # every put opens a new segment
    store.put(0, 0, np.zeros(10))
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    for number in range(1, 50):  # where the next segments will be created
        (cache / "segments" / f"{number:08d}.seg").symlink_to(victim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index in range(1, 5):
            store.put(index, 0, np.zeros(10))
    assert victim.read_bytes() == b"keep me"
    store.close()


def test_the_temporary_manifest_has_an_unpredictable_name(tmp_path: Path) -> None:
    cache = private_dir(tmp_path / "cache")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    guessed = cache / f".{MANIFEST_NAME}.{os.getpid()}"  # the name it used to have
    guessed.symlink_to(victim)
    disk(cache).close()
    assert victim.read_bytes() == b"keep me"
    assert json.loads((cache / MANIFEST_NAME).read_text())["format"] == "revamper-disk-cache"
    assert [p.name for p in cache.iterdir() if p.name.endswith(".tmp")] == []


# -- item 3: exclusive use and the run identity ------------------------------------------------
def test_a_second_owner_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    first = disk(tmp_path)
    first.put(1, 0, "first")
    with pytest.raises(CacheInUseError) as caught:
        disk(tmp_path, fingerprint={**FINGERPRINT, "partial": "other"})
    assert str(tmp_path) in str(caught.value) and f"process {os.getpid()}" in str(caught.value)
    assert caught.value.pid == os.getpid()
    assert first.get(1, 0) == "first"  # untouched by the refused second store
    first.close()
    second = disk(tmp_path)  # free again
    assert second.get(1, 0) == "first"
    second.close()


def _own_for_a_while(path: Path, ready: Any, done: Any) -> None:
    store = disk(path)
    ready.set()
    done.wait(60)
    store.close()


def test_the_holders_pid_is_named_across_processes(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_own_for_a_while, args=(tmp_path, ready, done))
    child.start()
    try:
        assert ready.wait(60)
        with pytest.raises(CacheInUseError, match=f"process {child.pid}"):
            disk(tmp_path)
    finally:
        done.set()
        child.join(60)
    disk(tmp_path).close()


def test_a_record_of_another_incarnation_is_never_served(tmp_path: Path) -> None:
    cache = private_dir(tmp_path / "cache")
    old = disk(cache)
    for index in range(10):
        old.put(index, 0, np.full(100, index))
    old.close()
    backup = tmp_path / "backup"
    shutil.copytree(cache, backup)
    new = disk(cache, fingerprint={**FINGERPRINT, "partial": "other"})  # resets: a new run id
    new.close()
    # the old cache's slots and records come back (a restored backup, a stray copy): same
    # indices, same generations, valid checksums, but another incarnation
    shutil.copy2(backup / "index", cache / "index")
    shutil.rmtree(cache / "segments")
    shutil.copytree(backup / "segments", cache / "segments")
    again = disk(cache, fingerprint={**FINGERPRINT, "partial": "other"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert all(v is MISS for v in again.get_many(list(range(10)), [0] * 10))
    again.close()


def test_an_attached_copy_shares_the_cache_without_owning_it(tmp_path: Path) -> None:
    owner = disk(tmp_path)
    owner.put(1, 0, "shared")
    other_rank = DiskStore.attach(tmp_path, num_samples=100, run_id=owner.run_id)
    assert not other_rank.owner and owner.owner
    assert other_rank.get(1, 0) == "shared"
    assert other_rank.put(2, 0, "from the other rank") and owner.get(2, 0) == "from the other rank"
    with pytest.raises(ValueError, match="another incarnation"):
        DiskStore.attach(tmp_path, num_samples=100, run_id=bytes(16))
    with pytest.raises(ValueError, match="num_samples"):
        DiskStore.attach(tmp_path, num_samples=101)
    other_rank.close()
    owner.close()


# -- item 4: full disks and files cut short ----------------------------------------------------
def _run(*command: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, capture_output=True, check=False, timeout=60)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A small file system to fill: ext4 on a loop device (where the old map-based slot table
    died of ``SIGBUS``), else a 1 MiB tmpfs; root only, skipped where mounting is impossible."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    image = tmp_path / "small.img"
    with open(image, "wb") as file:
        file.truncate(8 * 2**20)
    made = (
        _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image)) if shutil.which("mkfs.ext4") else None
    )
    mounted = made is not None and made.returncode == 0
    mounted = mounted and _run("mount", "-o", "loop", str(image), str(mount_point)).returncode == 0
    if not mounted:
        result = _run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point))
        if result.returncode != 0:
            pytest.skip(f"cannot mount a file system here: {result.stderr.decode().strip()}")
    try:
        mount_point.chmod(0o700)
        yield mount_point
    finally:
        _run("umount", "-l", str(mount_point))


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\1" * 4096):
                pass
    finally:
        os.close(fd)
    return filler


def _full_at_construction(root: Path) -> None:
    fill(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = DiskStore(root, num_samples=100)
        for index in range(5):
            assert not store.put(index, 0, np.zeros(100))
            assert store.get(index, 0) is MISS
        assert store.stats().failed_puts == 5
        store.on_epoch_start(1)
        store.close()
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert "full" in str(caught[0].message)


def test_a_disk_full_at_construction_caches_nothing_with_one_warning(small_fs: Path) -> None:
    assert run_in_child(_full_at_construction, small_fs) == 0


def _full_mid_run(root: Path) -> None:
    store = DiskStore(root, num_samples=20_000)  # a 640 KB slot table
    assert store.put(0, 0, np.zeros(100))
    filler = fill(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(15_000, 15_010):  # slots on pages never touched before
            assert not store.put(index, 0, np.zeros(20_000, dtype=np.uint8))
            assert store.get(index, 0) is MISS
    assert len(caught) == 1 and "could not write" in str(caught[0].message)
    np.testing.assert_array_equal(store.get(0, 0), np.zeros(100))
    filler.unlink()
    assert store.put(15_000, 1, np.ones(100))  # training goes on once there is room
    np.testing.assert_array_equal(store.get(15_000, 1), np.ones(100))
    store.close()


def test_a_disk_that_fills_mid_run_leaves_entries_uncached_not_sigbus(small_fs: Path) -> None:
    assert run_in_child(_full_mid_run, small_fs) == 0


def _read_truncated_segment(root: Path) -> None:
    store = DiskStore(root, num_samples=10)
    image = np.arange(150_000, dtype=np.uint32).astype(np.uint8)
    for index in range(4):
        assert store.put(index, 0, image)
    assert all(v is not MISS for v in store.get_many([0, 1, 2, 3], [0] * 4))  # read once
    (segment,) = (root / "segments").iterdir()
    os.truncate(segment, 4096)  # cut short under the reader
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert all(v is MISS for v in store.get_many([0, 1, 2, 3], [0] * 4))
    store.close()


def test_a_segment_cut_short_while_open_gives_misses_not_sigbus(tmp_path: Path) -> None:
    assert run_in_child(_read_truncated_segment, tmp_path) == 0


# -- no code from a cache unless allow_pickle ----------------------------------------------------
def _touch(path: str) -> str:
    Path(path).touch()
    return "ran"


class Planted:
    """An object whose unpickling runs code (here: touches a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (str(self.marker),))


def test_a_disk_cache_never_unpickles_unless_allowed(tmp_path: Path) -> None:
    cache = private_dir(tmp_path / "cache")
    marker = tmp_path / "code-ran"
    strict = disk(cache)
    with pytest.raises(TypeError, match="allow_pickle"):
        strict.put(0, 0, Planted(marker))  # refused by default
    strict.close()
    writer = disk(cache, allow_pickle=True, fingerprint={**FINGERPRINT, "w": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert writer.put(1, 0, Planted(marker))
    writer.close()
    assert not marker.exists()
    reader = disk(cache, fingerprint=None)  # reuses the cache, allow_pickle=False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert reader.get(1, 0) is MISS
    assert not marker.exists()
    attached = pickle.loads(pickle.dumps(reader))  # a worker's copy keeps the setting
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert attached.get(1, 0) is MISS and not marker.exists()
    reader.close()
    trusting = disk(cache, fingerprint=None, allow_pickle=True)
    assert trusting.get(1, 0) == "ran" and marker.exists()  # opted in: it runs
    trusting.close()


def _use_then_wait(store: DiskStore, ready: Any, done: Any) -> None:
    store.get(0, 0)  # a forked worker's first use drops its inherited copy of the lock
    ready.set()
    done.wait(60)


def test_closing_the_owner_frees_the_directory_while_forked_workers_live(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    store = disk(tmp_path)
    worker = ctx.Process(target=_use_then_wait, args=(store, ready, done))
    worker.start()
    try:
        assert ready.wait(60)
        store.close()
        disk(tmp_path).close()  # not held by the lingering worker
    finally:
        done.set()
        worker.join(60)
    assert worker.exitcode == 0


def test_a_link_of_yours_to_the_cache_directory_is_followed(tmp_path: Path) -> None:
    real = private_dir(tmp_path / "ssd-cache")
    link = tmp_path / "cache"
    link.symlink_to(real)
    store = disk(link)
    assert store.path == real and store.put(1, 0, "x")
    store.close()
    assert (real / MANIFEST_NAME).exists()
    if os.geteuid() == 0:
        os.lchown(link, NOBODY, NOBODY)  # a link someone else planted
        with pytest.raises(UnsafeCacheError, match="symbolic link made by another user"):
            disk(link)


def test_a_reset_never_deletes_what_is_not_a_segment(tmp_path: Path) -> None:
    cache = private_dir(tmp_path / "project")  # a wrong cache_dir: a project of the user
    (cache / "segments").mkdir(mode=0o700)
    (cache / "segments" / "notes.txt").write_text("mine")
    (cache / "index").write_bytes(bytes(3200))  # an empty slot table of a crashed reset
    with pytest.raises(UnsafeCacheError, match="not a cache segment"):
        disk(cache)
    assert (cache / "segments" / "notes.txt").read_text() == "mine"
    assert (cache / "index").read_bytes() == bytes(3200)  # refused before any deletion


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("reset-in-progress", b"a note of mine\n"),
        ("index", b"the project's index\n"),
        ("index", bytes(range(32)) * 4),
        ("counters", b"x" * 9),
        ("counters", b"x" * 16),
        ("counters", b"0123456789abcdef" * 3 + b"notes!\n\n"),  # 56 bytes, like ours
    ],
)
def test_a_reset_without_a_manifest_never_deletes_a_users_file(
    tmp_path: Path, name: str, content: bytes
) -> None:
    cache = private_dir(tmp_path / "project")  # a wrong cache_dir: a project of the user
    (cache / name).write_bytes(content)
    with pytest.raises(UnsafeCacheError, match=rf"{name}.*not a revamper"):
        disk(cache)
    assert (cache / name).read_bytes() == content


@pytest.mark.parametrize("damage", ["none", "slot", "cut"])
def test_a_reset_half_done_is_recognised_and_finished(tmp_path: Path, damage: str) -> None:
    cache = private_dir(tmp_path / "cache")
    store = disk(cache)
    assert store.put(3, 0, b"x" * 100)
    store.close()
    # A crash in a reset: the marker written, the manifest removed, the old files still there.
    marker = cache / "reset-in-progress"
    marker.write_bytes(b"revamper: a reset of this disk cache is in progress\n")
    marker.chmod(0o600)
    (cache / MANIFEST_NAME).unlink()
    with open(cache / "index", "r+b") as index:
        if damage == "slot":
            index.seek(3 * 32)
            index.write(b"\xff" * 8)
        elif damage == "cut":
            index.truncate(3 * 32 + 7)
    store = disk(cache)
    assert store.get(3, 0) is MISS
    assert store.put(3, 0, b"y" * 100) and store.get(3, 0) == b"y" * 100
    store.close()
    assert not (cache / "reset-in-progress").exists()


def test_a_cache_that_lost_its_manifest_and_a_slot_is_refused_with_what_to_do(
    tmp_path: Path,
) -> None:
    cache = private_dir(tmp_path / "cache")
    store = disk(cache)
    assert store.put(3, 0, b"x" * 100)
    store.close()
    (cache / MANIFEST_NAME).unlink()  # not by a reset of ours: no marker
    with open(cache / "index", "r+b") as index:
        index.seek(3 * 32)
        index.write(b"\xff" * 8)
    with pytest.raises(UnsafeCacheError, match="manifest was lost, delete its index"):
        disk(cache)
    assert (cache / "index").stat().st_size == 100 * 32  # nothing deleted


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757])
def test_a_cache_below_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)  # not sticky: anyone may rename "mine" and put a link in its place
    cache = private_dir(private_dir(shared / "mine") / "cache")
    with pytest.raises(UnsafeCacheError, match=r"shared.*not sticky"):
        disk(cache)
    shared.chmod(mode | stat.S_ISVTX)
    disk(cache).close()  # sticky, like /tmp: only the owner may rename "mine"


def test_a_cache_below_another_users_directory_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    cache = private_dir(theirs / "cache")
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafeCacheError, match=r"theirs.*belongs to another user"):
        disk(cache)


@pytest.mark.parametrize("name", ["index", "counters", "lock"])
def test_a_link_swapped_into_a_valid_cache_is_refused_and_its_target_untouched(
    tmp_path: Path, name: str
) -> None:
    cache = private_dir(tmp_path / "cache")
    store = disk(cache)
    store.put(1, 0, "x")
    store.close()
    victim = tmp_path / "thesis.tex"
    victim.write_bytes(b"years of work\n" * 10)  # another size than the cache file
    (cache / name).unlink()
    (cache / name).symlink_to(victim)
    with pytest.raises(UnsafeCacheError, match="symbolic link"):
        disk(cache)  # the manifest matches: the old store reused, truncated and wrote it
    assert victim.read_bytes() == b"years of work\n" * 10


# -- found in review: planted FIFOs, directories and hard links; the memory store's sweep --------
_FIFO_MANIFEST = """
import os, sys
import numpy as np
from revamper import RevamperLoader
from revamper.errors import UnsafeCacheError
d = sys.argv[1]
os.mkfifo(os.path.join(d, "revamper-cache.json"), 0o600)
try:
    loader = RevamperLoader([np.zeros(2)] * 8, batch_size=4, cache="disk", cache_dir=d)
    print("built", sum(1 for _ in loader))
    loader.close()
except UnsafeCacheError as exc:
    print("refused", exc)
"""


def test_a_fifo_planted_as_the_manifest_does_not_hang_the_loader(tmp_path: Path) -> None:
    # Before, opening it for reading waited for a writer forever.
    result = subprocess.run(
        [sys.executable, "-c", _FIFO_MANIFEST, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(("built", "refused")), result.stdout


def test_a_directory_planted_as_a_segment_does_not_stop_the_epochs_or_a_reset(
    tmp_path: Path,
) -> None:
    store = disk(tmp_path)
    assert store.put(0, 0, np.arange(10))
    (tmp_path / "segments" / "00000042.seg").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store.on_epoch_start(1)  # was IsADirectoryError out of the segment sweep
    assert (store.get(0, 0) == np.arange(10)).all()
    store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = disk(tmp_path, fingerprint={"another": "run"})  # a reset removes it
    assert not (tmp_path / "segments" / "00000042.seg").exists()
    again.close()


def test_a_cache_file_with_another_hard_link_is_never_written_through(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir(mode=0o700)
    store = disk(tmp_path / "cache")
    store.close()
    precious = tmp_path / "precious"
    precious.write_bytes(b"keep me")
    os.unlink(tmp_path / "cache" / "counters")
    os.link(precious, tmp_path / "cache" / "counters")
    with contextlib.suppress(UnsafeCacheError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reopened = disk(tmp_path / "cache")
        reopened.put(1, 0, np.arange(10))
        reopened.close()
    assert precious.read_bytes() == b"keep me"


def test_the_memory_stores_sweep_leaves_a_disk_cache_named_revamper(tmp_path: Path) -> None:
    # Before, a closed disk cache at <root>/revamper-cache had an unlocked owner.lock, so a
    # memory store made in <root> removed it as an abandoned memory store.
    from revamper.store import SharedMemoryStore

    (tmp_path / "revamper-cache").mkdir(mode=0o700)
    store = disk(tmp_path / "revamper-cache")
    assert store.put(0, 0, np.arange(10))
    store.close()
    SharedMemoryStore(directory=tmp_path).close()
    assert (tmp_path / "revamper-cache" / MANIFEST_NAME).exists()
    reopened = disk(tmp_path / "revamper-cache")
    assert (reopened.get(0, 0) == np.arange(10)).all()
    reopened.close()


def test_a_forged_slot_length_is_a_miss_without_reading_gigabytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from revamper.store import segments
    from revamper.store.slots import Slot, SlotTable

    cache = private_dir(tmp_path / "cache")
    store = disk(cache)
    assert store.put(5, 0, b"x" * 1000)
    table = SlotTable(cache / "index", 100)
    (slot,) = table.read_many([5])
    assert slot is not None
    # Slots carry a check word, but it is no secret: a forger recomputes it (Slot.write does).
    table.write(5, Slot(slot.generation, slot.offset, 2**32 - 1, slot.segment))
    table.close()
    asked = record_allocations(monkeypatch, segments)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert store.get(5, 0) is MISS
    assert max(asked, default=0) < 2**20  # nothing beyond the segment's end was allocated
    store.close()


def test_a_record_that_takes_several_reads_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ``preadv`` moves at most about 2 GiB, so a larger record needs a loop: simulated."""
    from revamper.store import segments

    cache = private_dir(tmp_path / "cache")
    store = disk(cache)
    value = np.arange(50_000, dtype=np.int64)
    assert store.put(7, 0, value)
    real_preadv = os.preadv

    def short_preadv(fd: int, views: list[memoryview], offset: int) -> int:
        return real_preadv(fd, [views[0][:4096]], offset)  # at most 4 KiB a call

    monkeypatch.setattr(segments.os, "preadv", short_preadv)
    np.testing.assert_array_equal(store.get(7, 0), value)
    store.close()


def test_damaged_counters_do_not_let_the_cache_outgrow_its_budget(tmp_path: Path) -> None:
    from revamper.store.counters import Counters

    cache = private_dir(tmp_path / "cache")
    budget = 20_000
    store = disk(cache, budget_bytes=budget)
    assert store.put(0, 0, b"x" * 1000)
    counters = Counters(cache, ("next_segment",))
    with counters.locked():
        counters.set("bytes", -(10**12))  # damaged mid-epoch: far below what is stored
    counters.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = sum(bool(store.put(i, 0, b"y" * 1000)) for i in range(1, 100))
    assert 0 < stored < 20
    assert store.stats().bytes_used <= budget
    store.close()


def test_a_link_of_another_user_on_the_way_to_the_cache_is_refused(tmp_path: Path) -> None:
    mine = private_dir(tmp_path / "mine")
    cache = private_dir(mine / "cache")
    link = tmp_path / "shortcut"
    os.symlink(mine, link)
    os.lchown(link, NOBODY, NOBODY)  # they could point it at another directory of yours later
    with pytest.raises(UnsafeCacheError, match=r"shortcut.*symbolic link made by another user"):
        disk(link / "cache")
    os.lchown(link, os.geteuid(), os.getegid())  # your own link: followed
    store = disk(link / "cache")
    assert store.path == cache  # and the real path is used from then on
    store.close()


def test_your_link_inside_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    cache = private_dir(private_dir(tmp_path / "mine") / "cache")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may replace the link
    os.symlink(tmp_path / "mine", shared / "link")
    with pytest.raises(UnsafeCacheError, match=r"shared.*not sticky"):
        disk(shared / "link" / "cache")
    assert os.listdir(cache) == []


def test_trusting_the_parent_directories_is_an_explicit_opt_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "volume"
    shared.mkdir()
    os.chown(shared, 1000, 1000)  # a container run as root on a volume of the host's user
    cache = private_dir(shared / "cache")
    with pytest.raises(UnsafeCacheError, match="REVAMPER_TRUST_PARENT_DIRS=1"):
        disk(cache)
    monkeypatch.setenv("REVAMPER_TRUST_PARENT_DIRS", "1")
    disk(cache).close()
    link = tmp_path / "their-link"
    os.symlink(cache, link)
    os.lchown(link, NOBODY, NOBODY)  # the parents are trusted, not another user's link
    with pytest.raises(UnsafeCacheError, match="symbolic link made by another user"):
        disk(link)
    mine = tmp_path / "my-link"
    os.symlink(link, mine)  # my link to their link: the whole chain is checked
    with pytest.raises(UnsafeCacheError, match=r"their-link.*symbolic link made by another user"):
        disk(mine)
    cache.chmod(0o777)  # the cache directory itself is still checked
    with pytest.raises(UnsafeCacheError, match="writable by group or others"):
        disk(cache)


def test_a_group_writable_directory_of_your_private_group_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """umask 002 with user private groups: ~/project is 0775, group = the user's own."""
    import grp
    import pwd

    from revamper.store import path_chain

    project = tmp_path / "project"
    project.mkdir()
    os.chown(project, os.geteuid(), 4242)
    project.chmod(0o775)
    cache = private_dir(project / "cache")
    me = pwd.struct_passwd(("alice", "x", os.geteuid(), 4242, "", "/home/alice", "/bin/sh"))
    groups = {4242: grp.struct_group(("alice", "x", 4242, []))}
    monkeypatch.setattr(path_chain.pwd, "getpwuid", lambda uid: me)
    monkeypatch.setattr(path_chain.grp, "getgrgid", lambda gid: groups[gid])
    disk(cache).close()
    bob = pwd.struct_passwd(("bob", "x", 4243, 4242, "", "/home/bob", "/bin/sh"))
    monkeypatch.setattr(path_chain.pwd, "getpwall", lambda: [me, bob])  # alice's group, primary
    with pytest.raises(UnsafeCacheError, match=r"project.*not sticky"):
        disk(cache)
    monkeypatch.setattr(path_chain.pwd, "getpwall", lambda: [me])
    disk(cache).close()
    groups[4242] = grp.struct_group(("alice", "x", 4242, ["bob"]))  # bob listed in the group
    with pytest.raises(UnsafeCacheError, match=r"project.*not sticky"):
        disk(cache)
    groups[4242] = grp.struct_group(("alice", "x", 4242, []))
    # An access control list naming bob shows as the group bits (its mask): 0775 all the same.
    acl = b"\x02\x00\x00\x00" + b"".join(
        tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + uid.to_bytes(4, "little")
        for tag, perm, uid in (
            (0x01, 7, 0),
            (0x02, 7, 4243),
            (0x04, 5, 0),
            (0x10, 7, 0),
            (0x20, 5, 0),
        )
    )
    monkeypatch.setattr(path_chain.os, "getxattr", lambda path, name, **kw: acl)
    with pytest.raises(UnsafeCacheError, match=r"project.*not sticky"):
        disk(cache)


def test_a_users_file_called_owner_lock_is_never_overwritten(tmp_path: Path) -> None:
    project = private_dir(tmp_path / "project")  # a wrong cache_dir
    (project / "owner.lock").write_text("remember: the lock code is 4711\n")
    with pytest.raises(UnsafeCacheError, match="not a revamper owner lock"):
        disk(project)
    assert (project / "owner.lock").read_text() == "remember: the lock code is 4711\n"
    cache = private_dir(tmp_path / "cache")
    (cache / "owner.lock").write_text("12345\n")  # what a store of ours leaves: reused
    disk(cache).close()


def test_damaged_statistics_never_read_negative(tmp_path: Path) -> None:
    from revamper.store.counters import Counters

    cache = private_dir(tmp_path / "cache")
    store = disk(cache)
    counters = Counters(cache, ("next_segment",))
    with counters.locked():
        counters.set("invalid", -(10**18))
        counters.set("rejected", -1)
    counters.close()
    stats = store.stats()
    assert stats.invalid_reads == 0 and stats.rejected_puts == 0
    store.close()


def test_a_cache_of_another_codec_version_is_reset_even_without_a_fingerprint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = private_dir(tmp_path / "cache")
    store = DiskStore(cache, num_samples=10)
    assert store.put(1, 0, b"x" * 100)
    store.close()
    found = read_manifest(cache)
    assert found is not None
    write_manifest(cache, {**found, "codec_version": found["codec_version"] - 1})
    with caplog.at_level(logging.WARNING, logger="revamper.store.disk"):
        store = DiskStore(cache, num_samples=10)
    assert any("codec_version" in r.getMessage() for r in caplog.records)
    assert store.get(1, 0) is MISS and store.stats().invalid_reads == 0  # reset, not damaged
    store.close()


def test_a_reset_marker_left_next_to_a_valid_manifest_is_removed(tmp_path: Path) -> None:
    cache = private_dir(tmp_path / "cache")
    disk(cache).close()
    (cache / "reset-in-progress").touch(mode=0o600)  # a crash between the manifest and this
    disk(cache).close()
    assert not (cache / "reset-in-progress").exists()
