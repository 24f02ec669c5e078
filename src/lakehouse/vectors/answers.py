"""Search answers rendered: as JSON values, or as an Arrow IPC stream of one row per hit.

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

from lakehouse.vectors.ranking import RANKINGS, Answer


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


def hits_json(answer: Answer) -> list[list[dict[str, Any]]]:
    """Per query, its hits as the JSON answer's objects, best first."""
    out: list[list[dict[str, Any]]] = [[] for _ in range(answer.queries)]
    labels = [(by, place.tolist(), score.tolist()) for by, (place, score) in answer.ranks.items()]
    for at, (query, item, score) in enumerate(
        zip(answer.query.tolist(), answer.items, answer.score.tolist(), strict=True)
    ):
        hit: dict[str, Any] = {"id": item.id, "score": score, "metadata": item.metadata}
        if item.text is not None:
            hit["text"] = item.text
        hit["found_by"] = [by for by, places, _ in labels if places[at]]
        hit["ranks"] = {by: places[at] for by, places, _ in labels if places[at]}
        hit["scores"] = {by: values[at] for by, places, values in labels if places[at]}
        out[query].append(hit)
    return out


def hits_arrow(answer: Answer) -> bytes:
    """Every query's hits as one uncompressed Arrow IPC stream (see the module's columns)."""
    import pyarrow as pa

    items = answer.items
    columns = [
        pa.array(answer.query, pa.int32()),
        pa.array([item.id for item in items], pa.string()),
        pa.array(answer.score, pa.float64()),
        pa.array([_metadata_json(item.metadata) for item in items], pa.string()),
        pa.array([item.text for item in items], pa.string()),
    ]
    for by in RANKINGS:
        if by in answer.ranks:
            place, score = answer.ranks[by]
            missing = place == 0
            columns += [
                pa.array(place, pa.int32(), mask=missing),
                pa.array(score, pa.float64(), mask=missing),
            ]
        else:
            columns += [pa.nulls(len(items), pa.int32()), pa.nulls(len(items), pa.float64())]
    batch = pa.record_batch(columns, schema=schema())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())
