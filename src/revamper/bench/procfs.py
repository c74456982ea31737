"""Figures about a process and all its descendants (the loader's workers), read from ``/proc``.

Memory, sampled in a thread for its peak: resident set sizes double-count the pages that forked
workers share with their parent (torch's libraries alone are hundreds of MB), so this sums each
process's *proportional* set size (PSS, from ``/proc/<pid>/smaps_rollup``), in which a shared page
is split between its users. Memory on a tmpfs that nobody maps (the memory store's record files)
is not in any process's PSS, so callers add the cache's own byte count.

Disk reads: ``read_bytes`` of ``/proc/<pid>/io`` counts what the block device delivered, so
page-cache hits do not count.

Linux only; elsewhere the figures are ``None``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        out.extend(int(child) for child in text.split())
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    found = [root]
    stack = [root]
    while stack:
        for child in _children(stack.pop()):
            found.append(child)
            stack.append(child)
    return found


def pss_bytes(pid: int) -> int | None:
    """The proportional set size of ``pid`` in bytes, or ``None`` if it cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            for line in file:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def tree_pss_bytes(root: int | None = None) -> int | None:
    """Sum of PSS over ``root`` (default: this process) and its descendants."""
    values = [pss_bytes(pid) for pid in process_tree(root or os.getpid())]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def read_bytes(pid: int) -> int | None:
    """Bytes ``pid`` made the storage layer fetch (``read_bytes`` of ``/proc/<pid>/io``)."""
    try:
        with open(f"/proc/{pid}/io") as file:
            for line in file:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def tree_read_bytes(root: int | None = None) -> int | None:
    """Sum of :func:`read_bytes` over ``root`` (default: this process) and its descendants.

    Page-cache hits are not counted: this is what came from the block device. Processes that
    exited are not counted either, so compare it over periods where the workers persist.
    """
    values = [read_bytes(pid) for pid in process_tree(root or os.getpid())]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


class PeakMemorySampler:
    """Samples :func:`tree_pss_bytes` in a daemon thread and keeps the peak.

    Use as a context manager around the work to measure; :attr:`peak_bytes` is ``None`` where
    ``/proc`` has no ``smaps_rollup`` (not Linux).

    Args:
        interval: Seconds between samples.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample now."""
        value = tree_pss_bytes()
        if value is not None and (self.peak_bytes is None or value > self.peak_bytes):
            self.peak_bytes = value

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PeakMemorySampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="revamper-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
