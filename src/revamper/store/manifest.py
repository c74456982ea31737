"""What a persistent cache was made for, so a later run never serves another run's entries.

A disk cache outlives its process. Before reusing one, the store compares the *fingerprint* it was
made with (data set length, reuse factor, seed, codec version, and an identity of the partial
transform that users can override) with the current run's. Any difference invalidates the whole
cache, with a log message saying which field differed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from revamper.store.codec import CODEC_VERSION
from revamper.store.transform_identity import transform_identity

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "manifest_for",
    "mismatch",
    "read_manifest",
    "transform_identity",
    "write_manifest",
]

logger = logging.getLogger(__name__)

FORMAT: Final = "revamper-disk-cache"
FORMAT_VERSION: Final = 2
MANIFEST_NAME: Final = "revamper-cache.json"


def manifest_for(fingerprint: Mapping[str, Any], num_samples: int) -> dict[str, Any]:
    """The manifest a cache made with ``fingerprint`` carries."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "codec_version": CODEC_VERSION,
        "num_samples": num_samples,
        "fingerprint": dict(fingerprint),
    }


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest in ``directory``, or ``None`` if there is none or it is unreadable."""
    try:
        loaded = json.loads((directory / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("unreadable cache manifest in %s (%s); the cache is rebuilt", directory, exc)
        return None
    return loaded if isinstance(loaded, dict) else None


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest`` atomically (a reader sees the old one or the new one)."""
    tmp = directory / f".{MANIFEST_NAME}.{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / MANIFEST_NAME)


def mismatch(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """Describe the first difference between two manifests, or ``None`` if they agree."""
    for key in ("format", "format_version", "codec_version", "num_samples"):
        if found.get(key) != wanted.get(key):
            return f"{key} is {found.get(key)!r}, this run needs {wanted.get(key)!r}"
    have, need = found.get("fingerprint", {}), wanted.get("fingerprint", {})
    for key in sorted(set(have) | set(need)):
        if have.get(key) != need.get(key):
            return f"{key} was {have.get(key)!r}, this run has {need.get(key)!r}"
    return None
