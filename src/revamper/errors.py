"""Exceptions revamper raises beyond the built-in ``TypeError``/``ValueError``.

All of them live here, so that a caller finds what to catch in one place, and so that the modules
that raise them can be reorganised without moving a name users import. The ones a user meets are
also exported from :mod:`revamper` and :mod:`revamper.store`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import stat
from collections.abc import Sequence
from pathlib import Path

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


class RecordError(ValueError):
    """A cache record that does not hold what the reader asked for, or is damaged.

    Raised by :mod:`revamper.store.record`; stores turn it into a miss.
    """


class UnsafeCacheError(ValueError):
    """A cache path that another user could have written, or that is not what it should be.

    Raised by the stores (:mod:`revamper.store.permissions` applies the rule) when a cache
    directory or a file in it is a symbolic link, belongs to another user, or is writable by
    group or others: such a cache is never read nor written through.

    Args:
        path: The offending path.
        problem: What is wrong with it.
        st: Its ``lstat``, for the owner and mode in the message.
        advice: What to do (the default is about the owner and mode rule).

    Attributes:
        path: The offending path.
        owner_uid: Its owner's uid (``None`` if it could not be read).
        mode: Its permission bits (``None`` if it could not be read).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        problem: str,
        st: os.stat_result | None = None,
        *,
        advice: str | None = None,
    ) -> None:
        self.path = str(path)
        self.owner_uid = None if st is None else st.st_uid
        self.mode = None if st is None else stat.S_IMODE(st.st_mode)
        where = "" if st is None else f" (owner {user_name(st.st_uid)}, mode {self.mode:04o})"
        if advice is None:
            advice = (
                f"A cache is trusted only if it belongs to you ({user_name(os.geteuid())}) and "
                "no one else can write to it; remove it or fix it (chown/chmod go-w), or use a "
                "cache directory of your own"
            )
        super().__init__(f"refusing the cache path {self.path!r}{where}: {problem}. {advice}")


def user_name(uid: int) -> str:
    """``name (uid N)`` for a user id, or ``uid N`` when it has no name."""
    with contextlib.suppress(KeyError):
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    return f"uid {uid}"


class CacheInUseError(RuntimeError):
    """Another live store owns this cache directory (one owning store per directory).

    Attributes:
        directory: The cache directory.
        pid: The process that holds it, if it could be read.
    """

    def __init__(self, directory: str | os.PathLike[str], pid: int | None) -> None:
        self.directory = str(directory)
        self.pid = pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"the disk cache {self.directory!r} is in use by {holder} (another loader or store "
            "owns it; a cache directory serves one loader at a time). Use another cache_dir, or "
            "close that loader first; the ranks of one distributed run share it by themselves"
        )


class StoreGone(RuntimeError):
    """A shared-memory store's directory was removed (or made unsafe) under an attached instance.

    Its loader was closed, or something removed the directory. Writers stop caching with a
    warning; :meth:`~revamper.store.CacheStore.stats` and
    :meth:`~revamper.store.CacheStore.evict` raise it.
    """

    def __init__(self, path: str | os.PathLike[str], unsafe: str | None = None) -> None:
        super().__init__(
            f"revamper: the cache directory {Path(path)} no longer exists (its loader was closed, "
            "or something removed it)"
            if unsafe is None
            else f"revamper: the cache directory {Path(path)} is no longer safe to use ({unsafe})"
        )


class DistributedSetupError(ValueError):
    """The ranks of distributed training cannot build a consistent loader.

    Raised on every rank, with the same message: the ranks disagree on an argument, the ranks
    of a machine-wide cache run on different machines, or a rank failed to create or attach
    the shared cache.

    Attributes:
        field: The argument the ranks disagree on, or ``None``.
        ranks: The ranks concerned (those that failed, or all ranks of a mismatch).
    """

    def __init__(self, message: str, *, field: str | None = None, ranks: Sequence[int] = ()):
        super().__init__(message)
        self.field = field
        self.ranks = tuple(ranks)
