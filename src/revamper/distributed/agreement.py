"""The construction-time handshake: every rank checks that all ranks built the same loader.

Ranks that disagree on the seed, the data set's length, the reuse factor or the batch size would
compute different plans: samples would be skipped or repeated, a shared cache would serve entries
at the wrong time, and a rank with fewer batches would leave the others waiting in a collective.
So the loader gathers a small fingerprint of its arguments from every rank in ONE
``all_gather_object`` and compares them; on a mismatch every rank raises the same
:class:`DistributedSetupError`, naming the field and which ranks have which value. The same
gather carries rank 0's seed to everyone (when no seed was given) and each rank's host name
(the ranks that share a machine-wide cache must run on one machine).
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import torch.distributed as dist

from revamper.distributed.setup import DistributedSetup, local_rank_from_env
from revamper.errors import DistributedSetupError

_HINTS = {
    "num_samples": " (len(dataset): every rank must read the same data set)",
    "seed": " (pass the same seed everywhere, or seed=None on every rank to use rank 0's)",
    "partial_transform": (
        " (the partial transforms describe themselves differently; if they compute the same "
        "thing, pass the same cache_key on every rank)"
    ),
    "local_world_size": (
        " (ranks per machine: pass the same local_world_size or LOCAL_WORLD_SIZE on every rank, "
        "or neither, and the ranks find out which of them share a machine)"
    ),
}


def all_gather(obj: Any, world_size: int) -> list[Any]:
    """Every rank's ``obj``, in rank order (one ``all_gather_object`` on the default group)."""
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def format_ranks(ranks: Sequence[int]) -> str:
    """``"rank 3"``, ``"ranks 0-2"`` or ``"ranks 0, 2, 5"``."""
    ranks = sorted(ranks)
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ", ".join(map(str, ranks))


def _by_value(values: Sequence[Any]) -> list[tuple[Any, list[int]]]:
    groups: list[tuple[Any, list[int]]] = []
    for rank, value in enumerate(values):
        for known, ranks in groups:
            if known == value and type(known) is type(value):
                ranks.append(rank)
                break
        else:
            groups.append((value, [rank]))
    return groups


def _mismatch(field: str, values: Sequence[Any], ranks: Sequence[int], scope: str) -> None:
    """Raise if ``values`` (of ``ranks``) are not all equal."""
    groups = _by_value(values)
    if len(groups) <= 1:
        return
    parts = "; ".join(
        f"{format_ranks([ranks[i] for i in members])} {'has' if len(members) == 1 else 'have'} "
        f"{field}={value!r}"
        for value, members in groups
    )
    raise DistributedSetupError(
        f"RevamperLoader: {scope} must agree on {field}{_HINTS.get(field, '')}, but {parts}",
        field=field,
        ranks=list(ranks),
    )


@dataclasses.dataclass(frozen=True)
class _Fingerprint:
    fields: dict[str, Any]
    group_fields: dict[str, Any]
    drawn_seed: int
    host: str
    local_rank: int | None


def agree(
    setup: DistributedSetup,
    fields: Mapping[str, Any],
    group_fields: Mapping[str, Any],
    *,
    drawn_seed: int,
) -> int:
    """Check that every rank built the same loader, and return the run's seed.

    A collective (one ``all_gather_object``): every rank of ``setup`` must call it, in the same
    order relative to other collectives.

    Args:
        setup: This rank's setup (``communicate`` must be true).
        fields: What must be equal on every rank, ``"seed"`` included (``None`` when the user
            passed none).
        group_fields: What must be equal within each cache group (the shared cache's budget and
            directory, say).
        drawn_seed: A seed this rank drew; rank 0's is the run's seed when ``fields["seed"]`` is
            ``None`` on every rank.

    Returns:
        The seed every rank uses.

    Raises:
        DistributedSetupError: On every rank, if the ranks disagree on a field, if the ranks of
            a machine-wide cache run on different hosts, or if torchrun's ``LOCAL_RANK`` shows
            that ranks are not numbered machine by machine.
    """
    try:
        local_rank = local_rank_from_env()
    except ValueError:
        local_rank = None  # a malformed LOCAL_RANK proves nothing; never fail before the gather
    mine = _Fingerprint(
        dict(fields), dict(group_fields), drawn_seed, socket.gethostname(), local_rank
    )
    prints: list[_Fingerprint] = all_gather(mine, setup.world_size)
    everyone = list(range(setup.world_size))
    for field in fields:
        _mismatch(field, [p.fields.get(field) for p in prints], everyone, "all ranks")
    if setup.shares_cache:
        _check_groups(setup, prints)
    seed = prints[0].fields.get("seed")
    return prints[0].drawn_seed if seed is None else int(seed)


def _check_groups(setup: DistributedSetup, prints: Sequence[_Fingerprint]) -> None:
    size = setup.group_size
    for leader in range(0, setup.world_size, size):
        members = list(range(leader, leader + size))
        scope = f"the ranks sharing one cache ({format_ranks(members)})"
        for field in prints[leader].group_fields:
            values = [prints[r].group_fields.get(field) for r in members]
            _mismatch(field, values, members, scope)
        hosts = _by_value([prints[r].host for r in members])
        if len(hosts) > 1:
            where = "; ".join(
                f"{format_ranks([members[i] for i in ranks])} on {host!r}" for host, ranks in hosts
            )
            raise DistributedSetupError(
                f"RevamperLoader: with cache_scope='machine' and local_world_size={size}, "
                f"{format_ranks(members)} share one cache, but they run on different machines "
                f"({where}). Pass the number of ranks per machine as local_world_size, or unset "
                "LOCAL_WORLD_SIZE and the argument so that the ranks find out themselves, or "
                "pass cache_scope='rank' for a cache per rank.",
                field="local_world_size",
                ranks=members,
            )
        for rank in members:
            local = prints[rank].local_rank
            if local is not None and local != rank - leader:
                raise DistributedSetupError(
                    f"RevamperLoader: rank {rank} has LOCAL_RANK={local}, but a machine-wide "
                    f"cache needs the ranks of a machine numbered contiguously (global rank = "
                    f"machine * local_world_size + local rank, as torchrun numbers them; here "
                    f"local_world_size={size}, so LOCAL_RANK={rank - leader}). Pass "
                    "cache_scope='rank' if your launcher numbers ranks otherwise.",
                    field="rank",
                    ranks=[rank],
                )


def raise_if_any_failed(errors: Sequence[str | None], what: str) -> None:
    """Raise the same :class:`DistributedSetupError` on every rank if any rank reported one.

    Args:
        errors: Every rank's error message (``None`` for success), in rank order, as gathered.
        what: What the ranks were doing, for the message ("creating the shared cache").

    Raises:
        DistributedSetupError: Naming each failing rank and its error.
    """
    failed = [rank for rank, error in enumerate(errors) if error is not None]
    if len(failed) == 1:
        details = str(errors[failed[0]])
    else:
        details = "; ".join(f"rank {rank}: {errors[rank]}" for rank in failed)
    if failed:
        raise DistributedSetupError(
            f"RevamperLoader: {format_ranks(failed)} failed {what}: {details}", ranks=failed
        )
