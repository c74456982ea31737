"""The machine the loader runs on: usable cores, and how busy other processes kept it.

Predictions assume the loader has its cores to itself. CPU times measured while other processes
compete for the same cores come out inflated (shared caches and memory bandwidth), so
:class:`BusyMeter` measures how many cores other processes used while profiling ran, and the
recommendation says so when it is more than a little.
"""

from __future__ import annotations

import os
import time
from types import TracebackType

_IDLE_FIELDS = (3, 4)  # idle and iowait in the "cpu" line of /proc/stat


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as file:
            quota, period = file.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, round(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(cores, 1)


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot (``None`` where /proc/stat is absent)."""
    try:
        with open("/proc/stat") as file:
            fields = [int(v) for v in file.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(v for i, v in enumerate(fields[:8]) if i not in _IDLE_FIELDS)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and its waited-for children (worker processes)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class BusyMeter:
    """Measures the cores other processes kept busy during a ``with`` block.

    Attributes:
        other_cores: Average cores used by other processes during the block (``None`` where
            it cannot be measured).
        seconds: Wall seconds the block took.
    """

    def __init__(self) -> None:
        self.other_cores: float | None = None
        self.seconds = 0.0
        self._start: tuple[float | None, float, float] = (None, 0.0, 0.0)

    def __enter__(self) -> BusyMeter:
        self._start = (_machine_busy_seconds(), _own_seconds(), time.perf_counter())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        machine_start, own_start, wall_start = self._start
        machine_end, own_end = _machine_busy_seconds(), _own_seconds()
        self.seconds = time.perf_counter() - wall_start
        if machine_start is None or machine_end is None or self.seconds <= 0:
            return
        others = (machine_end - machine_start) - (own_end - own_start)
        self.other_cores = max(others, 0.0) / self.seconds
