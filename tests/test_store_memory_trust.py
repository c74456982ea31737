"""The shared-memory store trusts only what its own user wrote: ownership, modes, run identity.

Run as root (as CI does), the tests give files to another uid with ``os.chown`` and run a child
as ``nobody`` (uid 65534) with ``os.setuid``; they skip where that is impossible.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import pickle
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revamper.errors import PickleNotAllowedError
from revamper.store import MISS, SharedMemoryStore, memory_dir, record
from revamper.store.codec import encode
from revamper.store.permissions import UnsafeCacheError

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A sticky, world-writable directory on the tmpfs, like ``/dev/shm`` itself."""
    base = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="rvtest-", dir=base))
    root.chmod(0o1777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _touch(path: str) -> None:
    Path(path).touch()


class _Planted:
    """Unpickling it creates a file: stands for code an attacker wants run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.marker,))


# -- the layout the owner creates ---------------------------------------------------------


def test_everything_the_store_creates_is_private_whatever_the_umask() -> None:
    previous = os.umask(0)
    try:
        store = SharedMemoryStore()
        store.put(5, 0, np.zeros(10))
        store.put(5000, 0, np.zeros(10))  # a second shard directory
    finally:
        os.umask(previous)
    try:
        modes = {store.path: stat.S_IMODE(os.lstat(store.path).st_mode)}
        for directory, dirs, files in os.walk(store.path):
            for name in dirs + files:
                path = Path(directory, name)
                modes[path] = stat.S_IMODE(os.lstat(path).st_mode)
        wrong = {str(p): oct(m) for p, m in modes.items() if m != (0o700 if p.is_dir() else 0o600)}
        assert wrong == {}
    finally:
        store.close()


@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_a_root_others_may_write_is_refused_unless_sticky(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "scratch"
    root.mkdir()
    root.chmod(mode)
    with pytest.raises(UnsafeCacheError, match=f"{mode:04o}.*not sticky"):
        SharedMemoryStore(directory=root)
    assert list(root.iterdir()) == []
    root.chmod(mode | stat.S_ISVTX)  # like /dev/shm and /tmp: fine
    with SharedMemoryStore(directory=root) as store:
        assert store.put(0, 0, 1) and store.get(0, 0) == 1


def test_a_root_below_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # not sticky: anyone may rename "mine" and put their own in its place
    root = shared / "mine"
    root.mkdir(mode=0o700)
    with pytest.raises(UnsafeCacheError, match=r"shared.*not sticky"):
        SharedMemoryStore(directory=root)
    assert list(root.iterdir()) == []


@needs_root
def test_a_root_of_another_user_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "theirs"
    root.mkdir(mode=0o755)
    os.chown(root, NOBODY, -1)
    with pytest.raises(UnsafeCacheError, match="another user"):
        SharedMemoryStore(directory=root)


# -- attach applies the owner and mode rule ------------------------------------------------


@needs_root
def test_attach_refuses_a_directory_of_another_user() -> None:
    with SharedMemoryStore() as store:
        os.chown(store.path, NOBODY, -1)
        with pytest.raises(UnsafeCacheError) as caught:
            SharedMemoryStore.attach(store.path)
        message = str(caught.value)
        assert str(store.path) in message and f"uid {NOBODY}" in message and "0700" in message
        assert "chown" in message  # says what to do
        os.chown(store.path, os.geteuid(), -1)


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o722])
def test_attach_refuses_a_directory_others_may_write(mode: int) -> None:
    with SharedMemoryStore() as store:
        store.path.chmod(mode)
        with pytest.raises(UnsafeCacheError, match=f"mode {mode:04o}"):
            SharedMemoryStore.attach(store.path)
        store.path.chmod(0o700)
        assert SharedMemoryStore.attach(store.path).get(0, 0) is MISS


@pytest.mark.parametrize("name", ["settings.json", "counters", "lock", "owner.lock", "data", "tmp"])
@pytest.mark.parametrize("damage", ["other-user", "group-writable", "symlink"])
def test_attach_refuses_a_planted_or_loosened_file(name: str, damage: str) -> None:
    if damage == "other-user" and os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    with SharedMemoryStore() as store:
        path = store.path / name
        if damage == "other-user":
            os.chown(path, NOBODY, -1)
        elif damage == "group-writable":
            path.chmod(0o770 if path.is_dir() else 0o660)
        else:
            moved = store.path / f"{name}.moved"
            path.rename(moved)
            path.symlink_to(moved)
        with pytest.raises(UnsafeCacheError, match=str(path)):
            SharedMemoryStore.attach(store.path)


def _plant_a_store_as_nobody(root: str, marker: str, conn: Any, hold: Any) -> None:
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    store = SharedMemoryStore(directory=root, allow_pickle=True)
    store.put(0, 0, _Planted(marker))
    conn.send(str(store.path))
    hold.wait(60)
    store.close()


@needs_root
@pytest.mark.slow
def test_attach_refuses_a_store_planted_by_another_user(shared_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "planted-code-ran"
    ctx = mp.get_context("fork")
    (receiver, sender), hold = ctx.Pipe(duplex=False), ctx.Event()
    child = ctx.Process(
        target=_plant_a_store_as_nobody, args=(str(shared_root), str(marker), sender, hold)
    )
    child.start()
    try:
        assert receiver.poll(60)
        planted = Path(receiver.recv())
        assert os.lstat(planted).st_uid == NOBODY
        with pytest.raises(UnsafeCacheError, match="another user"):
            SharedMemoryStore.attach(planted)
        # A store of our own in the same directory never sweeps nor reads the planted one.
        with SharedMemoryStore(directory=shared_root) as ours:
            assert ours.get(0, 0) is MISS
        assert planted.exists()
    finally:
        hold.set()
        child.join(60)
    assert child.exitcode == 0
    assert not marker.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"budget_bytes": -1},
        {"budget_bytes": "10"},
        {"reserve_bytes": 2**80},
        {"reserve_bytes": None},
        {"checksum": 1},
        {"allow_pickle": "yes"},
        {"run_id": "00" * 16},
        {"run_id": "ab" * 8},
        {"run_id": "zz" * 16},
        {"extra": 1},
    ],
)
def test_attach_refuses_malformed_settings(change: dict[str, Any]) -> None:
    with SharedMemoryStore() as store:
        file = store.path / "settings.json"
        settings = json.loads(file.read_text())
        settings.update(change)
        file.write_text(json.dumps(settings))
        with pytest.raises(ValueError, match="unreadable settings"):
            SharedMemoryStore.attach(store.path)


@pytest.mark.parametrize("text", ["[1, 2]", "{", "\xff", "x" * 70_000])
def test_attach_refuses_unreadable_settings(text: str) -> None:
    with SharedMemoryStore() as store:
        (store.path / "settings.json").write_bytes(text.encode("latin-1"))
        with pytest.raises(ValueError, match="unreadable settings"):
            SharedMemoryStore.attach(store.path)


# -- the sweep never touches what another user planted ---------------------------------------


def _unlocked_store_like(path: Path) -> None:
    path.mkdir(mode=0o700)
    (path / "owner.lock").touch(mode=0o600)  # nobody holds it: looks abandoned
    (path / "keep").write_text("data")


@needs_root
def test_the_sweep_never_removes_or_follows_what_others_planted(shared_root: Path) -> None:
    victim = shared_root / "victim"
    _unlocked_store_like(victim)
    link = shared_root / "revamper-11-link"
    link.symlink_to(victim)
    theirs = shared_root / "revamper-12-theirs"
    _unlocked_store_like(theirs)
    for path in (theirs, theirs / "owner.lock", theirs / "keep"):
        os.chown(path, NOBODY, NOBODY)
    loose = shared_root / "revamper-13-loose"  # ours, but others could have written into it
    _unlocked_store_like(loose)
    loose.chmod(0o777)
    lock_link = shared_root / "revamper-14-locklink"  # ours, its lock a link to another file
    lock_link.mkdir(mode=0o700)
    (lock_link / "owner.lock").symlink_to(victim / "keep")
    fifo = shared_root / "revamper-15-fifo"
    os.mkfifo(fifo)
    abandoned = shared_root / "revamper-16-abandoned"
    _unlocked_store_like(abandoned)

    with SharedMemoryStore(directory=shared_root):  # sweeps on creation
        pass
    assert not abandoned.exists()  # the one truly abandoned store of ours
    assert (victim / "keep").read_text() == "data" and (victim / "owner.lock").exists()
    assert link.is_symlink() and (theirs / "keep").exists() and (loose / "keep").exists()
    assert (lock_link / "owner.lock").is_symlink() and fifo.exists()


# -- pickle policy ----------------------------------------------------------------------------


class _Opaque:
    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Opaque) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


def test_pickle_is_allowed_by_default_and_travels_to_attached_instances() -> None:
    with SharedMemoryStore() as store:
        assert store.allow_pickle
        with pytest.warns(RuntimeWarning, match="pickle"):
            assert store.put(0, 0, _Opaque(3))
        assert store.get(0, 0) == _Opaque(3)
        for other in (pickle.loads(pickle.dumps(store)), SharedMemoryStore.attach(store.path)):
            assert other.allow_pickle and other.get(0, 0) == _Opaque(3)


def _put_opaque(store: SharedMemoryStore, conn: Any) -> None:
    try:
        store.put(1, 0, _Opaque(1))
        conn.send(("stored", store.allow_pickle))
    except PickleNotAllowedError as exc:
        conn.send(("refused", exc.type_name))


@pytest.mark.slow
def test_allow_pickle_false_refuses_and_never_unpickles_in_any_process() -> None:
    with SharedMemoryStore(allow_pickle=False) as store:
        assert not store.allow_pickle
        with pytest.raises(PickleNotAllowedError, match="_Opaque"):
            store.put(0, 0, _Opaque(3))
        assert not SharedMemoryStore.attach(store.path).allow_pickle
        ctx = mp.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_put_opaque, args=(store, sender))
        child.start()
        assert receiver.poll(120)
        assert receiver.recv() == ("refused", f"{__name__}._Opaque")
        child.join(60)
        # A pickled value placed in the store (here: written with its run id) reads as a miss.
        encoded = encode(_Opaque(4), allow_pickle=True)
        segments = record.record_segments(2, 0, encoded, checksum=True, run_id=store.run_id)
        shard = store.path / "data" / "0"
        shard.mkdir(mode=0o700, exist_ok=True)
        (shard / "2").write_bytes(b"".join(bytes(s) for s in segments))
        with pytest.warns(RuntimeWarning, match="allow_pickle is off"):
            assert store.get(2, 0) is MISS
        assert store.stats().invalid_reads == 1


# -- run identity -------------------------------------------------------------------------------


def test_every_store_has_its_own_run_id_shared_with_attached_instances() -> None:
    with SharedMemoryStore() as first, SharedMemoryStore() as second:
        assert len(first.run_id) == 16 and first.run_id != second.run_id
        assert pickle.loads(pickle.dumps(first)).run_id == first.run_id
        assert SharedMemoryStore.attach(first.path).run_id == first.run_id


def test_a_record_of_another_store_is_never_served() -> None:
    with SharedMemoryStore() as store, SharedMemoryStore() as other:
        store.put(3, 0, np.arange(10))
        other.put(3, 0, np.arange(10, 20))  # same index, same generation, other data
        shutil.copyfile(other._entry_path(3), store._entry_path(3))
        with pytest.warns(RuntimeWarning, match="another incarnation"):
            assert store.get(3, 0) is MISS
        assert not store.contains(3)
        assert store.stats().invalid_reads == 1


def test_a_record_without_run_id_is_refused() -> None:
    with SharedMemoryStore() as store:
        store.put(3, 0, np.arange(10))
        segments = record.record_segments(3, 0, encode(np.arange(5)), checksum=True)
        Path(store._entry_path(3)).write_bytes(b"".join(bytes(s) for s in segments))
        with pytest.warns(RuntimeWarning, match="another incarnation"):
            assert store.get(3, 0) is MISS
        assert store.stats().invalid_reads == 1


def test_a_worker_stops_caching_when_the_store_was_loosened_under_it() -> None:
    with SharedMemoryStore() as store:
        store.put(0, 0, 1)
        (store.path / "counters").chmod(0o666)
        worker = pickle.loads(pickle.dumps(store))  # what a new worker process receives
        with pytest.warns(RuntimeWarning, match="no longer safe"):
            assert not worker.put(1, 0, 1)
        assert worker.get(0, 0) == 1 and worker.get(1, 0) is MISS


def test_an_unsafe_dev_shm_is_not_used_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loose = tmp_path / "shm"
    loose.mkdir()
    loose.chmod(0o777)  # as some container runtimes mount it: no sticky bit
    monkeypatch.setattr(memory_dir, "DEFAULT_SHM_DIR", str(loose))
    with caplog.at_level(logging.WARNING):
        chosen = memory_dir.default_directory()
    assert chosen == Path(tempfile.gettempdir())
    assert any("not sticky" in r.getMessage() for r in caplog.records)


def test_a_root_reached_through_another_users_link_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "scratch"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    os.symlink(real, link)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(UnsafeCacheError, match="symbolic link made by another user"):
        SharedMemoryStore(directory=link)
    assert list(real.iterdir()) == []


def test_a_name_planted_where_the_store_renames_itself_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user who sees the hidden name while the store is built plants the final one."""
    from revamper.store import memory_dir

    root = tmp_path / "shm"
    root.mkdir()
    root.chmod(0o1777)
    suffixes = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(memory_dir.secrets, "token_hex", lambda n: next(suffixes))
    planted = root / f"revamper-{os.getpid()}-aaaa"
    planted.write_text("in the way")
    os.chown(planted, NOBODY, NOBODY)
    with SharedMemoryStore(directory=root) as store:
        assert store.path.name == f"revamper-{os.getpid()}-bbbb"
        assert store.put(0, 0, 1) and store.get(0, 0) == 1
    assert planted.read_text() == "in the way"


def test_an_attached_store_keeps_working_after_a_change_of_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SharedMemoryStore() as owner:
        assert owner.put(0, 0, 7)
        monkeypatch.chdir(owner.path.parent)
        attached = SharedMemoryStore.attach(owner.path.name)  # a relative path
        monkeypatch.chdir("/")
        assert attached.get(0, 0) == 7 and attached.path == owner.path
        attached.close()
