"""The sweep's JSON-lines file: appended run by run, read back (untrusted) to resume and report.

Records, one JSON object per line, each with ``type`` and ``schema``:

- ``sweep_options``: the sweep's definition (written once, when the file is created);
- ``environment``: machine, versions and load, once per session (a resumed sweep adds one);
- ``run``: one per finished run: the run's key, task, training-set size, epochs, steps, the
  paper's expected diversity, and everything :class:`~revamper.experiments.train.RunResult`
  holds;
- ``end``: once per session that finished: its wall time, runs done, load average.

The file is input when it is read back: a truncated last line (a killed sweep) or a malformed
record is skipped with a warning, never trusted.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SWEEP_SCHEMA = 1
SWEEP_FILE = "sweep.jsonl"
_RUN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "key": str,
    "task": str,
    "train_size": int,
    "arm": str,
    "seed": int,
    "epochs": int,
    "steps": int,
    "test_accuracy": (int, float),
    "input_cpu_seconds": (int, float),
    "process_cpu_seconds": (int, float),
    "diversity_mean": (int, float),
    "diversity_formula": (int, float),
}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class SweepWriter:
    """Appends records to the sweep's file, flushing each (an interrupted sweep keeps its runs).

    Args:
        path: The file; created with its folder if missing, appended to otherwise.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a")

    def emit(self, kind: str, body: dict[str, Any]) -> None:
        """Write one record of type ``kind`` (NaN and infinities become null)."""
        record = {"type": kind, "schema": SWEEP_SCHEMA, **body}
        self._file.write(json.dumps(_finite(record), allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> SweepWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """The well-formed records of ``path`` (objects with a string ``type``), in order."""
    with path.open() as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                logger.warning(
                    "%s line %d is not JSON (an interrupted write?): skipped", path, number
                )
                continue
            if isinstance(record, dict) and isinstance(record.get("type"), str):
                yield record
            else:
                logger.warning("%s line %d is not a record: skipped", path, number)


def valid_run(record: dict[str, Any]) -> bool:
    """Whether a ``run`` record has every field the sweep relies on, with the right types."""
    for field, kind in _RUN_FIELDS.items():
        value = record.get(field)
        if isinstance(value, bool) or not isinstance(value, kind):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
    return 0.0 <= float(record["test_accuracy"]) <= 1.0


def read_sweep(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """``(options record or None, valid run records)`` from a sweep file; one run per key.

    A key seen twice (two sessions raced on one file) keeps its first record.
    """
    options: dict[str, Any] | None = None
    runs: dict[str, dict[str, Any]] = {}
    for record in iter_records(path):
        if record["type"] == "sweep_options" and options is None:
            options = record
        elif record["type"] == "run":
            if not valid_run(record):
                logger.warning("%s: a malformed run record was skipped", path)
            elif record["key"] not in runs:
                runs[record["key"]] = record
    return options, list(runs.values())
