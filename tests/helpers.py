"""Importable data sets and transforms for tests (spawned workers must be able to import them)."""

from __future__ import annotations

import gc
import os
import random
import time
from typing import Any

import numpy as np
import torch


class IndexDataset(torch.utils.data.Dataset[tuple[np.ndarray, int]]):
    """Item i is ``(array([i]), i)``: cheap, and every output can be traced to its sample."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        return np.array([index], dtype=np.int64), index


def stamp_computation(x: np.ndarray) -> np.ndarray:
    """Partial transform: append a random id of this computation (to tell entries apart)."""
    return np.concatenate([x, np.array([random.getrandbits(62)], dtype=np.int64)])


def add_pid(x: np.ndarray) -> np.ndarray:
    """Final transform: append the pid of the process that ran it."""
    return np.concatenate([x, np.array([os.getpid()], dtype=np.int64)])


class FailAt:
    """A transform that raises on one sample index (found in element 0 of the input array)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, x: Any) -> Any:
        value = int(np.asarray(x).reshape(-1)[0])
        if value == self.index:
            raise ValueError(f"deliberate failure on {value}")
        return x


class FailingDataset(IndexDataset):
    """Raises on one index at load time."""

    def __init__(self, size: int, bad: int) -> None:
        super().__init__(size)
        self.bad = bad

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if index == self.bad:
            raise OSError(f"cannot read item {index}")
        return super().__getitem__(index)


def mutate_in_place(x: Any) -> Any:
    """Final transform that writes into its input (tensor or array) and returns it."""
    if isinstance(x, torch.Tensor):
        x.add_(1000)
    else:
        x += 1000
    return x


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """Partial transform producing a tensor."""
    return torch.from_numpy(x.copy())


def shm_names() -> set[str]:
    """The /dev/shm names this test process may have left (to compare before and after).

    Cache directories and torch's segments carry the creating pid, so other processes running
    on the machine at the same time (another test run) do not disturb the comparison;
    multiprocessing's semaphores carry no pid and are all included.
    """
    pid = os.getpid()
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        return set()
    mine = (f"revamper-{pid}-", f"torch_{pid}_", "sem.")
    return {name for name in names if name.startswith(mine)}


def new_shm(before: set[str], settle: float = 10.0) -> set[str]:
    """The /dev/shm names that appeared since ``before`` and are still there after ``settle`` s.

    A spawn-context queue's semaphores are unlinked when the queue is collected, which its
    feeder thread can delay by a few milliseconds after the workers are gone; only names that
    stay are leaks.
    """
    deadline = time.monotonic() + settle
    while (left := shm_names() - before) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    return left


def record_allocations(monkeypatch: Any, module: Any) -> list[int]:
    """Record the size of every ``np.empty`` that ``module`` makes (to catch huge reads)."""
    asked: list[int] = []
    real_empty = np.empty

    def empty(size: Any, **kwargs: Any) -> Any:
        asked.append(int(size))
        return real_empty(size, **kwargs)

    monkeypatch.setattr(module.np, "empty", empty)
    return asked


class LoadLog(IndexDataset):
    """:class:`IndexDataset` that appends ``"<monotonic time> <index>"`` to ``path`` per load.

    Each load takes ``delay`` seconds first.

    The monotonic clock is the machine's, so the main process can tell when a worker loaded an
    item; a line is one ``O_APPEND`` write, whole even with several workers appending.
    """

    def __init__(self, size: int, path: str, delay: float = 0.0) -> None:
        super().__init__(size)
        self.path = path
        self.delay = delay

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        item = super().__getitem__(index)
        time.sleep(self.delay)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{time.monotonic()!r} {index}\n".encode())
        finally:
            os.close(fd)
        return item

    def loads(self) -> list[tuple[float, int]]:
        """Every load so far, as ``(time, index)``, in the order written."""
        with open(self.path) as log:
            return [(float(t), int(i)) for t, i in (line.split() for line in log)]


def slow_copy(x: np.ndarray) -> np.ndarray:
    """Partial transform: a copy that takes 3 ms (so that batches of two epochs run at once)."""
    time.sleep(0.003)
    return np.array(x, copy=True)


class FailOnce(IndexDataset):
    """:class:`IndexDataset` whose item ``bad`` fails once: while the file ``marker`` exists."""

    def __init__(self, size: int, bad: int, marker: str) -> None:
        super().__init__(size)
        self.bad = bad
        self.marker = marker

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if index == self.bad and os.path.exists(self.marker):
            os.remove(self.marker)
            raise OSError(f"cannot read item {index} (this once)")
        return super().__getitem__(index)
