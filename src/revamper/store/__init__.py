"""Cache stores: one contract (:class:`CacheStore`), several places to keep entries, by name.

- ``"memory"``, :class:`SharedMemoryStore`: record files on a tmpfs (``/dev/shm``), shared by
  worker processes;
- ``"disk"``, :class:`DiskStore`: checksummed records in segment files on local disk, kept
  across runs;
- ``"tiered"``, :class:`TieredStore`: a RAM budget (a fixed resident subset) in front of a disk
  store;
- ``"arena"``, :class:`ArenaStore`: records packed in one shared mapping on a tmpfs, slots
  reused in place (no file per entry).

The kinds register themselves (:mod:`revamper.store.registry`) when their module is imported
below; :func:`make_store` and :func:`attach_store` build them by name.
"""

from revamper.errors import CacheInUseError, CodecError, PickleNotAllowedError, UnsafeCacheError
from revamper.store.base import MISS, CacheStore, IoCounters, StoreStats
from revamper.store.codec import decode, encode
from revamper.store.registry import (
    StoreOptions,
    StoreSpec,
    attach_store,
    make_store,
    register_store,
    store_kinds,
    store_spec,
)

# The built-in kinds (each module registers its kind on import; the order is the kinds' order).
from revamper.store.memory import SharedMemoryStore  # isort: skip
from revamper.store.disk import DiskStore  # isort: skip
from revamper.store.tiered import TieredStore  # isort: skip
from revamper.store.arena import ArenaStore  # isort: skip

__all__ = [
    "MISS",
    "ArenaStore",
    "CacheInUseError",
    "CacheStore",
    "CodecError",
    "DiskStore",
    "IoCounters",
    "PickleNotAllowedError",
    "SharedMemoryStore",
    "StoreOptions",
    "StoreSpec",
    "StoreStats",
    "TieredStore",
    "UnsafeCacheError",
    "attach_store",
    "decode",
    "encode",
    "make_store",
    "register_store",
    "store_kinds",
    "store_spec",
]
