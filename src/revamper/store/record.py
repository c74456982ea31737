"""The on-file layout of one cache entry, shared by the file-backed stores.

A record is a fixed 64-byte header, the codec's meta blob, zero padding to a multiple of
:data:`~revamper.store.codec.ALIGN`, then the payload. The header names the sample index, the
generation, both lengths, the *run identity* of the cache incarnation that wrote it (16 random
bytes; a store that does not use one passes :data:`NO_RUN_ID`) and (optionally) a CRC-32 of meta
and payload, so a reader can reject a record that belongs to another sample, another generation,
another codec version, another incarnation of the cache, or that was torn or corrupted, instead
of serving wrong data. Every field is parsed with :mod:`struct` and range-checked; nothing in a
record is unpickled here.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any, Final

import numpy as np

from revamper.errors import RecordError as RecordError
from revamper.store.codec import CODEC_VERSION, EncodedValue, align_up
from revamper.store.vectored import advance

MAGIC: Final = b"RVMP"
HEADER_SIZE: Final = 64
_HEADER = struct.Struct("<4sHHqqQQI16s")  # magic, codec version, flags, index, generation,
#                                           meta length, payload length, crc32, run id
_CRC_FIELD: Final = slice(40, 44)  # where the crc32 sits in the packed header
RUN_ID_SIZE: Final = 16
NO_RUN_ID: Final = bytes(RUN_ID_SIZE)
"""The run identity of records of a store without one (16 zero bytes)."""
MAX_RECORD_BYTES: Final = 2**40
"""No record is larger (a header that claims more is damaged)."""
_FLAG_CHECKSUM: Final = 1
_IOV_MAX: Final = 512  # stay well under the kernel's limit on segments per writev


@dataclasses.dataclass(frozen=True)
class RecordHeader:
    """The decoded header of a record."""

    index: int
    generation: int
    meta_size: int
    payload_size: int
    checksum: int | None
    run_id: bytes = NO_RUN_ID

    @property
    def payload_offset(self) -> int:
        """Offset of the payload from the start of the record."""
        return align_up(HEADER_SIZE + self.meta_size)

    @property
    def record_size(self) -> int:
        """Total size of the record in bytes."""
        return self.payload_offset + self.payload_size


def record_size(encoded: EncodedValue) -> int:
    """Bytes a record of ``encoded`` occupies."""
    return align_up(HEADER_SIZE + len(encoded.meta)) + encoded.payload_size


def _check_run_id(run_id: bytes) -> bytes:
    if not isinstance(run_id, bytes) or len(run_id) != RUN_ID_SIZE:
        raise ValueError(f"run_id must be {RUN_ID_SIZE} bytes, got {run_id!r}")
    return run_id


def record_segments(
    index: int,
    generation: int,
    encoded: EncodedValue,
    *,
    checksum: bool,
    run_id: bytes = NO_RUN_ID,
) -> list[bytes | memoryview]:
    """The byte segments of a record, in order, for a gathered write.

    Args:
        index: The sample index.
        generation: The entry's generation.
        encoded: The value, encoded.
        checksum: Store a CRC-32 of the whole record (header, meta and payload).
        run_id: The writing cache's run identity (:data:`RUN_ID_SIZE` bytes).
    """
    body: list[bytes | memoryview] = [encoded.meta]
    pad = align_up(HEADER_SIZE + len(encoded.meta)) - HEADER_SIZE - len(encoded.meta)
    if pad:
        body.append(bytes(pad))
    body.extend(encoded.payload_segments())
    fields = (
        MAGIC,
        CODEC_VERSION,
        _FLAG_CHECKSUM if checksum else 0,
        index,
        generation,
        len(encoded.meta),
        encoded.payload_size,
    )
    run_id = _check_run_id(run_id)
    crc = 0
    if checksum:  # over the header (its CRC field zero) and the body
        crc = zlib.crc32(_HEADER.pack(*fields, 0, run_id).ljust(HEADER_SIZE, b"\0"))
        for segment in body:
            crc = zlib.crc32(segment, crc)
    header = _HEADER.pack(*fields, crc, run_id)
    return [header.ljust(HEADER_SIZE, b"\0"), *body]


def write_segments(fd: int, segments: list[bytes | memoryview]) -> None:
    """Write all ``segments`` to ``fd`` with as few system calls as the kernel allows.

    Raises:
        OSError: If a write fails (e.g. ``ENOSPC``).
    """
    pending: Iterator[bytes | memoryview] = iter(segments)
    batch: list[memoryview] = []
    for segment in pending:
        batch.append(memoryview(segment).cast("B"))
        if len(batch) == _IOV_MAX:
            _writev_all(fd, batch)
            batch = []
    if batch:
        _writev_all(fd, batch)


def _writev_all(fd: int, views: list[memoryview]) -> None:
    while views:
        views = advance(views, os.writev(fd, views))


def parse_header(data: np.ndarray[Any, np.dtype[np.uint8]] | bytes) -> RecordHeader:
    """Decode and sanity-check a record header.

    Raises:
        RecordError: If the bytes are not a header of this codec version.
    """
    raw = data[:HEADER_SIZE].tobytes() if isinstance(data, np.ndarray) else data[:HEADER_SIZE]
    if len(raw) < HEADER_SIZE:
        raise RecordError(f"record shorter than its {HEADER_SIZE}-byte header")
    fields = _HEADER.unpack_from(raw)
    magic, version, flags, index, generation, meta_size, payload_size, crc, run_id = fields
    if any(raw[_HEADER.size : HEADER_SIZE]):
        raise RecordError("record header has non-zero padding")
    if magic != MAGIC:
        raise RecordError("not a revamper cache record (bad magic)")
    if version != CODEC_VERSION:
        raise RecordError(f"record has codec version {version}, expected {CODEC_VERSION}")
    if flags & ~_FLAG_CHECKSUM:
        raise RecordError(f"record has unknown flags {flags:#x}")
    if index < 0 or generation < 0:
        raise RecordError(f"record has a negative index ({index}) or generation ({generation})")
    if meta_size > MAX_RECORD_BYTES or payload_size > MAX_RECORD_BYTES:
        raise RecordError(f"record claims {meta_size} meta and {payload_size} payload bytes")
    return RecordHeader(
        index=index,
        generation=generation,
        meta_size=meta_size,
        payload_size=payload_size,
        checksum=crc if flags & _FLAG_CHECKSUM else None,
        run_id=run_id,
    )


def open_record(
    data: np.ndarray[Any, np.dtype[np.uint8]],
    index: int,
    *,
    run_id: bytes = NO_RUN_ID,
    require_checksum: bool = False,
) -> tuple[RecordHeader, bytes, np.ndarray[Any, np.dtype[np.uint8]]]:
    """Validate a whole record read into ``data`` and return its header, meta and payload.

    Args:
        data: The record's bytes, in a writable array the caller owns.
        index: The sample index the caller expects the record to hold.
        run_id: The run identity the record must carry (that of the reading cache).
        require_checksum: Refuse a record without a checksum (a file-backed cache, where a
            flipped flag bit must not switch the check off).

    Returns:
        ``(header, meta, payload)``; ``payload`` is a view into ``data``.

    Raises:
        RecordError: If the record is for another index or another run, has the wrong length,
            lacks a required checksum or fails its checksum.
    """
    header = parse_header(data)
    if header.index != index:
        raise RecordError(f"record holds sample {header.index}, expected {index}")
    if header.run_id != run_id:
        raise RecordError("record was written by another incarnation of the cache (run id)")
    if require_checksum and header.checksum is None:
        raise RecordError("record has no checksum")
    if header.record_size != data.size:
        raise RecordError(f"record is {data.size} bytes, its header says {header.record_size}")
    meta = data[HEADER_SIZE : HEADER_SIZE + header.meta_size]
    payload = data[header.payload_offset :]
    if header.checksum is not None:
        head = bytearray(data[:HEADER_SIZE].tobytes())
        head[_CRC_FIELD] = bytes(4)
        crc = zlib.crc32(data[HEADER_SIZE:].data, zlib.crc32(head))
        if crc != header.checksum:
            raise RecordError(f"record for sample {index} fails its checksum")
    return header, meta.tobytes(), payload
