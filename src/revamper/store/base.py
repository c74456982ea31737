"""The one contract every cache store implements: a template, public methods final, hooks private.

A store maps a sample index to the *partially augmented sample* computed for it, tagged with the
*generation*: the epoch in which the plan says that entry was computed. A reader always states the
generation it expects, so an entry left over from an earlier cycle, an interrupted epoch or another
run is never served: it reads as a miss and the caller recomputes it (an *unplanned miss*).

Stores are shared by processes. The instance the loader creates is the *owner*: it allocates the
resources and releases them on :meth:`CacheStore.close` or garbage collection. Pickling a store (as
torch's DataLoader does when it starts worker processes) yields an *attached* instance that reads
and writes the same entries and never releases them.

:class:`CacheStore` fixes the public methods (``typing.final``) and runs, once for every backend,
what each of them used to repeat: the closed check, the index and generation checks, the pickle
round trip (only :meth:`CacheStore._shared_state` travels; the unpickled instance is attached and
open), per-process handles re-opened after ``fork`` (:class:`PerProcess`) and warnings said once
per instance. A backend implements the private hooks (``_get`` or ``_get_many``,
``_put_encoded``, ``_evict``, ``_contains``, ``_stats``, ``_close``, and optionally the others),
which may assume their arguments are checked and the store is open. torchdata's ``BaseNode``
follows the same pattern. How to add a store: :mod:`revamper.store.registry`.
"""

from __future__ import annotations

import abc
import operator
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final, TypeVar, final

from revamper.store import codec
from revamper.store.per_process import PerProcess
from revamper.store.stats import IoCounters, StoreStats

__all__ = ["MISS", "CacheStore", "IoCounters", "PerProcess", "StoreStats", "check_budget"]


class _Missing:
    """Type of :data:`MISS`, what :meth:`CacheStore.get` returns when there is no valid entry."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISS"

    def __reduce__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


MISS: Final = _Missing()
"""Sentinel returned by :meth:`CacheStore.get` for an absent, stale or invalid entry."""

_S = TypeVar("_S", bound="CacheStore")

# The hooks a subclass implements instead of the public (final) methods.
_HOOKS: Final = {
    "get": "_get",
    "get_many": "_get_many",
    "put": "_put_encoded",
    "put_encoded": "_put_encoded",
    "evict": "_evict",
    "contains": "_contains",
    "stats": "_stats",
    "close": "_close",
    "prefetch": "_prefetch",
    "on_epoch_start": "_on_epoch_start",
    "io_counters": "_io_counters",
    "handle": "_handle",
    "ram_bytes": "_ram_bytes",
    "__getstate__": "_shared_state",
    "__setstate__": "_attach_state",
}


def check_budget(name: str, value: object) -> int | None:
    """Check a byte count argument (a budget, a reserve): ``None`` or an int >= 0.

    Raises:
        TypeError: If it is not an int (a bool is not).
        ValueError: If it is negative.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _integer(name: str, value: object) -> int:
    """``value`` as an int if it is an integer (numpy's included, bool not), else TypeError."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


class CacheStore(abc.ABC):
    """A cache of partially augmented samples shared by the processes of one loader.

    Implementations must be safe for concurrent use by several processes under the loader's access
    pattern: any process may read any index, and within an epoch an index is written with one
    generation only, usually by one process; but distributed training repeats a few samples to
    give every rank as many, and at epoch 0 (nothing cached yet) two ranks may then compute and
    write the same index and generation at the same time. Both values are valid; a store must
    keep one of them whole and count the entry once. :meth:`get` must return data that the
    caller may mutate in place without changing the cached entry.

    Pickle policy: a value the codec cannot encode natively is pickled only if
    :attr:`allow_pickle` is true, and a stored pickle is only ever unpickled by a store whose
    :attr:`allow_pickle` is true (otherwise it reads as a miss), since unpickling runs code and a
    cache is input that another user may have planted. Concrete stores take an ``allow_pickle``
    constructor keyword and store it in ``self._allow_pickle``; the class default is ``False``.

    Subclasses implement the private hooks, never the public methods (a class that overrides
    one gets a ``TypeError`` naming the hook to implement instead). ``_get`` and ``_get_many``
    default to each other: implement at least one. Each hook is called only on an open store,
    with an index that passed :meth:`_index_bound` and integer generations.

    Attributes:
        kind: The registry name of the store's kind (set by
            :func:`~revamper.store.registry.register_store`; ``""`` for an unregistered class).
        persistent: Whether entries survive the run (a later run with the same fingerprint
            reuses them); set by the registration.
    """

    kind: ClassVar[str] = ""
    persistent: ClassVar[bool] = False
    _allow_pickle: bool = False
    _closed: bool = False
    _warned: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for public, hook in _HOOKS.items():
            if public in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__}.{public} overrides a final method of CacheStore; implement "
                    f"the hook {hook} instead (see revamper.store.base)"
                )
        if cls._get is CacheStore._get and cls._get_many is CacheStore._get_many:
            raise TypeError(f"{cls.__name__} must implement _get or _get_many")

    # -- properties ---------------------------------------------------------------------------
    @property
    def allow_pickle(self) -> bool:
        """Whether values the codec cannot encode natively may be pickled (and unpickled)."""
        return self._allow_pickle

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called on this instance."""
        return self._closed

    # -- the contract (final) -------------------------------------------------------------------
    @final
    def get(self, index: int, generation: int) -> Any:
        """Return the entry for ``index`` computed in ``generation``, or :data:`MISS`.

        Args:
            index: Sample index in the data set.
            generation: The generation the caller expects (the epoch the entry was computed in).

        Returns:
            A private copy of the cached value, or :data:`MISS` if there is no entry, the entry has
            another generation, or it fails validation.

        Raises:
            RuntimeError: If the store is closed.
            ValueError: If ``index`` is out of range.
            TypeError: If ``index`` or ``generation`` is not an int.
        """
        self._check_open()
        if type(generation) is not int:
            generation = _integer("generation", generation)
        checked = self._checked_index(index)
        try:
            return self._get(checked, generation)
        except Exception as exc:  # a cache failure costs a recomputation, never the run
            self._read_failed(exc)
            return MISS

    @final
    def get_many(self, indices: Sequence[int], generations: Sequence[int]) -> list[Any]:
        """Return :meth:`get` for each ``(index, generation)`` pair; stores may batch the reads.

        Raises:
            ValueError: If the two sequences differ in length, or an index is out of range.
        """
        if len(indices) != len(generations):
            raise ValueError(
                f"get_many: got {len(indices)} indices but {len(generations)} generations"
            )
        self._check_open()
        bound = self._index_bound()
        for index in indices:
            if type(index) is not int or index < 0 or (bound is not None and index >= bound):
                self._checked_index(index)  # raises, or accepts a numpy integer
        for generation in generations:
            if type(generation) is not int:
                _integer("generation", generation)
        if len(indices) == 0:
            return []
        try:
            return self._get_many(indices, generations)
        except Exception as exc:  # a cache failure costs a recomputation, never the run
            self._read_failed(exc)
            return [MISS] * len(indices)

    @final
    def put(self, index: int, generation: int, value: Any) -> bool:
        """Cache ``value`` for ``index``, replacing any earlier entry for that index.

        Args:
            index: Sample index in the data set.
            generation: The generation to tag the entry with.
            value: The partially augmented sample (anything the codec accepts).

        Returns:
            ``True`` if the entry is now cached; ``False`` if it was not (it did not fit in the
            budget, or writing it failed). A ``False`` never loses correctness: readers miss.

        Raises:
            PickleNotAllowedError: If ``value`` holds something the codec cannot encode natively
                and :attr:`allow_pickle` is false.
            RuntimeError: If the store is closed.
        """
        self._check_open()
        index = self._checked_index(index)
        if type(generation) is not int:
            generation = _integer("generation", generation)
        encoded = codec.encode(value, allow_pickle=self.allow_pickle)
        return self._put_safely(index, generation, encoded)

    @final
    def put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        """:meth:`put` for a value already encoded (a tiered store encodes once for two tiers)."""
        self._check_open()
        index = self._checked_index(index)
        return self._put_safely(index, _integer("generation", generation), encoded)

    @final
    def evict(self, index: int) -> None:
        """Drop the entry for ``index`` if there is one."""
        self._check_open()
        index = self._checked_index(index)
        try:
            self._evict(index)
        except OSError as exc:  # damage where an entry should be: it is not served anyway
            self._failed("evicting", exc)

    @final
    def contains(self, index: int, generation: int | None = None) -> bool:
        """Whether an entry for ``index`` exists (with ``generation``, if given)."""
        self._check_open()
        index = self._checked_index(index)
        if generation is not None:
            generation = _integer("generation", generation)
        return self._contains(index, generation)

    @final
    def stats(self) -> StoreStats:
        """A snapshot of the store's shared counters."""
        self._check_open()
        return self._stats()

    @final
    def prefetch(self, indices: Sequence[int], generations: Sequence[int]) -> None:
        """Hint that these entries will be read soon (a disk store starts reading them ahead).

        Called in the main process as the plan hands out batches. A hint: indices out of range
        are ignored, not refused.
        """
        self._check_open()
        self._prefetch(indices, generations)

    @final
    def on_epoch_start(self, epoch: int) -> None:
        """Maintenance between epochs, in the process that owns the store."""
        self._check_open()
        epoch = _integer("epoch", epoch)
        try:
            self._on_epoch_start(epoch)
        except OSError as exc:  # maintenance is best effort: the cache stays usable or misses
            self._failed("tidying", exc)

    @final
    def io_counters(self) -> IoCounters:
        """Bytes this instance (in this process) has read and written, by tier."""
        return self._io_counters()

    @final
    def handle(self) -> dict[str, str]:
        """What another rank passes to :func:`~revamper.store.registry.attach_store` to share it.

        Strings only (they travel through ``torch.distributed``'s object collectives); empty for
        a store that other processes cannot attach to by path.
        """
        self._check_open()
        return self._handle()

    @final
    def ram_bytes(self) -> int:
        """Bytes of entries the store holds in RAM (a tmpfs counts; a disk's page cache not)."""
        self._check_open()
        return self._ram_bytes()

    @final
    def close(self) -> None:
        """Release what this instance holds; the owner also releases the shared entries.

        Closing twice is harmless. Using a closed store raises :class:`RuntimeError`.
        """
        if self._closed:
            return
        try:
            self._close()
        finally:
            self._closed = True

    @final
    def __enter__(self: _S) -> _S:
        return self

    @final
    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @final
    def __getstate__(self) -> dict[str, Any]:
        """What a worker receives: :meth:`_shared_state` (never per-process state)."""
        self._check_open()
        return self._shared_state()

    @final
    def __setstate__(self, state: dict[str, Any]) -> None:
        """Become an attached, open instance from the owner's :meth:`_shared_state`."""
        self._closed = False
        self._warned = frozenset()
        self._attach_state(state)

    # -- shared helpers ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the cache store {self!r} is closed")

    def _checked_index(self, index: int) -> int:
        if type(index) is not int:
            index = _integer("index", index)
        bound = self._index_bound()
        if index < 0 or (bound is not None and index >= bound):
            if bound is None:
                raise ValueError(f"index must be >= 0, got {index}")
            raise ValueError(f"index must be in [0, {bound}), got {index}")
        return index

    def _put_safely(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        """:meth:`_put_encoded`; a file system failure leaves the entry uncached.

        Such a failure is damage where the store's own files should be (a directory for a
        file, or the other way round): the sample is recomputed when needed, never the run's end.
        """
        try:
            return self._put_encoded(index, generation, encoded)
        except OSError as exc:
            self._failed("writing", exc)
            return False

    def _failed(self, doing: str, exc: OSError) -> None:
        """Say once per kind of failure that ``doing`` the cache failed; training goes on."""
        self._warn_once(
            f"{doing}-{type(exc).__name__}",
            f"revamper: {doing} the cache failed ({type(exc).__name__}: {exc}); the samples "
            "are recomputed where needed, and training goes on",
            stacklevel=5,
        )

    def _read_failed(self, exc: Exception) -> None:
        """Say once per kind of failure that a read failed; the caller returns misses."""
        self._warn_once(
            f"read-{type(exc).__name__}",
            f"revamper: reading the cache failed ({type(exc).__name__}: {exc}); the samples "
            "are recomputed, and training goes on",
            stacklevel=5,
        )

    def _warn_once(self, key: str, message: str, *, stacklevel: int = 4) -> None:
        """Warn (``RuntimeWarning``) the first time this instance meets ``key``."""
        if key not in self._warned:
            self._warned = self._warned | {key}
            warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)

    # -- hooks ------------------------------------------------------------------------------------
    def _index_bound(self) -> int | None:
        """Indices must be below this (``None``: any index >= 0)."""
        return None

    def _get(self, index: int, generation: int) -> Any:
        """One entry (default: :meth:`_get_many` of one)."""
        return self._get_many([index], [generation])[0]

    def _get_many(self, indices: Sequence[int], generations: Sequence[int]) -> list[Any]:
        """Several entries, non-empty (default: :meth:`_get` each)."""
        return [self._get(i, g) for i, g in zip(indices, generations, strict=True)]

    @abc.abstractmethod
    def _put_encoded(self, index: int, generation: int, encoded: codec.EncodedValue) -> bool:
        """Store an encoded value; ``False`` if it is not cached (budget, write failure)."""

    @abc.abstractmethod
    def _evict(self, index: int) -> None:
        """Drop the entry for ``index`` if any."""

    @abc.abstractmethod
    def _contains(self, index: int, generation: int | None) -> bool:
        """Whether an entry exists (with ``generation``, if given)."""

    @abc.abstractmethod
    def _stats(self) -> StoreStats:
        """The shared counters."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release this instance's resources (called once)."""

    def _prefetch(self, indices: Sequence[int], generations: Sequence[int]) -> None:
        """Start reading these entries ahead (default: nothing)."""
        return None

    def _on_epoch_start(self, epoch: int) -> None:
        """Between-epoch maintenance (default: nothing)."""
        return None

    def _io_counters(self) -> IoCounters:
        """Bytes moved by this instance in this process (default: none counted)."""
        return IoCounters()

    def _handle(self) -> dict[str, str]:
        """How other processes attach by path (default: they cannot)."""
        return {}

    def _ram_bytes(self) -> int:
        """Bytes held in RAM (default: all of :meth:`_stats`'s)."""
        return self._stats().bytes_used

    def _shared_state(self) -> dict[str, Any]:
        """What a pickled copy carries (default: the instance's attributes)."""
        return dict(self.__dict__)

    def _attach_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`_shared_state` in an attached instance (default: the attributes)."""
        self.__dict__.update(state)
