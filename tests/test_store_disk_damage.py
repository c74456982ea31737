"""A disk cache damaged while a loader runs, a malformed manifest, two loaders on one directory.

Through a real :class:`~revamper.RevamperLoader` with 0 and 2 worker processes: whatever the
damage, every epoch completes and every sample equals its freshly computed value.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revamper import RevamperLoader
from revamper.distributed import DistributedSetup
from revamper.loader.store_setup import persisted_seed
from revamper.store import MISS, DiskStore
from revamper.store.manifest import MANIFEST_NAME, read_manifest
from revamper.store.ownership import CacheInUseError
from tests.helpers import IndexDataset

N, B, R = 48, 6, 3
WIDTH = 1000


def expand(x: np.ndarray) -> np.ndarray:
    """A deterministic partial transform: sample i always gives the same 8 KB array."""
    return np.concatenate([x, x * 3 + 1, np.arange(WIDTH, dtype=np.int64) + x])


class ShiftedDataset(IndexDataset):
    """Another data set of the same length: item i is ``(array([i + shift]), i)``."""

    def __init__(self, size: int, shift: int) -> None:
        super().__init__(size)
        self.shift = shift

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        data, label = super().__getitem__(index)
        return data + self.shift, label


def loader(cache_dir: Path, workers: int, dataset: Any = None, **kwargs: Any) -> RevamperLoader:
    return RevamperLoader(
        dataset if dataset is not None else IndexDataset(N),
        batch_size=B,
        shuffle=True,
        partial_transform=expand,
        reuse_factor=R,
        cache="disk",
        cache_dir=cache_dir,
        num_workers=workers,
        **{"seed": 3, **kwargs},
    )


def check_epoch(load: RevamperLoader, shift: int = 0) -> int:
    """Run one epoch; assert every sample is what ``expand`` computes; returns samples seen."""
    seen = 0
    for data, labels in load:
        for row, label in zip(data.numpy(), labels.tolist(), strict=True):
            np.testing.assert_array_equal(row, expand(np.array([label + shift])))
            seen += 1
    return seen


def flip_random_bytes(directory: Path, rng: np.random.Generator, per_file: int) -> int:
    """XOR random bytes of every file under ``directory`` with random non-zero values."""
    files = 0
    for root, _, names in os.walk(directory):
        for name in names:
            path = Path(root) / name
            size = path.stat().st_size
            if size == 0:
                continue
            fd = os.open(path, os.O_RDWR)
            try:
                for offset in rng.integers(0, size, per_file):
                    old = os.pread(fd, 1, int(offset))
                    os.pwrite(fd, bytes([old[0] ^ int(rng.integers(1, 256))]), int(offset))
            finally:
                os.close(fd)
            files += 1
    return files


# -- item 5: damage while running ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_random_damage_to_every_file_between_epochs_never_fails_nor_serves_wrong_data(
    tmp_path: Path, workers: int
) -> None:
    rng = np.random.default_rng(20261201 + workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damaged entries are warned about; that is fine
        with loader(tmp_path, workers) as load:
            assert check_epoch(load) == N
            for _ in range(2 * R + 1):
                files = flip_random_bytes(tmp_path, rng, per_file=24)
                assert files >= 5  # index, counters, locks, manifest, segments
                assert check_epoch(load) == N


@pytest.mark.parametrize("workers", [0, 2])
def test_damaged_slots_and_counters_are_misses_and_rebuilt(
    tmp_path: Path, workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with loader(tmp_path, workers) as load:
            assert check_epoch(load) == N
            (tmp_path / "index").write_bytes(os.urandom(N * 32))  # every slot garbage
            (tmp_path / "counters").write_bytes(b"\xff" * 8 * 7)  # huge next_segment
            with caplog.at_level(logging.WARNING, logger="revamper.store.disk"):
                assert check_epoch(load) == N
                assert check_epoch(load) == N
            assert any("damaged counters" in r.getMessage() for r in caplog.records)


# -- item 7: a malformed manifest ----------------------------------------------------------------
MALFORMED: dict[str, Callable[[Any], Any]] = {
    "fingerprint-a-list": lambda m: {**m, "fingerprint": [1, 2]},
    "fingerprint-a-string": lambda m: {**m, "fingerprint": "seed"},
    "not-an-object": lambda m: [m],
    "num_samples-a-string": lambda m: {**m, "num_samples": str(m["num_samples"])},
    "huge-num_samples": lambda m: {**m, "num_samples": 10**300},
    "huge-seed": lambda m: {**m, "fingerprint": {**m["fingerprint"], "seed": 10**300}},
    "negative-version": lambda m: {**m, "format_version": -(2**70)},
    "run_id-missing": lambda m: {k: v for k, v in m.items() if k != "run_id"},
    "run_id-not-hex": lambda m: {**m, "run_id": "zz" * 16},
    "null": lambda m: None,
}
RAW = {
    "invalid-json": b'{"format": "revamper-disk-cache",',
    "not-utf8": b'{"format": "\xff\xfe revamper"}',
    "deeply-nested": b"[" * 100_000 + b"]" * 100_000,
    "huge-integer-text": b'{"num_samples": ' + b"9" * 10_000 + b"}",
    "empty": b"",
}


@pytest.mark.parametrize("kind", [*MALFORMED, *RAW])
def test_a_malformed_manifest_resets_the_cache_with_a_message(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with loader(tmp_path, 0) as load:
        check_epoch(load)
        assert load.store is not None and load.store.stats().entries > 0
    manifest_path = tmp_path / MANIFEST_NAME
    if kind in MALFORMED:
        manifest_path.write_text(json.dumps(MALFORMED[kind](json.loads(manifest_path.read_text()))))
    else:
        manifest_path.write_bytes(RAW[kind])
    with caplog.at_level(logging.WARNING):
        assert persisted_seed(tmp_path, {}, DistributedSetup()) is None
        with loader(tmp_path, 0) as load:
            assert load.store is not None and load.store.stats().entries == 0  # reset
            assert check_epoch(load) == N
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "discarding" in messages and len(messages) < 5000  # said why, briefly
    if kind != "huge-seed":  # well-formed, only for another seed
        assert "malformed cache manifest" in messages


# -- item 3: two loaders on one directory; records of another incarnation -----------------------
@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_a_second_loader_on_the_same_directory_is_a_clear_error(
    tmp_path: Path, workers: int
) -> None:
    with loader(tmp_path, workers, cache_key="first") as first:
        assert check_epoch(first) == N
        with pytest.raises(CacheInUseError, match=f"in use by process {os.getpid()}"):
            loader(tmp_path, workers, ShiftedDataset(N, 1000), cache_key="second")
        for _ in range(R):
            assert check_epoch(first) == N  # still its own samples
    with loader(tmp_path, workers, ShiftedDataset(N, 1000), cache_key="second") as second:
        assert check_epoch(second, shift=1000) == N  # free once the first is closed


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_records_of_another_incarnation_are_never_served_through_a_loader(
    tmp_path: Path, workers: int
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    with loader(cache, workers, cache_key="first") as first:
        assert check_epoch(first) == N
    backup = tmp_path / "first"
    shutil.copytree(cache, backup)
    other = ShiftedDataset(N, 1000)
    with loader(cache, workers, other, cache_key="second") as second:  # a reset, a new run id
        assert check_epoch(second, shift=1000) == N
    shutil.copy2(backup / "index", cache / "index")  # the first cache's slots and records back
    shutil.rmtree(cache / "segments")
    shutil.copytree(backup / "segments", cache / "segments")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with loader(cache, workers, other, cache_key="second") as again:
            for _ in range(R + 1):
                assert check_epoch(again, shift=1000) == N
    store = DiskStore(cache, num_samples=N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert all(v is MISS or v[0] >= 1000 for v in store.get_many(range(N), [0] * N))
    store.close()


@pytest.mark.slow
def test_a_manifest_damaged_mid_run_is_written_back_so_new_workers_keep_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with loader(tmp_path, 2) as load:
            assert check_epoch(load) == N
            (tmp_path / MANIFEST_NAME).write_bytes(b"\xff garbage")
            with caplog.at_level(logging.WARNING, logger="revamper.store.disk"):
                assert check_epoch(load) == N
            assert any("written back" in r.getMessage() for r in caplog.records)
            assert read_manifest(tmp_path) is not None
            assert load.stats[1].unplanned_misses == 0  # the workers kept using the cache
