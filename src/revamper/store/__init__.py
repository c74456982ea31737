"""Cache stores: one contract (:class:`CacheStore`), several places to keep entries.

- :class:`SharedMemoryStore`: record files on a tmpfs (``/dev/shm``), shared by worker processes.
"""

from revamper.store.base import MISS, CacheStore, StoreStats
from revamper.store.codec import CodecError, decode, encode
from revamper.store.memory import SharedMemoryStore

__all__ = [
    "MISS",
    "CacheStore",
    "CodecError",
    "SharedMemoryStore",
    "StoreStats",
    "decode",
    "encode",
]
