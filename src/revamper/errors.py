"""Exceptions revamper raises beyond the built-in ``TypeError``/``ValueError``."""

from __future__ import annotations

import re

_STAGE = re.compile(r"failed in stage '(?P<stage>\w+)'")
_INDEX = re.compile(r"sample (?P<index>\d+) failed in stage")


class SampleError(RuntimeError):
    """A sample could not be produced: names the sample index and the stage that failed.

    The stages are ``load`` (reading the item from the data set), ``partial_transform``,
    ``cache_write`` (the partial transform's output could not be encoded for the cache: a type
    the codec cannot encode natively while ``allow_pickle`` is off, see
    :class:`PickleNotAllowedError`, or an object that pickle cannot serialise; return arrays,
    tensors or images instead),
    ``final_transform`` and ``collate``. The original exception is chained as ``__cause__`` in
    the process where it happened; when it crossed from a DataLoader worker, torch re-raises
    this type in the main process with the worker's traceback in the message, and ``index`` and
    ``stage`` are recovered from that message.

    Attributes:
        index: The sample index, or ``None`` for a batch-level stage (``collate``).
        stage: The stage that failed.
    """

    def __init__(self, message: str, *, index: int | None = None, stage: str | None = None):
        super().__init__(message)
        if stage is None and (stage_match := _STAGE.search(message)) is not None:
            stage = stage_match["stage"]
            index_match = _INDEX.search(message)
            index = int(index_match["index"]) if index_match is not None else None
        self.index = index
        self.stage = stage


class PickleNotAllowedError(TypeError):
    """A value the cache cannot encode natively, and pickling it was not allowed.

    Reading a pickle runs code, so a cache only pickles (and later unpickles) values when its
    owner opted in with ``allow_pickle=True`` (an option of :class:`~revamper.RevamperLoader`
    and of the store constructors). Raised by :func:`revamper.store.codec.encode`; the loader
    reports it as a :class:`SampleError` at stage ``cache_write``.

    Attributes:
        type_name: ``module.qualname`` of the value's type.
    """

    def __init__(self, type_name: str) -> None:
        super().__init__(
            f"revamper cannot cache a value of type {type_name} without pickle, and pickling "
            "is not allowed: return PIL images, numpy arrays, tensors, scalars, strings or "
            "bytes (or tuples, lists and dicts of them) from the partial transform, or pass "
            "allow_pickle=True to RevamperLoader (or to the store's constructor) if the cache "
            "directory is trusted"
        )
        self.type_name = type_name


class CodecError(ValueError):
    """A cache entry's meta blob or payload that cannot be decoded.

    It is corrupt, truncated, from another codec version, names a type that cannot be resolved
    safely, or holds a pickle that this reader may not load. Stores turn it into a miss.
    """
