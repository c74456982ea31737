"""What one process holds open on a shared-memory store, and how it learns the store is gone.

Every process (the owner, each forked or spawned worker, each attached rank) opens its own
descriptors on the store's counters: a forked child must not share its parent's ``flock``.
"""

from __future__ import annotations

import os
from pathlib import Path

from revamper.errors import StoreGone, UnsafeCacheError
from revamper.store.counters import Counters

__all__ = ["Handles", "StoreGone"]


class Handles:
    """One process's open counters and the shard directories it has made sure of.

    Attributes:
        pid: The process that opened them.
        counters: The store's shared counters.
        shards: Shard directories known to exist (and to be real directories).
    """

    def __init__(self, pid: int, counters: Counters) -> None:
        self.pid = pid
        self.counters = counters
        self.shards: set[int] = set()

    @classmethod
    def open(cls, path: Path) -> Handles:
        """Open this process's handles on the store at ``path``.

        Raises:
            StoreGone: If the store's files are gone, or no longer pass the owner and mode
                rule (someone loosened or replaced them after the owner created them).
        """
        try:
            return cls(os.getpid(), Counters(path))
        except FileNotFoundError:
            raise StoreGone(path) from None
        except UnsafeCacheError as exc:
            raise StoreGone(path, str(exc)) from None

    def close(self) -> None:
        """Release the descriptors."""
        self.counters.close()
