"""The answers of the lakehouse API as pydantic models, as `lakehouse.Client` returns them.

Each names the fields CONTRACT.md promises; anything else a newer server adds
is kept (`extra="allow"`), so an older client keeps working. The MCP server
publishes these as its tools' output schemas.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    """Base of every answer: unknown fields are kept, not refused."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Health(Answer):
    """`GET /health`."""

    status: str
    service: str
    version: str


class Column(Answer):
    """A column: its name and DuckDB type."""

    name: str
    type: str


class DatasetSummary(Answer):
    """A dataset's current version, as listed."""

    name: str
    version: int
    row_count: int
    updated_at: str | None = None


class DatasetList(Answer):
    """Every dataset's current version."""

    datasets: list[DatasetSummary]
    next: str | None = None


class DataObject(Answer):
    """One data file of a version."""

    key: str
    size: int | None = None
    rows: int


class Manifest(Answer):
    """One immutable version of a dataset."""

    name: str
    version: int
    columns: list[Column] = Field(alias="schema", description="The dataset's columns, in order.")
    objects: list[DataObject] = Field(default_factory=list)
    row_count: int
    fingerprint: str | None = None
    created_at: str | None = None
    parent_version: int | None = None
    snapshot_id: int | None = Field(default=None, description="The Apache Iceberg snapshot of this version.")
    metadata_location: str | None = Field(default=None, description="The Iceberg metadata file holding it.")


class VersionSummary(Answer):
    """One entry of a dataset's history."""

    version: int
    row_count: int
    fingerprint: str | None = None
    created_at: str | None = None
    snapshot_id: int | None = None


class Expired(Answer):
    """What an expire removed: versions, and the bytes of the files only they used."""

    expired: list[int]
    bytes_freed: int


class VersionList(Answer):
    """A dataset's history, oldest first."""

    versions: list[VersionSummary]
    next: int | str | None = None


class IngestResult(Answer):
    """The version an upload produced (`created`) or already was."""

    dataset: str
    version: int
    rows: int
    row_count: int | None = None
    columns: list[Column] = Field(default_factory=list, alias="schema")
    created: bool


class SqlResult(Answer):
    """A query's JSON answer; `truncated` says rows were left out (by `max_rows` or the server's cap)."""

    columns: list[Column]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    elapsed_ms: float | None = None


class StoredObject(Answer):
    """An object just written."""

    key: str
    size: int
    etag: str | None = None


class ListedObject(StoredObject):
    """One object in a listing."""

    last_modified: str | None = None


class ObjectList(Answer):
    """A page of objects, sorted by key; `next` is the `after` of the next page."""

    objects: list[ListedObject]
    truncated: bool = False
    next: str | None = None


class IndexInfo(Answer):
    """What a vector index is and how many items it holds."""

    name: str
    dim: int
    metric: str
    count: int
    model: str | None = None
    source: dict[str, Any] | None = None
    synced_version: int | None = None
    pending: int = 0


class IndexList(Answer):
    """Every vector index."""

    indexes: list[IndexInfo]


class AddResult(Answer):
    """How many items a batch upserted and the index's new count."""

    added: int
    count: int


class Hit(Answer):
    """One search result; score: similarity (cosine, ip), distance (l2), BM25 (keyword) or RRF (hybrid)."""

    id: str
    score: float
    metadata: dict[str, Any] = Field(default_factory=dict)
    text: str | None = None
    found_by: list[str] = Field(default_factory=list)
    ranks: dict[str, int] = Field(default_factory=dict)
    scores: dict[str, float] = Field(default_factory=dict)


class SearchResult(Answer):
    """The hits of one query, best first."""

    hits: list[Hit]


class Embeddings(Answer):
    """One vector per text, in the order of the texts."""

    model: str
    dim: int
    vectors: list[list[float]]


class ChatAnswer(Answer):
    """A whole chat answer, with token counts and the provider's latency."""

    model: str
    provider: str
    content: str
    done_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None


class ProviderInfo(Answer):
    """A registered chat provider."""

    name: str
    kind: str


class Providers(Answer):
    """The registered chat providers and the default one."""

    default: str
    providers: list[ProviderInfo]


class ModelInfo(Answer):
    """One model of `GET /v1/models` (OpenAI's shape)."""

    id: str
    object: str = "model"
    owned_by: str | None = None


class ModelList(Answer):
    """`GET /v1/models`: tiers, default models and what each provider reports."""

    data: list[ModelInfo]
    object: str = "list"


class AskStep(Answer):
    """One tool call of an ask: the tool, the model's arguments, and the result the model read."""

    tool: str
    input: Any = None
    output: dict[str, Any] = Field(default_factory=dict)


class AskAnswer(Answer):
    """`POST /v1/ask`: the answer, the steps that led to it and what it cites.

    A citation is `{"type": "sql", "sql", "datasets": [{"dataset", "version"}], "row_ids"?}`
    or `{"type": "search", "index", "ids", "dataset"?, "version"?}`.
    """

    answer: str
    model: str
    steps: list[AskStep] = Field(default_factory=list)
    citations: list[dict[str, Any]] = Field(default_factory=list)
    provider: str | None = None
    finish: str | None = Field(default=None, description='"answer", or "max_steps" when the rounds ran out')
    rounds: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    elapsed_ms: float | None = None
