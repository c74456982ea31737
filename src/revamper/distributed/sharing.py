"""One cache per machine: the machine's first rank creates the store, the others attach to it.

The protocol, run by every rank of the world at loader construction (two ``all_gather_object``
calls, so that it needs nothing beyond the process group every DDP job already has):

1. The leader of each cache group (its first rank) creates the store: a shared-memory directory
   on ``/dev/shm``, or the disk cache in ``cache_dir``, whose manifest it validates (resetting a
   cache made for another run). It then knows the store's *handle*: what another process needs
   to open it (the shared-memory directory's path; nothing for a disk cache, whose directory
   everyone knows).
2. All ranks gather every leader's handle, or its error. This is also the barrier that keeps the
   other ranks from opening a disk cache before its leader has validated it.
3. Every other rank attaches to its leader's store with that handle.
4. All ranks gather whether attaching worked. If any rank failed at step 1 or 3, every rank
   closes what it made and raises the same :class:`DistributedSetupError`, so no rank goes on
   to wait for the failed one in a later collective.

The leader's store is the *owner* of a shared-memory cache: closing the leader's loader (or its
garbage collection, or the end of its process) removes the directory. Attached ranks never
remove it; a rank that still reads after the leader closed sees misses, recomputes them and
warns once: never stale data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from revamper.distributed.agreement import all_gather, raise_if_any_failed
from revamper.distributed.setup import DistributedSetup
from revamper.store.base import CacheStore

S = TypeVar("S", bound=CacheStore)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def share_store(
    setup: DistributedSetup,
    create: Callable[[], S],
    handle: Callable[[S], Any],
    attach: Callable[[Any], CacheStore],
) -> CacheStore:
    """Create the cache group's store on its leader and attach the other ranks to it.

    A collective: every rank of ``setup`` must call it (see the module's description).

    Args:
        setup: This rank's setup (``communicate`` true; cache groups of more than one rank).
        create: Builds the store, on the leader only.
        handle: What other processes need to open the leader's store (picklable).
        attach: Opens the store from a handle, on the other ranks.

    Returns:
        The leader's own store on the leader, an attached one elsewhere. Either way the caller
        closes it when done (only the leader's close releases the shared entries).

    Raises:
        DistributedSetupError: On every rank, if any rank failed to create or attach its store.
    """
    store: CacheStore | None = None
    message: tuple[Any, str | None] | None = None
    if setup.is_leader:
        try:
            created = create()
            store = created
            message = (handle(created), None)
        except Exception as exc:
            message = (None, _describe(exc))
    try:
        handles = all_gather(message, setup.world_size)
        raise_if_any_failed(
            [None if m is None else m[1] for m in handles], "to create the shared cache"
        )
        error: str | None = None
        if not setup.is_leader:
            try:
                store = attach(handles[setup.leader][0])
            except Exception as exc:
                error = _describe(exc)
        raise_if_any_failed(
            all_gather(error, setup.world_size),
            f"to attach to the cache of its machine's first rank (local_world_size="
            f"{setup.local_world_size})",
        )
    except BaseException:
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()
        raise
    assert store is not None
    return store
