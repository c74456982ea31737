"""Exceptions revamper raises beyond the built-in ``TypeError``/``ValueError``."""

from __future__ import annotations

import re

_STAGE = re.compile(r"failed in stage '(?P<stage>\w+)'")
_INDEX = re.compile(r"sample (?P<index>\d+) failed in stage")


class SampleError(RuntimeError):
    """A sample could not be produced: names the sample index and the stage that failed.

    The stages are ``load`` (reading the item from the data set), ``partial_transform``,
    ``cache_write`` (the partial transform's output could not be encoded for the cache, e.g.
    an object that pickle cannot serialise; return arrays, tensors or images instead),
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
