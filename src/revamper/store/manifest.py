"""What a persistent cache was made for, so a later run never serves another run's entries.

A disk cache outlives its process. Before reusing one, the store compares the *fingerprint* it was
made with (data set length, reuse factor, seed, codec version, and an identity of the partial
transform that users can override) with the current run's. Any difference invalidates the whole
cache, with a log message saying which field differed.

The manifest also carries the cache incarnation's *run identity* (16 random bytes, written when
the cache is created), which every record repeats: a record of another incarnation of the same
directory is never accepted, even after a reset.

A manifest is input (its seed may be adopted, see
:func:`revamper.loader.store_setup.persisted_seed`): :func:`read_manifest` trusts it only if
the directory and the file pass the owner and mode rule (:mod:`revamper.store.permissions`), it
is small, valid UTF-8 JSON of the expected shape and types; anything else reads as "no
manifest" (the cache is then reset), with a log message why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from revamper.errors import UnsafeCacheError
from revamper.store import permissions
from revamper.store.codec import CODEC_VERSION
from revamper.store.record import RUN_ID_SIZE
from revamper.store.transform_identity import transform_identity

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "manifest_for",
    "mismatch",
    "new_run_id",
    "read_manifest",
    "remove_manifest",
    "run_id_of",
    "transform_identity",
    "write_manifest",
]

logger = logging.getLogger(__name__)

FORMAT: Final = "revamper-disk-cache"
FORMAT_VERSION: Final = 3  # 3: records carry the run identity; fixed binary codec meta
MANIFEST_NAME: Final = "revamper-cache.json"
MAX_MANIFEST_BYTES: Final = 1 << 20
_INT_FIELDS: Final = ("format_version", "codec_version", "num_samples")


def new_run_id() -> bytes:
    """A fresh, random run identity."""
    return os.urandom(RUN_ID_SIZE)


def manifest_for(
    fingerprint: Mapping[str, Any], num_samples: int, run_id: bytes | None = None
) -> dict[str, Any]:
    """The manifest a cache made with ``fingerprint`` carries (a fresh run id unless given)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "codec_version": CODEC_VERSION,
        "num_samples": num_samples,
        "fingerprint": dict(fingerprint),
        "run_id": (new_run_id() if run_id is None else run_id).hex(),
    }


def run_id_of(found: Mapping[str, Any]) -> bytes | None:
    """The run identity a (validated) manifest names, or ``None``."""
    value = found.get("run_id")
    if not isinstance(value, str) or len(value) != 2 * RUN_ID_SIZE:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _problem(loaded: Any) -> str | None:
    """What makes a parsed manifest unusable, or ``None``."""
    if not isinstance(loaded, dict):
        return f"it is a JSON {type(loaded).__name__}, not an object"
    if loaded.get("format") != FORMAT:
        return f"its format is {loaded.get('format')!r}, not {FORMAT!r}"
    for key in _INT_FIELDS:
        value = loaded.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            return f"its {key} is {value!r}, not an integer in range"
    if not isinstance(loaded.get("fingerprint"), dict):
        return "its fingerprint is not a mapping"
    if run_id_of(loaded) is None:
        return "it has no valid run_id"
    return None


def _read_bytes(directory: Path) -> bytes | None:
    directory = permissions.resolve_directory(directory)
    try:
        fd = permissions.open_private(directory / MANIFEST_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, MAX_MANIFEST_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"it is larger than {MAX_MANIFEST_BYTES} bytes")
    return data


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest in ``directory``, or ``None`` if there is none or it cannot be trusted.

    ``None`` (with a warning saying why) also for a directory or manifest that fails the owner
    and mode rule, a symbolic link, a file that is too large, not UTF-8, not JSON, or not a
    manifest of the expected shape: the caller then treats the cache as absent.
    """
    try:
        data = _read_bytes(Path(directory))
        if data is None:
            return None
        loaded = json.loads(data.decode("utf-8"))
        problem = _problem(loaded)
    except FileNotFoundError:
        return None
    except UnsafeCacheError as exc:
        logger.warning("not trusting the cache manifest in %s: %s", directory, exc)
        return None
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeError, JSONDecodeError, ...
        problem = f"it is unreadable ({type(exc).__name__}: {exc})"
    if problem is not None:
        logger.warning(
            "malformed cache manifest in %s (%s); the cache is rebuilt", directory, problem
        )
        return None
    assert isinstance(loaded, dict)
    return loaded


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest`` atomically (a reader sees the old one or the new one).

    The temporary file has an unpredictable name and is created exclusively (``O_EXCL``,
    ``O_NOFOLLOW``, mode 0600), so nothing planted can be written through.

    Raises:
        OSError: If it cannot be written (``ENOSPC``, ...); no temporary file is left behind.
    """
    text = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    tmp = Path(directory) / f".{MANIFEST_NAME}.{os.urandom(8).hex()}.tmp"
    fd = permissions.open_private(tmp, os.O_WRONLY | os.O_EXCL, create=True)
    try:
        try:
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, Path(directory) / MANIFEST_NAME)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def remove_manifest(directory: Path) -> None:
    """Delete the manifest (first step of a reset: a cache half rebuilt is never trusted)."""
    with contextlib.suppress(FileNotFoundError):
        (Path(directory) / MANIFEST_NAME).unlink()


def mismatch(
    found: Mapping[str, Any], wanted: Mapping[str, Any], *, fingerprint: bool = True
) -> str | None:
    """Describe the first difference between two manifests, or ``None`` if they agree.

    Args:
        found: The manifest found.
        wanted: The one this run would write.
        fingerprint: Compare the fingerprints too (else only the format, the codec version and
            the number of samples: a store made without a fingerprint reuses any cache whose
            records it can read).
    """
    for key in ("format", "format_version", "codec_version", "num_samples"):
        if found.get(key) != wanted.get(key):
            return f"{key} is {_short(found.get(key))}, this run needs {_short(wanted.get(key))}"
    if not fingerprint:
        return None
    have, need = found.get("fingerprint"), wanted.get("fingerprint")
    if not isinstance(have, Mapping) or not isinstance(need, Mapping):
        return "the fingerprint is not a mapping"
    for key in sorted(set(have) | set(need), key=str):
        if have.get(key) != need.get(key):
            return f"{key} was {_short(have.get(key))}, this run has {_short(need.get(key))}"
    return None


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
