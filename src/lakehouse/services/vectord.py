"""vectord routes: HNSW indexes, durable upserts and deletes, vector/keyword/hybrid search, dataset sync."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakehouse.errors import InvalidRequest
from lakehouse.runner import run_blocking
from lakehouse.services.deps import Deps, DepsDep, deps_of
from lakehouse.services.http import FastJSONResponse
from lakehouse.services.negotiation import wants
from lakehouse.vectors import NewItem
from lakehouse.vectors.answers import hits_arrow, hits_json
from lakehouse.vectors.items import Vector
from lakehouse.vectors.ranking import Answer
from lakehouse.vectors.records import Vectors
from lakehouse.vectors.wire import ARROW_STREAM, COLUMNS, items_of_arrow, rows_of_base64, vector_of_base64

router = APIRouter(prefix="/v1/vectors", tags=["vectors"])

BASE64_VECTOR = "a list of numbers, or the standard base64 of the vector's little-endian float32 bytes"
ARROW_ADD = (
    f"JSON, or `{ARROW_STREAM}`: an uncompressed Arrow IPC stream with columns "
    f"{', '.join(f'`{c}`' for c in COLUMNS)}: `id` string, `vector` fixed_size_list<float32>[dim] "
    "or list<float32> (float32 only; a null vector is embedded from the row's text), `text` string, "
    "`metadata` a JSON object as a string. Either way at most `[vectord] max_batch` items and "
    "`[http] max_json_bytes` bytes, applied whole or not at all."
)

ARROW_HITS = (
    f"JSON, or with `Accept: {ARROW_STREAM}` an Arrow IPC stream of one row per hit: `query` int32 "
    "(the query's place in `vectors`, 0 for one query), `id`, `score`, `metadata` (a JSON object as "
    "a string), `text`, and `vector_rank`, `vector_score`, `keyword_rank`, `keyword_score` "
    "(null where that ranking did not find the hit)."
)


class SourceIn(BaseModel):
    """The dataset an index follows: its id column, the columns embedded, the columns kept as metadata."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    id_column: str
    text_columns: list[str]
    metadata_columns: list[str] | None = None


class IndexCreate(BaseModel):
    """A new index: its name, dimension, metric, embedding model, storage type and, optionally, dataset."""

    name: str
    dim: int
    metric: Literal["cosine", "l2", "ip"] = "cosine"
    model: str | None = None
    dtype: Literal["f32", "f16", "i8"] | None = None
    source: SourceIn | None = None


class LoadProgress(BaseModel):
    """How far a loading index has got: log records replayed of those to replay."""

    replayed: int
    total: int


class IndexInfo(BaseModel):
    """What an index is and how many items it holds; `state` is "loading" until it can be used."""

    name: str
    dim: int
    metric: str
    count: int
    model: str
    dtype: str
    created_at: str
    source: dict[str, Any] | None = None
    synced_version: int | None = None
    pending: int = 0
    sync_error: str | None = None
    state: Literal["loading", "ready"] = "ready"
    progress: LoadProgress | None = None
    load_error: str | None = None
    engine: Literal["faiss", "hnswlib", "usearch"] = "usearch"
    # replayed vectors, searched exactly until a background task links them into the graph
    unindexed: int = 0


class IndexList(BaseModel):
    """Every index."""

    indexes: list[IndexInfo]


class ItemIn(BaseModel):
    """An item to upsert: a vector or a text (embedded with the index's model)."""

    id: str
    vector: list[float] | str | None = Field(default=None, description=BASE64_VECTOR)
    text: str | None = None
    metadata: dict[str, Any] | None = None


class AddBody(BaseModel):
    """A batch of items, applied whole or not at all."""

    items: list[ItemIn]


class AddResult(BaseModel):
    """How many items the batch upserted and the index's new count."""

    added: int
    count: int


class SearchBody(BaseModel):
    """One query (`vector` or `text`) or a batch (`vectors`), with k and a metadata filter."""

    vector: list[float] | str | None = Field(default=None, description=BASE64_VECTOR)
    vectors: list[list[float] | str] | None = Field(default=None, description=f"each {BASE64_VECTOR}")
    text: str | None = None
    k: int = Field(default=10)
    filter: dict[str, Any] | None = None
    mode: Literal["vector", "keyword", "hybrid"] = "vector"


class HitOut(BaseModel):
    """One result; score: similarity (cosine, ip), distance (l2), BM25 (keyword) or RRF (hybrid).

    `found_by` names the rankings that found it; `ranks` and `scores` give its place and score in each.
    """

    id: str
    score: float
    metadata: dict[str, Any]
    text: str | None = None
    found_by: list[Literal["vector", "keyword"]]
    ranks: dict[str, int]
    scores: dict[str, float]


class SearchHits(BaseModel):
    """The hits of one query, best first."""

    hits: list[HitOut]


class SearchResult(BaseModel):
    """`hits` for a single query; `results` (one per query) for `vectors`."""

    hits: list[HitOut] | None = None
    results: list[SearchHits] | None = None


Body = TypeVar("Body", bound=BaseModel)


def body_kind(request: Request, *, arrow: bool) -> Literal["json", "arrow"]:
    """What the body is by its Content-Type: JSON (also when none is given) or, where taken, Arrow.

    Raises:
        InvalidRequest: a Content-Type the route does not read.
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not media or media == "application/json" or media.endswith("+json"):
        return "json"
    if arrow and media == ARROW_STREAM:
        return "arrow"
    accepted = f"application/json or {ARROW_STREAM}" if arrow else "application/json"
    raise InvalidRequest(f"Content-Type {media!r} is not read here; send {accepted}", content_type=media)


def vector_of(given: list[float] | str) -> Vector:
    """A JSON vector as given: its float list, or the float32 row of its base64 string."""
    return vector_of_base64(given) if isinstance(given, str) else given


def vectors_of(given: list[list[float] | str]) -> list[Vector] | Vectors:
    """JSON query vectors as given; a batch of base64 strings of one length decoded in one pass."""
    if len(given) > 1 and all(isinstance(v, str) for v in given):
        rows = rows_of_base64(given)  # type: ignore[arg-type]
        if rows is not None:
            return rows
    return [vector_of(v) for v in given]


async def parse(request: Request, model: type[Body]) -> Body:
    """Validate a JSON body straight from its bytes.

    pydantic's own JSON parser reads large vector batches several times
    faster than `json.loads` followed by validation, which FastAPI would do.
    """
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def documented(model: type[BaseModel], arrow: str | None = None) -> dict[str, Any]:
    """OpenAPI text for a body that `parse` reads (nested models inlined), and an Arrow alternative."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    body: dict[str, Any] = {"content": {"application/json": {"schema": inline(schema)}}, "required": True}
    if arrow is not None:
        body["content"][ARROW_STREAM] = {"schema": {"type": "string", "format": "binary"}}
        body["description"] = arrow
    return {"requestBody": body}


async def startup(deps: Deps) -> None:
    """List every index and start loading each (snapshot, then log replay) in the background."""
    await deps.vectors.load()


@router.post("/index", status_code=201, response_model=IndexInfo, summary="Create an index")
async def create_index(body: IndexCreate, deps: DepsDep) -> dict[str, Any]:
    """Create an index (one with a `source` fills itself from the dataset); 409 when the name is taken."""
    source = body.source.model_dump(exclude_none=True) if body.source is not None else None
    return await deps.vectors.create(body.name, body.dim, body.metric, body.model, body.dtype, source)


@router.get("/index", response_model=IndexList, summary="List indexes")
async def list_indexes(deps: DepsDep) -> dict[str, Any]:
    """Every index's info."""
    return {"indexes": deps.vectors.indexes()}


@router.get("/index/{name}", response_model=IndexInfo, summary="Describe an index")
async def get_index(name: str, deps: DepsDep) -> dict[str, Any]:
    """One index's info."""
    return deps.vectors.info(name)


@router.delete("/index/{name}", status_code=204, summary="Delete an index")
async def delete_index(name: str, deps: DepsDep) -> Response:
    """Delete an index and its items."""
    await deps.vectors.delete(name)
    return Response(status_code=204)


@router.post(
    "/index/{name}/add",
    response_model=AddResult,
    summary="Upsert items",
    openapi_extra=documented(AddBody, arrow=ARROW_ADD),
)
async def add_items(name: str, request: Request, deps: DepsDep) -> dict[str, int]:
    """Upsert a batch (JSON, or an Arrow stream); acknowledged once durably logged."""
    if body_kind(request, arrow=True) == "arrow":
        items = await run_blocking(items_of_arrow, await request.body(), deps.settings.vectord.max_batch)
    else:
        body = await parse(request, AddBody)
        items = [
            NewItem(i.id, None if i.vector is None else vector_of(i.vector), i.text, i.metadata)
            for i in body.items
        ]
    added, count = await deps.vectors.add(name, items)
    return {"added": added, "count": count}


@router.post(
    "/index/{name}/search",
    response_model=SearchResult,
    summary="Search an index",
    openapi_extra=documented(SearchBody),
    responses={200: {"content": {ARROW_STREAM: {}}, "description": ARROW_HITS}},
)
async def search(name: str, request: Request) -> Response:
    """The k best items by vector, keyword (BM25) or both (RRF), among those the filter keeps."""
    deps = deps_of(request)  # not a dependency: solving one costs a search request a tenth of its time
    body_kind(request, arrow=False)  # refuses any body but JSON
    body = await parse(request, SearchBody)
    given = body.vectors if body.vectors is not None else [body.vector] if body.vector is not None else None
    vectors = None if given is None else vectors_of(given)
    found = await deps.vectors.answer(name, vectors, body.text, body.k, body.filter, body.mode)
    if wants(request.headers.get("accept"), ARROW_STREAM):
        return Response(await run_blocking(hits_arrow, found), media_type=ARROW_STREAM)
    # Rendered directly: the hits are plain data, and skipping the response
    # model's re-validation keeps large batch answers fast. A batch's answer is
    # rendered on a worker thread, so encoding thousands of hits never holds
    # up the event loop.
    if body.vectors is not None:
        return Response(await run_blocking(_render_batch, found), media_type="application/json")
    return FastJSONResponse({"hits": hits_json(found)[0]})


def _render_batch(found: Answer) -> bytes:
    """A batch's answer as JSON bytes."""
    return bytes(FastJSONResponse({"results": [{"hits": hits} for hits in hits_json(found)]}).body)


@router.post("/index/{name}/sync", response_model=IndexInfo, summary="Catch up with the dataset")
async def sync_index(name: str, deps: DepsDep) -> dict[str, Any]:
    """Bring an index that follows a dataset up to its current version; answers when done."""
    return await deps.vectors.sync(name)


@router.delete("/index/{name}/items/{item_id:path}", status_code=204, summary="Delete an item")
async def delete_item(name: str, item_id: str, deps: DepsDep) -> Response:
    """Delete one item; 404 when the index or the item is absent."""
    await deps.vectors.delete_item(name, item_id)
    return Response(status_code=204)
