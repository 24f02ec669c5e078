"""How the client sends vectors: float32 bytes, never JSON float lists.

Encoding floats as JSON text was most of a client's time in adding vectors,
so a batch whose every item carries a vector goes as one Arrow IPC stream
(`application/vnd.apache.arrow.stream`: columns `id`, `vector`, and `text`
and `metadata` when any item has them), and anything else as JSON with each
vector as the base64 of its little-endian float32 bytes. The server reads
both exactly as it reads JSON lists: same checks, same errors.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lakehouse.client.streams import ARROW_STREAM as ARROW_STREAM  # where the benches take it from

ITEM_KEYS = frozenset({"id", "vector", "text", "metadata"})

Floats = npt.NDArray[np.float32]


def float32(vector: Any) -> Floats:
    """A vector (list, tuple or array) as a 1-d float32 array; values past float32's range become inf."""
    with np.errstate(over="ignore"):  # the server refuses inf as it would from JSON
        return np.asarray(vector, dtype=np.float32).reshape(-1)


def base64_vector(vector: Any) -> str:
    """The base64 of a vector's little-endian float32 bytes, as the server reads it in JSON."""
    return base64.b64encode(float32(vector).astype("<f4", copy=False).tobytes()).decode("ascii")


def json_items(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Items for a JSON body, each vector sent as base64."""
    out = []
    for item in items:
        row = dict(item)
        if row.get("vector") is not None and not isinstance(row["vector"], str):
            row["vector"] = base64_vector(row["vector"])
        out.append(row)
    return out


def arrow_items(items: Sequence[Mapping[str, Any]]) -> bytes | None:
    """The items as one Arrow IPC stream, or None when JSON must carry them.

    JSON carries a batch with an item lacking a vector (to be embedded from its
    text), a vector already given as base64, or a key the stream has no column
    for, so the server sees exactly what the caller wrote.
    """
    if not items:
        return None
    for item in items:
        vector, text, meta = item.get("vector"), item.get("text"), item.get("metadata")
        if vector is None or isinstance(vector, str) or not ITEM_KEYS.issuperset(item):
            return None
        if not isinstance(item.get("id"), str) or not isinstance(text, str | None):
            return None  # the server's JSON errors name what is wrong
        if not isinstance(meta, Mapping | None):
            return None
    return arrow_stream(
        [item["id"] for item in items],
        [float32(item["vector"]) for item in items],
        texts=[item.get("text") for item in items],
        metadata=[item.get("metadata") for item in items],
    )


def arrow_stream(
    ids: Sequence[str],
    vectors: Sequence[Floats] | Floats,
    *,
    texts: Sequence[str | None] | None = None,
    metadata: Sequence[Mapping[str, Any] | None] | None = None,
) -> bytes:
    """One Arrow IPC stream of items: `vector` fixed-size when every row has one length, else a list.

    Raises:
        ValueError: not one vector (and text, metadata when given) per id.
    """
    import pyarrow as pa

    for name, given in (("vectors", vectors), ("texts", texts), ("metadata", metadata)):
        if given is not None and len(given) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(given)} {name}: give one per id")

    columns: dict[str, Any] = {"id": pa.array(list(ids), type=pa.string())}
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])
    else:
        rows = [float32(v) for v in vectors]
        lengths = {len(row) for row in rows}
        flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.float32)
        if len(lengths) == 1:
            columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), lengths.pop())
        else:  # the server names the row whose length is wrong
            offsets = np.concatenate([[0], np.cumsum([len(row) for row in rows])]).astype(np.int32)
            columns["vector"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
    if texts is not None and any(text is not None for text in texts):
        columns["text"] = pa.array(list(texts), type=pa.string())
    if metadata is not None and any(meta is not None for meta in metadata):
        encoded = [None if meta is None else json.dumps(dict(meta), allow_nan=False) for meta in metadata]
        columns["metadata"] = pa.array(encoded, type=pa.string())
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
