"""Where a process stands in distributed training: its rank, its machine, and its cache group.

:func:`resolve_setup` turns the loader's ``rank``, ``world_size``, ``local_world_size`` and
``cache_scope`` arguments, an initialised ``torch.distributed`` process group and torchrun's
environment into one :class:`DistributedSetup`. When the ranks communicate through the process
group it performs one collective, an all-gather of host identities
(:mod:`revamper.distributed.machines`), to learn which ranks share a machine.

Ranks per machine (``local_world_size``), first that applies:

1. the loader's ``local_world_size`` argument;
2. the ``LOCAL_WORLD_SIZE`` environment variable (torchrun and ``accelerate launch`` set it);
3. with an initialised process group, the ranks that report the same host identity (this is what
   makes one cache per machine hold under Lightning's DDP launchers, SLURM ``srun``, ``mpirun``,
   or anything else that does not set ``LOCAL_WORLD_SIZE``); if the ranks of each machine are not
   numbered contiguously or machines have different numbers of ranks, every rank keeps a private
   cache, with a warning;
4. 1 (no process group: nothing tells the ranks where the others run).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from typing import Final, Literal, get_args

import torch.distributed as dist

from revamper.distributed.machines import MachineLayout, host_identity, machine_layout
from revamper.errors import DistributedSetupError
from revamper.plan.config import check_int

logger = logging.getLogger(__name__)

CacheScope = Literal["machine", "rank"]
"""Which ranks share one cache: all ranks of a machine, or none (a private cache per rank)."""

LOCAL_WORLD_SIZE_ENV: Final = "LOCAL_WORLD_SIZE"
"""torchrun's variable for the number of ranks on this machine."""

LOCAL_RANK_ENV: Final = "LOCAL_RANK"
"""torchrun's variable for this rank's number on its machine."""


@dataclasses.dataclass(frozen=True)
class DistributedSetup:
    """This process's place among the ranks, and which ranks share its cache.

    Ranks of one machine are numbered contiguously, as torchrun numbers them (global rank =
    machine number * ``local_world_size`` + local rank). With ``cache_scope="machine"`` they form
    one *cache group* that shares one cache store, created by the group's first rank (its
    *leader*); with ``cache_scope="rank"`` every rank is a group of one, with a private cache.

    Attributes:
        rank: This rank, 0 to ``world_size - 1``.
        world_size: Number of ranks (1: not distributed).
        local_world_size: Ranks per machine (1 when not distributed).
        cache_scope: ``"machine"`` or ``"rank"``.
        communicate: Whether an initialised ``torch.distributed`` process group with this rank and
            world size connects the ranks. The loader then checks at construction that the ranks
            agree on their arguments, and shares the cache's location; without one it cannot.
    """

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    cache_scope: CacheScope = "machine"
    communicate: bool = False

    @property
    def distributed(self) -> bool:
        """Whether more than one rank shares the data set."""
        return self.world_size > 1

    @property
    def group_size(self) -> int:
        """Ranks per cache group: ``local_world_size`` for a machine-wide cache, else 1."""
        return self.local_world_size if self.cache_scope == "machine" else 1

    @property
    def group(self) -> int:
        """This rank's cache group (its machine, with a machine-wide cache)."""
        return self.rank // self.group_size

    @property
    def leader(self) -> int:
        """The first rank of this rank's cache group: it creates and owns the group's cache."""
        return self.group * self.group_size

    @property
    def is_leader(self) -> bool:
        """Whether this rank creates (and releases) its group's cache."""
        return self.rank == self.leader

    @property
    def shares_cache(self) -> bool:
        """Whether other ranks use this rank's cache store."""
        return self.group_size > 1

    def describe(self) -> str:
        """One line for logs: ``rank 1/4, cache group 0 (ranks 0-1, leader 0)``."""
        if not self.distributed:
            return "not distributed"
        last = self.leader + self.group_size - 1
        members = f"rank {self.leader}" if self.group_size == 1 else f"ranks {self.leader}-{last}"
        return (
            f"rank {self.rank}/{self.world_size}, cache scope {self.cache_scope!r}, "
            f"cache group {self.group} ({members})"
        )


def _process_group() -> tuple[int, int] | None:
    """``(rank, world_size)`` of the initialised default process group, or ``None``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


def _env_int(name: str) -> int | None:
    """An integer environment variable, ``None`` if unset or empty.

    Raises:
        ValueError: If it is set to something other than an int >= 1 (``LOCAL_RANK`` >= 0).
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None
    if value < (0 if name == LOCAL_RANK_ENV else 1):
        raise ValueError(f"environment variable {name}={text!r} is out of range")
    return value


def local_rank_from_env() -> int | None:
    """This rank's number on its machine from torchrun's ``LOCAL_RANK``, or ``None``."""
    return _env_int(LOCAL_RANK_ENV)


def resolve_setup(
    rank: int | None = None,
    world_size: int | None = None,
    local_world_size: int | None = None,
    cache_scope: str = "machine",
) -> DistributedSetup:
    """Work out this process's :class:`DistributedSetup` from the loader's arguments.

    - ``rank`` and ``world_size`` both ``None``: taken from the initialised default
      ``torch.distributed`` process group, else not distributed (rank 0 of 1).
    - Both given: used as they are. The process group (if any) is used for communication only
      when it has the same rank and world size; pass ``rank=0, world_size=1`` for a loader that
      one rank uses on its own (an evaluation loader on rank 0, say), so that its construction
      involves no other rank.
    - ``local_world_size`` ``None``: torchrun's ``LOCAL_WORLD_SIZE``, else (with a process
      group) the ranks found on each machine by an all-gather of host identities, else 1.

    Args:
        rank: This rank, or ``None``.
        world_size: Number of ranks, or ``None``.
        local_world_size: Ranks per machine, or ``None`` (see the module's description).
        cache_scope: ``"machine"`` (one cache per machine, shared by its ranks) or ``"rank"``
            (a private cache per rank).

    Returns:
        The setup.

    Raises:
        TypeError: If an argument has the wrong type (named in the message).
        ValueError: If an argument is out of range, only one of ``rank`` and ``world_size`` is
            given, or ``local_world_size`` does not divide ``world_size``.
        DistributedSetupError: On the other ranks, when ``local_world_size`` or
            ``LOCAL_WORLD_SIZE`` is malformed on some rank (that rank raises its own error).
    """
    if cache_scope not in get_args(CacheScope):
        raise ValueError(f"cache_scope must be 'machine' or 'rank', got {cache_scope!r}")
    scope: CacheScope = "machine" if cache_scope == "machine" else "rank"
    group = _process_group()
    if rank is None and world_size is None:
        if group is None:
            _warn_if_launched_without_group()
            return DistributedSetup(cache_scope=scope)
        rank, world_size = group
        communicate = world_size > 1
    elif rank is None or world_size is None:
        raise ValueError(
            "pass both rank and world_size, or neither (then they come from the initialised "
            f"torch.distributed process group); got rank={rank!r}, world_size={world_size!r}"
        )
    else:
        world_size = check_int("world_size", world_size, 1)
        rank = check_int("rank", rank, 0, world_size - 1)
        communicate = group == (rank, world_size) and world_size > 1
        if group is not None and not communicate and world_size > 1:
            logger.info(
                "rank=%d, world_size=%d differ from the process group's (rank %d of %d): the "
                "loader's ranks cannot communicate, so their arguments are not cross-checked",
                rank,
                world_size,
                *group,
            )
    local_world_size = _ranks_per_machine(local_world_size, world_size, communicate)
    if world_size == 1:
        return DistributedSetup(cache_scope=scope)
    if world_size % local_world_size:
        raise ValueError(
            f"local_world_size (ranks per machine) must divide world_size, got "
            f"local_world_size={local_world_size} and world_size={world_size}"
        )
    return DistributedSetup(rank, world_size, local_world_size, scope, communicate)


def _ranks_per_machine(argument: int | None, world_size: int, communicate: bool) -> int:
    """Ranks per machine, by the precedence in the module's description.

    With ``communicate``, a collective: every rank gathers every rank's host identity, whether
    or not it has an override, so that no rank waits for one that skipped the gather; an
    argument or variable that is malformed on any rank then fails on every rank.
    """
    value: int | None = None
    error: Exception | None = None
    try:
        if argument is not None:
            value = check_int("local_world_size", argument, 1)
        else:
            value = _env_int(LOCAL_WORLD_SIZE_ENV)
    except (TypeError, ValueError) as exc:
        error = exc
    if not communicate:
        if error is not None:
            raise error
        return value or 1
    gathered: list[tuple[str, str | None] | None] = [None] * world_size
    dist.all_gather_object(gathered, (host_identity(), None if error is None else str(error)))
    if error is not None:
        raise error
    failed = [(rank, g[1]) for rank, g in enumerate(gathered) if g is not None and g[1]]
    if failed:
        details = "; ".join(f"rank {rank}: {message}" for rank, message in failed)
        raise DistributedSetupError(
            f"RevamperLoader: ranks per machine are malformed on other ranks ({details})",
            field="local_world_size",
            ranks=[rank for rank, _ in failed],
        )
    layout = machine_layout([g[0] if g is not None else "" for g in gathered])
    if argument is None and value is not None:
        if layout.ranks_per_machine != value:
            warnings.warn(
                f"revamper: {LOCAL_WORLD_SIZE_ENV}={value}, but the process group's ranks run on "
                f"{layout.describe()}; using {LOCAL_WORLD_SIZE_ENV} (unset it to let the loader "
                "use the ranks it finds on each machine)",
                RuntimeWarning,
                stacklevel=4,
            )
        return value
    return _discovered(layout) if value is None else value


def _discovered(layout: MachineLayout) -> int:
    """Ranks per machine from the host identities (1 when they cannot share one cache)."""
    if layout.ranks_per_machine is None:
        warnings.warn(
            f"revamper: the ranks run on {layout.describe()}, not numbered machine by machine "
            "with as many ranks on each, so each rank gets a private cache (more memory); pass "
            "local_world_size (and number the ranks machine by machine) to share one per machine",
            RuntimeWarning,
            stacklevel=5,
        )
        return 1
    logger.info("revamper: the ranks run on %s (from their host identities)", layout.describe())
    return layout.ranks_per_machine


def _warn_if_launched_without_group() -> None:
    """Warn when torchrun started several processes but none initialised a process group."""
    try:
        launched = _env_int("WORLD_SIZE")
    except ValueError:
        return
    if launched is not None and launched > 1:
        warnings.warn(
            f"revamper: WORLD_SIZE={launched} but torch.distributed is not initialised, so "
            "every process iterates the whole data set; call torch.distributed."
            "init_process_group() before creating the RevamperLoader (or pass rank and "
            "world_size)",
            RuntimeWarning,
            stacklevel=4,
        )
