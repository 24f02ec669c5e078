"""Write-ahead log records: one framed, checksummed record per acknowledged batch.

A record is `MAGIC | header length (u32) | vector bytes (u64) | CRC-32 (u32)`
followed by a JSON header and the batch's vectors as little-endian float32.
The CRC covers header and vectors, so a torn or damaged record is recognised
and ignored on replay instead of being applied half-way.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

MAGIC = b"LHV1"
_FRAME = struct.Struct("<4sIQI")

Vectors = npt.NDArray[np.float32]


class CorruptRecord(ValueError):
    """The bytes are not one whole, intact record."""


@dataclass
class Batch:
    """One acknowledged change to an index: upserted items, deleted ids, or a synced version."""

    op: Literal["add", "delete", "synced"]
    ids: list[str]
    keys: list[int]
    vectors: Vectors = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    metadata: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)
    # Per item, the content hash of what its vector was embedded from (linked indexes).
    digests: list[str | None] = field(default_factory=list)
    # op "synced": the dataset version the index now reflects.
    version: int | None = None


def encode(batch: Batch) -> bytes:
    """The framed bytes of one record."""
    header = json.dumps(
        {
            "op": batch.op,
            "ids": batch.ids,
            "keys": batch.keys,
            "metadata": batch.metadata,
            "texts": batch.texts,
            "shape": list(batch.vectors.shape),
            "digests": batch.digests,
            "version": batch.version,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    vectors = np.ascontiguousarray(batch.vectors, dtype="<f4").tobytes()
    crc = zlib.crc32(vectors, zlib.crc32(header))
    return _FRAME.pack(MAGIC, len(header), len(vectors), crc) + header + vectors


def decode(data: bytes) -> Batch:
    """The record in `data`.

    Raises:
        CorruptRecord: the bytes are truncated, damaged or not a record.
    """
    if len(data) < _FRAME.size:
        raise CorruptRecord("record shorter than its frame")
    magic, header_len, vector_len, crc = _FRAME.unpack_from(data)
    if magic != MAGIC:
        raise CorruptRecord("bad magic")
    end = _FRAME.size + header_len + vector_len
    if len(data) != end:
        raise CorruptRecord(f"record is {len(data)} bytes, its frame says {end}")
    header = data[_FRAME.size : _FRAME.size + header_len]
    vectors = data[_FRAME.size + header_len : end]
    if zlib.crc32(vectors, zlib.crc32(header)) != crc:
        raise CorruptRecord("checksum mismatch")
    try:
        head = json.loads(header)
        shape = tuple(int(n) for n in head["shape"])
        # A read-only view over the record's bytes where float32 is little-endian (no copy).
        array = np.frombuffer(vectors, dtype="<f4").astype(np.float32, copy=False).reshape(shape)
        return Batch(
            op=head["op"],
            ids=[str(i) for i in head["ids"]],
            keys=[int(k) for k in head["keys"]],
            vectors=array,
            metadata=list(head["metadata"]),
            texts=list(head["texts"]),
            digests=list(head.get("digests") or []),
            version=None if head.get("version") is None else int(head["version"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptRecord(f"unreadable header: {exc}") from None
