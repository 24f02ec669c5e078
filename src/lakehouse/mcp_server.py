"""The MCP server: lakehouse datasets, SQL, indexes, models, embeddings, search and chat as MCP tools.

Every tool calls the gateway through `lakehouse.Client` (run on a worker
thread), so the MCP server holds no state of its own and works the same
against one process or split services. Each tool publishes the client's
answer model as its output schema and answers compact JSON text. Gateway
errors come back as tool errors carrying the gateway's code and message; an
unreachable gateway is a tool error too, and an empty resource list.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp.types import Resource as MCPResource
from pydantic import BaseModel, Field

from lakehouse import __version__
from lakehouse.client import Client
from lakehouse.client import models as m
from lakehouse.errors import LakehouseError, NotFound

log = logging.getLogger(__name__)

# The most rows a query_sql call returns, whatever the caller asks: an assistant's
# context window is the limit here, not the gateway's.
MAX_TOOL_ROWS = 1000
DEFAULT_TOOL_ROWS = 100
SAMPLE_ROWS = 5
RESOURCE_PREFIX = "lakehouse://datasets/"
# The catalog's dataset name rule, whole-string (a trailing newline is not a name).
DATASET_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Tools that only read the lakehouse itself.
READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
# Tools that reach model providers outside the lakehouse (chat, embeddings, text search).
REACHES_OUT = ToolAnnotations(read_only_hint=True, open_world_hint=True)

INSTRUCTIONS = (
    "Lakehouse: versioned SQL datasets (DuckDB SQL; each dataset is a view named after it, "
    'version N is the view "<name>@<N>"), vector indexes, embeddings and an LLM router. '
    "Start with list_datasets, read a dataset's schema with get_manifest, then query_sql; "
    "list_indexes names what search_vectors can search, list_models what chat can use."
)

T = TypeVar("T")


def compact(answer: BaseModel) -> CallToolResult:
    """A tool result: the answer as structured content and as compact JSON text."""
    data = answer.model_dump(mode="json", by_alias=True)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def _tool_error(exc: LakehouseError) -> ToolError:
    """`<code> (<status>): <message>`, or the message alone when the gateway was not reached."""
    if exc.code == "unavailable" and "url" in exc.detail:
        return ToolError(exc.message)
    return ToolError(f"{exc.code} ({exc.status}): {exc.message}")


class LakehouseMCP(MCPServer[Any]):
    """An MCP server whose resources are the gateway's datasets, listed live."""

    def __init__(self, client: Client) -> None:
        super().__init__(
            name="lakehouse", instructions=INSTRUCTIONS, version=__version__, lifespan=self._lifespan
        )
        self.client = client

    @staticmethod
    @asynccontextmanager
    async def _lifespan(server: MCPServer[Any]) -> AsyncIterator[None]:
        try:
            yield None
        finally:
            assert isinstance(server, LakehouseMCP)
            server.client.close()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run one client call on a worker thread (the client is synchronous)."""
        return await anyio.to_thread.run_sync(fn)

    async def list_resources(self) -> list[MCPResource]:
        """One resource per dataset (its schema and a sample of rows), plus any static ones.

        With the gateway down or refusing, only the static ones, and a warning on stderr.
        """
        try:
            datasets = await self.call(self.client.datasets)
        except LakehouseError as exc:
            log.warning("listing dataset resources failed: %s", exc.message)
            datasets = []
        listed = [
            MCPResource(
                uri=f"{RESOURCE_PREFIX}{item.name}",
                name=item.name,
                description=(
                    f"Dataset {item.name}: version {item.version}, {item.row_count} rows; "
                    "its schema and a sample of rows."
                ),
                mime_type="application/json",
            )
            for item in datasets
        ]
        return listed + await super().list_resources()


async def dataset_overview(server: LakehouseMCP, name: str) -> dict[str, Any]:
    """A dataset's current manifest summary and its first rows."""
    if not DATASET_NAME.fullmatch(name):
        raise ResourceNotFoundError(f"{name!r} is not a dataset name")
    client = server.client
    try:
        manifest = await server.call(lambda: client.dataset(name))
        sample = await server.call(lambda: client.sql_json(f'SELECT * FROM "{name}" LIMIT {SAMPLE_ROWS}'))
    except NotFound as exc:
        raise ResourceNotFoundError(str(_tool_error(exc))) from None
    except LakehouseError as exc:
        raise ResourceError(str(_tool_error(exc))) from None
    return {
        "name": manifest.name,
        "version": manifest.version,
        "row_count": manifest.row_count,
        "schema": [c.model_dump() for c in manifest.columns],
        "sample": {"columns": [c.model_dump() for c in sample.columns], "rows": sample.rows},
    }


def build_server(gateway_url: str, timeout: float = 120.0, token: str | None = None) -> LakehouseMCP:
    """The MCP server with every lakehouse tool, calling the gateway at `gateway_url`.

    `token` (if any) is sent as `Authorization: Bearer <token>` on every call.
    """
    client = Client(gateway_url, token=token or "", timeout=timeout)
    server = LakehouseMCP(client)

    async def call(fn: Callable[[], BaseModel]) -> CallToolResult:
        try:
            return compact(await server.call(fn))
        except LakehouseError as exc:
            raise _tool_error(exc) from None

    @server.tool(annotations=READS)
    async def list_datasets() -> Annotated[CallToolResult, m.DatasetList]:
        """List every dataset in the lakehouse: name, current version, row count, last update."""
        return await call(lambda: m.DatasetList(datasets=client.datasets()))

    @server.tool(annotations=READS)
    async def get_manifest(
        name: Annotated[str, Field(description="Dataset name, as listed by list_datasets.")],
        version: Annotated[
            int | None, Field(description="A past version number; the current version when omitted.", ge=1)
        ] = None,
    ) -> Annotated[CallToolResult, m.Manifest]:
        """A dataset's manifest: columns and types, row count, Parquet objects, fingerprint, parent."""
        return await call(lambda: client.dataset(name, version))

    @server.tool(annotations=READS)
    async def query_sql(
        sql: Annotated[
            str,
            Field(
                description=(
                    "One read-only DuckDB statement (SELECT, WITH, VALUES, DESCRIBE, SHOW, EXPLAIN). "
                    'Each dataset is a view named after it; version N is "<name>@<N>" (quoted).'
                )
            ),
        ],
        max_rows: Annotated[
            int,
            Field(description=f"Most rows to return (at most {MAX_TOOL_ROWS}).", ge=1, le=MAX_TOOL_ROWS),
        ] = DEFAULT_TOOL_ROWS,
    ) -> Annotated[CallToolResult, m.SqlResult]:
        """Run a read-only SQL query over the datasets; returns columns, rows and whether it was truncated."""
        return await call(lambda: client.sql_json(sql, max_rows=min(max_rows, MAX_TOOL_ROWS)))

    @server.tool(annotations=READS)
    async def list_indexes() -> Annotated[CallToolResult, m.IndexList]:
        """List the vector indexes search_vectors can search: name, dimension, metric, items, model."""
        return await call(lambda: m.IndexList(indexes=client.indexes()))

    @server.tool(annotations=READS)
    async def list_models() -> Annotated[CallToolResult, m.ModelList]:
        """List the model names chat accepts: the configured tiers, default models, providers' models."""
        return await call(lambda: m.ModelList(data=client.models()))

    @server.tool(annotations=REACHES_OUT)
    async def embed_text(
        texts: Annotated[list[str], Field(description="Texts to embed, one vector each.", min_length=1)],
        model: Annotated[
            str | None,
            Field(description="Embedding model (e.g. nomic-embed-text); the server's default if omitted."),
        ] = None,
    ) -> Annotated[CallToolResult, m.Embeddings]:
        """Turn texts into embedding vectors; returns the model, the dimension and one vector per text."""
        return await call(lambda: client.embed(texts, model or None))

    @server.tool(annotations=REACHES_OUT)
    async def search_vectors(
        index: Annotated[str, Field(description="Name of the vector index to search, from list_indexes.")],
        text: Annotated[
            str | None,
            Field(
                description="Query text, embedded with the index's model (a provider call); or give vector."
            ),
        ] = None,
        vector: Annotated[
            list[float] | None, Field(description="Query vector of the index's dimension; or give text.")
        ] = None,
        k: Annotated[int, Field(description="How many hits to return.", ge=1, le=1000)] = 10,
        filter: Annotated[
            dict[str, Any] | None,
            Field(
                description="Keep only items whose metadata matches: {'city': 'Oslo'}, "
                "{'rate': {'$lt': 25}}, {'skill': {'$in': ['CDL-A']}}, {'$or': [...]}"
            ),
        ] = None,
        mode: Annotated[
            Literal["vector", "keyword", "hybrid"],
            Field(
                description="vector: by meaning; keyword: BM25 over the items' texts (exact terms such as "
                "CDL-A); hybrid: both, fused by rank (needs text)."
            ),
        ] = "vector",
    ) -> Annotated[CallToolResult, m.SearchResult]:
        """Search an index, best first: each hit's id, score, metadata and the rankings that found it."""
        if mode == "vector" and (text is None) == (vector is None):
            raise ToolError("give exactly one of text or vector")
        if mode != "vector" and not text:
            raise ToolError(f"{mode} search needs a text")
        return await call(
            lambda: m.SearchResult(
                hits=client.search(index, text=text, vector=vector, k=k, filter=filter, mode=mode)
            )
        )

    @server.tool(annotations=REACHES_OUT)
    async def chat(
        model: Annotated[
            str,
            Field(
                description=(
                    "Model name (see list_models): bare names go to local Ollama; prefixes ollama/, "
                    "ollama_cloud/, openrouter/<vendor>/, opencode/, kimi/ or a :cloud suffix pick "
                    "another provider."
                )
            ),
        ],
        prompt: Annotated[str, Field(description="The user message.", min_length=1)],
        system: Annotated[str | None, Field(description="An optional system message.")] = None,
        max_tokens: Annotated[int | None, Field(description="Most tokens to generate.", ge=1)] = None,
    ) -> Annotated[CallToolResult, m.ChatAnswer]:
        """Ask a language model through the lakehouse's router; returns its answer and token counts."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        opts: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
        return await call(lambda: client.chat(model, messages, **opts))

    @server.tool(annotations=REACHES_OUT)
    async def ask(
        question: Annotated[str, Field(description="The question about the data.", min_length=1)],
        model: Annotated[
            str,
            Field(description="A model that can call tools (see list_models), e.g. qwen3:4b or kimi/<m>."),
        ],
        datasets: Annotated[
            list[str] | None,
            Field(
                description="Only these datasets may be read (from list_datasets); every one when omitted."
            ),
        ] = None,
        indexes: Annotated[
            list[str] | None, Field(description="Indexes it may search (from list_indexes).")
        ] = None,
        max_steps: Annotated[
            int | None, Field(description="Tool rounds at most (default 6).", ge=1, le=20)
        ] = None,
    ) -> Annotated[CallToolResult, m.AskAnswer]:
        """Answer a question from the lakehouse: a model runs read-only SQL, reads schemas and searches
        indexes on the server, then answers with its steps and citations (dataset, version, row and item ids).
        """
        return await call(lambda: client.ask(question, model, datasets, indexes, max_steps))

    @server.resource(
        RESOURCE_PREFIX + "{name}",
        name="dataset",
        description="A dataset's schema and a sample of its rows.",
        mime_type="application/json",
    )
    async def dataset(name: str) -> str:
        return json.dumps(await dataset_overview(server, name), default=str, separators=(",", ":"))

    @server.prompt(title="Explore a dataset")
    def explore_dataset(
        name: Annotated[str, Field(description="The dataset to explore, as listed by list_datasets.")],
    ) -> str:
        """Get to know one dataset: its columns, size, history and what its values look like."""
        return (
            f"Explore the lakehouse dataset {name!r}. First call get_manifest with name={name!r} to "
            "read its columns, types and row count. Then use query_sql (read-only DuckDB SQL; the "
            f'dataset is the view "{name}") to look at a few rows, count distinct values and nulls '
            "per column, and the range of numeric and date columns. Finish with a short summary: "
            "what one row means, the columns worth knowing, data quality problems, and three "
            "questions this dataset could answer, each with the SQL that answers it."
        )

    @server.prompt(title="Compare two versions of a dataset")
    def compare_versions(
        name: Annotated[str, Field(description="The dataset, as listed by list_datasets.")],
        old: Annotated[str, Field(description="The older version number, e.g. 1.")],
        new: Annotated[str, Field(description="The newer version number, e.g. 2.")],
    ) -> str:
        """What changed between two versions of a dataset: rows added, removed and changed."""
        return (
            f"Compare versions {old} and {new} of the lakehouse dataset {name!r}: they are the views "
            f'"{name}@{old}" and "{name}@{new}" (quote the names in SQL). '
            "Use get_manifest for both versions, then query_sql with EXCEPT to count and show "
            "the rows added and removed. Summarise the change."
        )

    return server
