"""Search answers as an Arrow IPC stream: one row per hit, for clients that asked for it.

A batch of a thousand queries answers ten thousand hits. As JSON that is a
megabyte and a half the server renders and compresses and the client parses
back into dicts, most of a batch's time; as Arrow it is a few columns the
client reads in place. The rows, in order of query then place:

    query          int32    the query's position in the request (0 for a single query)
    id             string
    score          float64  the hit's score, as in the JSON answer
    metadata       string   the item's metadata as a JSON object
    text           string   the item's text, null when it has none
    vector_rank    int32    its place in the vector ranking (1 is best), null when not found by vector
    vector_score   float64  its score in that ranking
    keyword_rank   int32    likewise for BM25, null when not found by keyword
    keyword_score  float64
"""

from __future__ import annotations

import json
from typing import Any

from lakehouse.vectors.index import Hit

RANKINGS = ("vector", "keyword")


def schema() -> Any:
    """The answer's Arrow schema."""
    import pyarrow as pa

    fields = [
        pa.field("query", pa.int32(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("metadata", pa.string(), nullable=False),
        pa.field("text", pa.string()),
    ]
    for by in RANKINGS:
        fields += [pa.field(f"{by}_rank", pa.int32()), pa.field(f"{by}_score", pa.float64())]
    return pa.schema(fields)


def _metadata_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":")) if metadata else "{}"


def hits_arrow(found: list[list[Hit]]) -> bytes:
    """Every query's hits as one uncompressed Arrow IPC stream (see the module's columns)."""
    import pyarrow as pa

    queries = [query for query, hits in enumerate(found) for _ in hits]
    hits = [hit for query_hits in found for hit in query_hits]
    columns = [
        pa.array(queries, pa.int32()),
        pa.array([hit.id for hit in hits], pa.string()),
        pa.array([hit.score for hit in hits], pa.float64()),
        pa.array([_metadata_json(hit.metadata) for hit in hits], pa.string()),
        pa.array([hit.text for hit in hits], pa.string()),
    ]
    for by in RANKINGS:
        columns += [
            pa.array([hit.ranks.get(by) for hit in hits], pa.int32()),
            pa.array([hit.scores.get(by) for hit in hits], pa.float64()),
        ]
    batch = pa.record_batch(columns, schema=schema())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())
