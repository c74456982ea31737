"""Cache stores: one contract (:class:`CacheStore`), several places to keep entries.

- :class:`SharedMemoryStore`: record files on a tmpfs (``/dev/shm``), shared by worker processes;
- :class:`DiskStore`: checksummed records in segment files on local disk, kept across runs;
- :class:`TieredStore`: a RAM budget (a fixed resident subset) in front of a disk store.
"""

from revamper.store.base import MISS, CacheStore, IoCounters, StoreStats
from revamper.store.codec import CodecError, decode, encode
from revamper.store.disk import DiskStore
from revamper.store.memory import SharedMemoryStore
from revamper.store.tiered import TieredStore

__all__ = [
    "MISS",
    "CacheStore",
    "CodecError",
    "DiskStore",
    "IoCounters",
    "SharedMemoryStore",
    "StoreStats",
    "TieredStore",
    "decode",
    "encode",
]
