"""Vectors sent as bytes: base64 float32 strings and Arrow IPC streams, read without Python float lists.

JSON float lists cost a client most of its time in encoding, and the server
as much in parsing. Two binary forms carry the same items instead:

- base64: a vector is the standard base64 of its little-endian float32
  bytes (`dim * 4` bytes), wherever JSON takes a vector.
- Arrow: `application/vnd.apache.arrow.stream`, an uncompressed IPC stream
  with columns `id` (string), `vector` (fixed_size_list<float32>[dim] or
  list<float32>), and optionally `text` (string) and `metadata` (a JSON
  object as a string per row). The vectors become float32 rows over the
  stream's own bytes, never Python floats.

Both are float32 only: a float64 or integer vector is refused (400), not
cast, since a silent cast would halve precision or double the bytes behind
the client's back. The body is already capped by `[http] max_json_bytes`;
compressed streams are refused because decompression could grow a small
body past every cap, so every buffer read lies within the bytes received.
Every malformed input raises `InvalidRequest` naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

import numpy as np

from lakehouse.errors import InvalidRequest
from lakehouse.media_types import ARROW_STREAM as ARROW_STREAM  # where vectord's routes take it from
from lakehouse.vectors.items import NewItem
from lakehouse.vectors.records import Vectors

COLUMNS = ("id", "vector", "text", "metadata")
# An IPC stream ends with a continuation marker and a zero length.
END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"
MAX_METADATA_BYTES = 64 * 1024
_RECORD_BATCH = 3  # MessageHeader union tag of a RecordBatch in Arrow's Message.fbs


def vector_of_base64(text: str) -> Vectors:
    """One float32 vector from the base64 of its little-endian bytes.

    Raises:
        InvalidRequest: not standard base64, or a byte length that is not a multiple of 4.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("a base64 vector is not valid standard base64") from None
    if len(raw) % 4:
        raise InvalidRequest(
            f"a base64 vector holds {len(raw)} bytes, not a whole number of float32 values (4 bytes each)"
        )
    return np.frombuffer(raw, dtype="<f4")


def rows_of_base64(texts: list[str]) -> Vectors | None:
    """Base64 vectors of one length and no padding as float32 rows, decoded in one pass; else None.

    A thousand-query batch decodes in a tenth of the time of one call per
    vector. None means the caller decodes each (`vector_of_base64`), which
    also says which is wrong: lengths differ, padding, or bytes that are not
    whole float32 values.
    """
    if not texts:
        return None
    width = len(texts[0])
    if width == 0 or width % 4 or any(len(text) != width for text in texts):
        return None
    try:
        raw = binascii.a2b_base64("".join(texts), strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    row_bytes = width // 4 * 3
    if len(raw) != row_bytes * len(texts) or row_bytes % 4:
        return None  # padding somewhere (only the last text can hold it and still decode)
    return np.frombuffer(raw, dtype="<f4").reshape(len(texts), row_bytes // 4)


def items_of_arrow(data: bytes, max_rows: int) -> list[NewItem]:
    """The items of an Arrow IPC stream; each vector a float32 row over the stream's bytes.

    Raises:
        InvalidRequest: a truncated, compressed or unreadable stream, more than `max_rows` rows,
            a missing `id` column, an unknown column, a column of the wrong type (vectors
            other than float32), null ids or vector values, metadata that is not a JSON object.
    """
    import pyarrow as pa

    if not data.endswith(END_OF_STREAM):
        raise InvalidRequest(
            "the Arrow stream does not end with its end-of-stream marker (truncated, or bytes after it)"
        )
    source = pa.BufferReader(pa.py_buffer(data))
    batches = []
    rows = 0
    try:
        reader = pa.ipc.MessageReader.open_stream(source)
        first = reader.read_next_message()
        if first.type != "schema":
            raise InvalidRequest("the Arrow stream does not start with a schema")
        schema = pa.ipc.read_schema(first)
        _check_schema(schema)
        for message in reader:
            if message.type != "record batch":
                raise InvalidRequest(f"the Arrow stream holds a {message.type} message; send record batches")
            length, compressed = _batch_header(message.metadata.to_pybytes())
            if compressed:
                raise InvalidRequest("compressed Arrow streams are not accepted; write it uncompressed")
            rows += length
            if rows > max_rows:
                raise InvalidRequest(
                    f"the Arrow stream holds more than the {max_rows}-item batch limit", limit=max_rows
                )
            batch = pa.ipc.read_record_batch(message, schema)
            batch.validate(full=True)
            batches.append(batch)
    except StopIteration:
        raise InvalidRequest("the Arrow stream holds no schema") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidRequest(f"the Arrow stream cannot be read: {exc}") from None
    if source.tell() != len(data):
        raise InvalidRequest("the Arrow stream has bytes after its end-of-stream marker")
    items: list[NewItem] = []
    for batch in batches:
        items.extend(_items_of_batch(batch))
    return items


def _check_schema(schema: Any) -> None:
    import pyarrow as pa

    names = list(schema.names)
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise InvalidRequest(
            f"the Arrow stream has unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the columns are {', '.join(COLUMNS)}"
        )
    if len(set(names)) != len(names):
        raise InvalidRequest("the Arrow stream repeats a column")
    if "id" not in names:
        raise InvalidRequest("the Arrow stream needs an `id` column (string)")
    for name in ("id", "text", "metadata"):
        if name in names and not _is_string(schema.field(name).type):
            raise InvalidRequest(f"column `{name}` must be string, not {schema.field(name).type}")
    if "vector" in names:
        kind = schema.field("vector").type
        lists = pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)
        if not lists or not pa.types.is_float32(kind.value_type):
            raise InvalidRequest(
                f"column `vector` must be fixed_size_list<float32>[dim] or list<float32>, not {kind}"
                " (vectors are float32 only; cast them before sending)"
            )


def _is_string(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _items_of_batch(batch: Any) -> list[NewItem]:
    """The items of one validated record batch."""
    columns = dict(zip(batch.schema.names, batch.columns, strict=True))
    ids_column = columns["id"]
    if ids_column.null_count:
        raise InvalidRequest("column `id` holds a null; every item needs an id")
    ids: list[str] = ids_column.to_pylist()
    vectors = _rows_of(columns["vector"]) if "vector" in columns else [None] * len(ids)
    texts: list[str | None] = columns["text"].to_pylist() if "text" in columns else [None] * len(ids)
    metadata = _metadata_of(columns["metadata"], ids) if "metadata" in columns else [None] * len(ids)
    return [
        NewItem(item_id, vector, text, meta)
        for item_id, vector, text, meta in zip(ids, vectors, texts, metadata, strict=True)
    ]


def _rows_of(column: Any) -> list[Vectors | None]:
    """Each row's vector as a float32 view (None for a null row, to be embedded from its text)."""
    import pyarrow as pa

    n = len(column)
    valid = (
        np.ones(n, dtype=bool) if column.null_count == 0 else column.is_valid().to_numpy(zero_copy_only=False)
    )
    if pa.types.is_fixed_size_list(column.type):
        size = column.type.list_size
        # `values` ignores the slice offset, and `flatten()` would drop null rows' slots.
        values = column.values.slice(column.offset * size, n * size)
        flat = _floats(values)
        matrix = flat.reshape(n, size)
        return [matrix[row] if valid[row] else None for row in range(n)]
    offsets = column.offsets.to_numpy(zero_copy_only=False)
    base = int(offsets[0])
    flat = _floats(column.values.slice(base, int(offsets[-1]) - base))
    starts = (offsets[:-1] - base).tolist()
    ends = (offsets[1:] - base).tolist()
    return [flat[s:e] if valid[row] else None for row, (s, e) in enumerate(zip(starts, ends, strict=True))]


def _floats(values: Any) -> Vectors:
    """A float32 array over the Arrow values (no copy), refusing null values inside vectors."""
    if values.null_count:
        raise InvalidRequest("column `vector` holds a null value inside a vector; send a number for each")
    array: Vectors = values.to_numpy(zero_copy_only=True)
    return array


def _metadata_of(column: Any, ids: list[str]) -> list[dict[str, Any] | None]:
    """Each row's metadata: a JSON object, or None for a null."""
    out: list[dict[str, Any] | None] = []
    for item_id, raw in zip(ids, column.to_pylist(), strict=True):
        if raw is None:
            out.append(None)
            continue
        if len(raw) > MAX_METADATA_BYTES:
            raise InvalidRequest(
                f"item {item_id!r}: metadata is over {MAX_METADATA_BYTES} characters", id=item_id
            )
        try:
            value = json.loads(raw, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise InvalidRequest(f"item {item_id!r}: metadata is not valid JSON: {exc}", id=item_id) from None
        if not isinstance(value, dict):
            raise InvalidRequest(f"item {item_id!r}: metadata must be a JSON object", id=item_id)
        out.append(value)
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _batch_header(meta: bytes) -> tuple[int, bool]:
    """(rows, compressed) of a RecordBatch message, read from its flatbuffer before any body is read.

    pyarrow exposes neither before it decodes (and decompresses) the body, and a
    compressed body could expand far past the bytes received.
    """
    try:
        root = _u32(meta, 0)
        kind = _field(meta, root, 1)
        header = _field(meta, root, 2)
        if kind is None or header is None or meta[kind] != _RECORD_BATCH:
            raise InvalidRequest("the Arrow stream holds a record batch message without its header")
        batch = header + _u32(meta, header)
        length_at = _field(meta, batch, 0)
        length = struct.unpack_from("<q", meta, length_at)[0] if length_at is not None else 0
        compressed = _field(meta, batch, 3) is not None
    except (struct.error, IndexError):
        raise InvalidRequest("the Arrow stream holds a damaged record batch header") from None
    if length < 0:
        raise InvalidRequest("the Arrow stream holds a record batch of negative length")
    return int(length), compressed


def _u32(buf: bytes, at: int) -> int:
    if at < 0:
        raise IndexError(at)
    value: int = struct.unpack_from("<I", buf, at)[0]
    return value


def _field(buf: bytes, table: int, index: int) -> int | None:
    """Where field `index` of the flatbuffer table at `table` starts, or None when it is absent."""
    if table < 0:
        raise IndexError(table)
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    if vtable < 0:
        raise IndexError(vtable)
    size = struct.unpack_from("<H", buf, vtable)[0]
    if 4 + 2 * index + 2 > size:
        return None
    offset: int = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
    if not offset:
        return None
    if table + offset >= len(buf):
        raise IndexError(table + offset)
    return table + offset
