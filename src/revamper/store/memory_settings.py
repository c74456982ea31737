"""The settings a shared-memory store records for the processes that attach to it.

The owner writes them once, in its private directory; :meth:`SharedMemoryStore.attach` reads them
back. They are input all the same, so every field is type- and range-checked on the way in.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Final

from revamper.store.record import NO_RUN_ID, RUN_ID_SIZE

_MAX_BYTES: Final = 2**62


def _check_size(name: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} is {value!r}, not an int")
    if not 0 <= value <= _MAX_BYTES:
        raise ValueError(f"{name} is {value}, out of range")
    return value


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} is {value!r}, not a bool")
    return value


@dataclasses.dataclass(frozen=True)
class MemorySettings:
    """What every instance of one shared-memory store must agree on.

    Attributes:
        budget_bytes: The byte budget, or ``None``.
        checksum: Whether records carry and are checked against a CRC-32.
        reserve_bytes: Free space left on the file system.
        allow_pickle: Whether values may be pickled and unpickled.
        run_id: The store's random identity (16 bytes), written in and required of every record.
    """

    budget_bytes: int | None
    checksum: bool
    reserve_bytes: int
    allow_pickle: bool
    run_id: bytes

    def __post_init__(self) -> None:
        _check_size("budget_bytes", self.budget_bytes, optional=True)
        _check_size("reserve_bytes", self.reserve_bytes)
        _check_flag("checksum", self.checksum)
        _check_flag("allow_pickle", self.allow_pickle)
        if not isinstance(self.run_id, bytes) or len(self.run_id) != RUN_ID_SIZE:
            raise ValueError(f"run_id must be {RUN_ID_SIZE} bytes, got {self.run_id!r}")
        if self.run_id == NO_RUN_ID:
            raise ValueError("run_id is all zeros (the identity of stores without one)")

    def to_json(self) -> str:
        """The settings as a JSON object (the run id in hex)."""
        fields = dataclasses.asdict(self)
        fields["run_id"] = self.run_id.hex()
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str) -> MemorySettings:
        """Parse and validate what :meth:`to_json` wrote.

        Raises:
            ValueError: If the text is not such an object, or a field is missing, of the wrong
                type or out of range.
        """
        fields: Any = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError("settings are not a JSON object")
        names = {field.name for field in dataclasses.fields(cls)}
        if set(fields) != names:
            raise ValueError(f"settings hold {sorted(fields)}, expected {sorted(names)}")
        run_id = fields["run_id"]
        if not isinstance(run_id, str) or len(run_id) != 2 * RUN_ID_SIZE:
            raise ValueError(f"run_id is {run_id!r}")
        fields["run_id"] = bytes.fromhex(run_id)  # ValueError if not hex
        return cls(**fields)
