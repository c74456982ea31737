"""Forked worker processes that never start: found, stopped, and forked again.

Forking a process that runs other threads is hazardous: the child gets every lock as it was at
the fork, held or not, but only the forking thread. CPython 3.11.7 and earlier (gh-112275,
fixed in 3.11.8 and 3.12) take one of the interpreter's own locks in the child right after the
fork, a lock that a native thread entering Python holds for a moment, as torch.distributed's
communication threads do around every step; a child forked at that moment never starts.
torch's ``DataLoader`` then waits for its batches for ever: the child is alive, so torch sees
no failure. (Reproduced here 11 times in 3,000 forks of a process running gloo all-reduces
with a Python callback, and once in a Lightning DDP run of the test suite.) A lock that another
thread holds at the fork and that the child takes before it starts (in a fork hook, say) does the
same.

So with the ``fork`` start method every worker writes its pid into memory shared with the
main process as it starts (:class:`StartLog`, before the user's ``worker_init_fn``), and before
an epoch's first batch is waited for, every worker forked for it must have done so (which the
first batch needs anyway). One that has not after :data:`START_DEADLINE_S` is stuck (a fork
takes milliseconds): the ``DataLoader`` iterator is dropped (torch stops its workers), the
stuck process is killed, and the iterator is made again. Nothing of the epoch had been
delivered and the sampler's tickets are a pure function of the epoch, so the batches are the
same ones; misses a healthy worker had computed are computed again, identically.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from typing import Any

import torch.multiprocessing
from torch.utils.data import DataLoader

logger = logging.getLogger(__name__)

START_DEADLINE_S = 10.0
"""How long a forked worker may take to start before it counts as stuck (a fork takes
milliseconds; a stuck one never starts, and costs this long once)."""

MAX_RESTARTS = 2
"""Forks made again for one epoch at most; after that the loader waits as torch does."""

_POLL_S = 0.002


class StartLog:
    """One slot per worker, in memory that forked workers share: each worker's pid as it starts.

    Made in the main process with the ``DataLoader``; a copy (``copy.deepcopy`` of a loader,
    or the pickling of the spawn and forkserver start methods) gets fresh slots of its own.

    Args:
        num_workers: The ``DataLoader``'s worker count.
    """

    def __init__(self, num_workers: int) -> None:
        self.num_workers = num_workers
        self._pids: Any = multiprocessing.RawArray("q", num_workers)

    def __reduce__(self) -> tuple[Any, ...]:
        return (StartLog, (self.num_workers,))

    def record(self, worker_id: int) -> None:
        """In worker ``worker_id``, as it starts: its pid goes in its slot."""
        if 0 <= worker_id < self.num_workers:
            self._pids[worker_id] = os.getpid()

    def clear(self) -> None:
        """Empty every slot (before a fork)."""
        for slot in range(self.num_workers):
            self._pids[slot] = 0

    def started(self) -> set[int]:
        """The pids of the workers that have started since the last :meth:`clear`."""
        return {pid for pid in self._pids if pid}


def start_method(dataloader: DataLoader[Any]) -> str:
    """The start method ``dataloader``'s worker processes get (torch's default when unset)."""
    context = dataloader.multiprocessing_context
    if context is None:
        return str(torch.multiprocessing.get_start_method())
    return str(context.get_start_method())


class ForkWatch:
    """The worker processes that one ``iter(dataloader)`` forks, and whether they all started.

    Args:
        log: The slots the ``DataLoader``'s workers write to.
        before: The pids of this process's children before the ``iter()``.
    """

    def __init__(self, log: StartLog, before: set[int]) -> None:
        self._log = log
        self._before = before

    @classmethod
    def before_iter(cls, dataloader: DataLoader[Any], log: StartLog | None) -> ForkWatch | None:
        """Get ready to watch the next ``iter(dataloader)``; ``None`` where nothing is forked.

        Only the ``fork`` start method is watched: spawn and forkserver start their workers
        from a process with no other thread.
        """
        if log is None or dataloader.num_workers == 0 or start_method(dataloader) != "fork":
            return None
        log.clear()
        return cls(log, _children())

    def stuck(self, deadline_s: float) -> list[BaseProcess]:
        """The workers forked since :meth:`before_iter` that have not started in ``deadline_s``.

        Empty at once when the ``iter()`` forked nothing (persistent workers, reset), or
        forked other than exactly the ``DataLoader``'s workers (another thread of this
        process started processes meanwhile: which are ours is then unknown).
        """
        forked = [p for p in multiprocessing.active_children() if p.pid not in self._before]
        # NOTE: active_children() lists only processes started by this one, and reaps those
        # that have exited; a fork's pid is set before Process.start returns.
        if len(forked) != self._log.num_workers:
            return []
        deadline = time.monotonic() + deadline_s
        while True:
            started = self._log.started()
            missing = [p for p in forked if p.pid not in started and p.is_alive()]
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(_POLL_S)


def _children() -> set[int]:
    return {child.pid for child in multiprocessing.active_children() if child.pid is not None}


def start_epoch_workers(dataloader: DataLoader[Any], log: StartLog | None) -> Iterator[Any]:
    """``iter(dataloader)``, forked again while a worker it forked never starts.

    Args:
        dataloader: The ``DataLoader`` (its sampler already points at the epoch).
        log: The slots its workers write to as they start, or ``None`` (nothing is watched).

    Returns:
        The ``DataLoader``'s iterator, every worker of which has started (or, after
        :data:`MAX_RESTARTS` forks made again, the last one, with a warning).
    """
    restarts = 0
    while True:
        watch = ForkWatch.before_iter(dataloader, log)
        batches = iter(dataloader)
        if watch is None:
            return batches
        stuck = watch.stuck(START_DEADLINE_S)
        if not stuck:
            return batches
        pids = ", ".join(str(p.pid) for p in stuck)
        if restarts == MAX_RESTARTS:
            warnings.warn(
                f"DataLoader worker process(es) {pids} still have not started "
                f"{START_DEADLINE_S:g} s after their fork, after {restarts} forks made again; "
                "waiting for them as torch does. " + _ADVICE,
                RuntimeWarning,
                stacklevel=4,
            )
            return batches
        restarts += 1
        warnings.warn(
            f"DataLoader worker process(es) {pids} never started after their fork "
            f"({START_DEADLINE_S:g} s): stuck on a lock another thread held at the fork. "
            "revamper stopped them and forked the epoch's workers again; the batches are "
            "unchanged. " + _ADVICE,
            RuntimeWarning,
            stacklevel=4,
        )
        _drop(dataloader, batches)
        del batches
        for process in stuck:
            process.kill()
            process.join(timeout=5.0)


_ADVICE = (
    f"Python {sys.version.split()[0]} (CPython before 3.11.8 deadlocks this way, gh-112275, "
    "when a thread such as torch.distributed's enters Python during the fork): upgrade "
    "Python, or pass multiprocessing_context='forkserver'."
)


def _drop(dataloader: DataLoader[Any], batches: Iterator[Any]) -> None:
    """Stop the workers of ``batches``, a ``DataLoader`` iterator that will not be used."""
    # NOTE: torch stops the workers (and unregisters them from its SIGCHLD handler, which
    # would otherwise raise in this process when the stuck one is killed) in the iterator's
    # _shutdown_workers, which its __del__ calls; with persistent workers the DataLoader
    # holds the iterator too, and a new one is made only once that reference is gone.
    shutdown = getattr(batches, "_shutdown_workers", None)
    if callable(shutdown):
        shutdown()
    if getattr(dataloader, "_iterator", None) is batches:
        dataloader._iterator = None
    logger.debug("dropped a DataLoader iterator whose workers did not all start")
