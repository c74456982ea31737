"""The loader's shutdown protocol, written once: who stops what, and in which order.

A loader holds three things that outlive a careless exit: worker processes (held by torch's
``DataLoader`` iterator, the persistent one inside the ``DataLoader`` itself), the iterator of
the epoch in progress (held by the user), and the cache store (shared memory or a disk directory
that other processes may have attached to). Each function here is one step of the protocol;
each hard rule is one ``NOTE``.
"""

from __future__ import annotations

import traceback
from typing import Protocol

from revamper.store.base import CacheStore


class _Closable(Protocol):
    def close(self) -> None: ...


def close_loader(epochs: _Closable, store: CacheStore | None, *, owns_store: bool) -> None:
    """Stop a loader: its workers first, then (if it created it) its cache store.

    Args:
        epochs: The loader's epoch source (it holds the ``DataLoader``).
        store: The loader's cache, or ``None``.
        owns_store: Whether this loader created the store (rather than attaching to another
            rank's, or being handed the user's).
    """
    # NOTE: workers before the store. A worker may be writing an entry when the loader closes;
    # dropping the DataLoader (and with it the persistent workers' iterator) lets torch stop the
    # workers before the store's memory or directory goes away under them. An epoch iterator
    # the user still holds then raises "closed" at its next batch instead of reading freed
    # memory.
    epochs.close()
    # NOTE: only the creator closes the store. With a machine-wide cache the group's first
    # rank owns it and removes it; the other ranks (and a store the user passed in) only let
    # go of their handle, which their garbage collection does. A rank still reading after the
    # owner closed recomputes what it needs (misses, never stale entries).
    if store is not None and owns_store:
        store.close()


def release_worker_frames(exc: BaseException) -> None:
    """Let a worker pool go with the exception that a worker raised.

    Called for an exception from a multi-process epoch, before it propagates.
    """
    # NOTE: torch re-raises a worker's exception from a frame that holds the DataLoader
    # iterator, a cycle that pins the whole worker pool until a (slow) cyclic garbage
    # collection. Those frames are torch internals (the worker's traceback is in the message),
    # so clearing their locals lets the pool stop as soon as the exception is dropped.
    traceback.clear_frames(exc.__traceback__)
