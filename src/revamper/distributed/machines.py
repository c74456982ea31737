"""Which ranks share a machine, learnt from the process group itself.

Launchers disagree on how they say how many ranks run on a machine: torchrun sets
``LOCAL_WORLD_SIZE``, SLURM's ``srun`` sets ``SLURM_NTASKS_PER_NODE`` (or not), Open MPI
``OMPI_COMM_WORLD_LOCAL_SIZE``, and Lightning's DDP launchers set nothing at all. A loader that
trusted one variable would silently build a private cache per rank under the others (twice the
memory with two GPUs). So, when ``torch.distributed`` is initialised, every rank contributes a
*host identity* to one ``all_gather_object`` and the ranks that report the same identity share a
machine, whatever started them.

The identity names what the ranks must share for one cache to serve them: the kernel (its boot
id: two containers on one host share it), the host name (containers usually differ in it), and
the shared-memory file system (the device number of ``/dev/shm``: two containers with private
``/dev/shm`` mounts differ in it, and could not share a memory cache even on one kernel).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Final

BOOT_ID_FILE: Final = "/proc/sys/kernel/random/boot_id"
MACHINE_ID_FILE: Final = "/etc/machine-id"
SHM_DIR: Final = "/dev/shm"


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.readline(200).strip()
    except OSError:
        return ""


def host_identity() -> str:
    """This process's machine, as a string equal exactly for processes that can share a cache.

    Host name, boot id (else the machine id) and the device number of ``/dev/shm``. Any part
    that cannot be read is left empty: two processes on one machine still agree on it.
    """
    kernel = _read_first_line(BOOT_ID_FILE) or _read_first_line(MACHINE_ID_FILE)
    try:
        shm = str(os.stat(Path(SHM_DIR)).st_dev)
    except OSError:
        shm = ""
    return f"{socket.gethostname()}|{kernel}|{shm}"


@dataclasses.dataclass(frozen=True)
class MachineLayout:
    """How the ranks of a process group sit on machines, from their host identities.

    Attributes:
        machines: Number of distinct machines.
        ranks_per_machine: Ranks on each machine when every machine has as many and they are
            numbered machine by machine (global rank = machine * ranks_per_machine + local
            rank); otherwise ``None``.
        sizes: Ranks on each machine, in order of each machine's first rank.
    """

    machines: int
    ranks_per_machine: int | None
    sizes: tuple[int, ...]

    def describe(self) -> str:
        """``"2 machines of 2 ranks"``, or the ranks per machine when they are irregular."""
        if self.ranks_per_machine is not None:
            plural = "s" if self.machines > 1 else ""
            return f"{self.machines} machine{plural} of {self.ranks_per_machine} ranks"
        return f"{self.machines} machines of {', '.join(map(str, self.sizes))} ranks"


def machine_layout(identities: Sequence[str]) -> MachineLayout:
    """Group the ranks by host identity (``identities[rank]``) into machines.

    Args:
        identities: Every rank's :func:`host_identity`, in rank order.

    Returns:
        The layout; ``ranks_per_machine`` is ``None`` unless the ranks of each machine form one
        contiguous block of the same size (a machine-wide cache needs that numbering).
    """
    first_rank: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for rank, identity in enumerate(identities):
        first_rank.setdefault(identity, rank)
        sizes[identity] = sizes.get(identity, 0) + 1
    ordered = sorted(sizes, key=first_rank.__getitem__)
    counts = tuple(sizes[identity] for identity in ordered)
    per_machine: int | None = None
    if len(set(counts)) == 1:
        size = counts[0]
        if list(identities) == [ordered[rank // size] for rank in range(len(identities))]:
            per_machine = size
    return MachineLayout(len(ordered), per_machine, counts)
