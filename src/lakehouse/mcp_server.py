"""The MCP server: lakehouse datasets, SQL, embeddings, vector search and chat as MCP tools.

Every tool proxies to the gateway's HTTP API (see CONTRACT.md), so the MCP
server holds no state of its own and works the same against one process or
split services. Gateway errors come back as tool errors carrying the
gateway's own message; an unreachable gateway is a tool error too.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, ToolAnnotations
from mcp.types import Resource as MCPResource
from pydantic import Field

from lakehouse import __version__

# The most rows a query_sql call returns, whatever the caller asks: an assistant's
# context window is the limit here, not the gateway's.
MAX_TOOL_ROWS = 1000
DEFAULT_TOOL_ROWS = 100
SAMPLE_ROWS = 5
RESOURCE_PREFIX = "lakehouse://datasets/"
# The catalog's dataset name rule, whole-string (a trailing newline is not a name).
DATASET_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The lakehouse tools read; none changes a dataset or an index.
READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
# chat and embed_text reach model providers outside the lakehouse.
REACHES_OUT = ToolAnnotations(read_only_hint=True, open_world_hint=True)

INSTRUCTIONS = (
    "Lakehouse: versioned SQL datasets (DuckDB SQL; each dataset is a view named after it, "
    'version N is the view "<name>@<N>"), vector indexes, embeddings and an LLM router. '
    "Start with list_datasets, read a dataset's schema with get_manifest, then query_sql."
)


class GatewayError(Exception):
    """The gateway refused a call, or could not be reached; the message says which and why."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class GatewayClient:
    """A small async client for the gateway's HTTP API."""

    def __init__(self, base_url: str, timeout: float = 120.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        token = (token or "").strip()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, headers=headers)

    async def call(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """One request; the decoded JSON answer, or GatewayError with the gateway's message."""
        try:
            response = await self._http.request(method, path, json=json_body, params=params)
        except httpx.TimeoutException:
            raise GatewayError(f"the lakehouse gateway at {self.base_url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise GatewayError(
                f"cannot reach the lakehouse gateway at {self.base_url} ({exc.__class__.__name__}); "
                "start it with `lakehouse serve` or pass the right --gateway URL"
            ) from None
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_error:
            err = body.get("error") if isinstance(body, dict) else None
            code = str(err.get("code")) if isinstance(err, dict) else None
            raise GatewayError(_error_message(response.status_code, body), code)
        return body

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


def _error_message(status: int, body: Any) -> str:
    """`<code> (<status>): <message>` from the contract's error body."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return f"{err.get('code', 'error')} ({status}): {err.get('message', '')}"
    return f"the gateway answered with status {status}"


class LakehouseMCP(MCPServer[Any]):
    """An MCP server whose resources are the gateway's datasets, listed live."""

    def __init__(self, gateway: GatewayClient) -> None:
        super().__init__(
            name="lakehouse",
            instructions=INSTRUCTIONS,
            version=__version__,
            lifespan=self._lifespan,
        )
        self.gateway = gateway

    @staticmethod
    @asynccontextmanager
    async def _lifespan(server: MCPServer[Any]) -> AsyncIterator[None]:
        try:
            yield None
        finally:
            assert isinstance(server, LakehouseMCP)
            await server.gateway.aclose()

    async def list_resources(self) -> list[MCPResource]:
        """One resource per dataset (its schema and a sample of rows), plus any static ones."""
        try:
            body = await self.gateway.call("GET", "/v1/catalog/datasets")
        except GatewayError as exc:
            raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from None
        datasets = [
            MCPResource(
                uri=f"{RESOURCE_PREFIX}{item['name']}",
                name=str(item["name"]),
                description=(
                    f"Dataset {item['name']}: version {item.get('version')}, "
                    f"{item.get('row_count')} rows; its schema and a sample of rows."
                ),
                mime_type="application/json",
            )
            for item in body.get("datasets", [])
        ]
        return datasets + await super().list_resources()


async def dataset_overview(gateway: GatewayClient, name: str) -> dict[str, Any]:
    """A dataset's current manifest summary and its first rows."""
    if not DATASET_NAME.fullmatch(name):
        raise ResourceNotFoundError(f"{name!r} is not a dataset name")
    try:
        manifest = await gateway.call("GET", f"/v1/catalog/datasets/{name}")
        sample = await gateway.call(
            "POST", "/v1/sql", json_body={"sql": f'SELECT * FROM "{name}" LIMIT {SAMPLE_ROWS}'}
        )
    except GatewayError as exc:
        if exc.code == "not_found":
            raise ResourceNotFoundError(str(exc)) from None
        raise ResourceError(str(exc)) from None
    return {
        "name": manifest.get("name"),
        "version": manifest.get("version"),
        "row_count": manifest.get("row_count"),
        "schema": manifest.get("schema"),
        "sample": {"columns": sample.get("columns"), "rows": sample.get("rows")},
    }


def build_server(gateway_url: str, timeout: float = 120.0, token: str | None = None) -> LakehouseMCP:
    """The MCP server with every lakehouse tool, proxying to the gateway at `gateway_url`.

    `token` (if any) is sent as `Authorization: Bearer <token>` on every call.
    """
    gateway = GatewayClient(gateway_url, timeout=timeout, token=token)
    server = LakehouseMCP(gateway)

    async def call(method: str, path: str, **kwargs: Any) -> Any:
        try:
            return await gateway.call(method, path, **kwargs)
        except GatewayError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(annotations=READS)
    async def list_datasets() -> dict[str, Any]:
        """List every dataset in the lakehouse: name, current version, row count, last update."""
        result: dict[str, Any] = await call("GET", "/v1/catalog/datasets")
        return result

    @server.tool(annotations=READS)
    async def get_manifest(
        name: Annotated[str, Field(description="Dataset name, as listed by list_datasets.")],
        version: Annotated[
            int | None, Field(description="A past version number; the current version when omitted.", ge=1)
        ] = None,
    ) -> dict[str, Any]:
        """A dataset's manifest: columns and types, row count, Parquet objects, fingerprint, parent."""
        params = {"version": version} if version is not None else None
        path = f"/v1/catalog/datasets/{quote(name, safe='')}"
        result: dict[str, Any] = await call("GET", path, params=params)
        return result

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
    ) -> dict[str, Any]:
        """Run a read-only SQL query over the datasets; returns columns, rows and whether it was truncated."""
        result: dict[str, Any] = await call(
            "POST", "/v1/sql", json_body={"sql": sql, "max_rows": min(max_rows, MAX_TOOL_ROWS)}
        )
        return result

    @server.tool(annotations=REACHES_OUT)
    async def embed_text(
        texts: Annotated[list[str], Field(description="Texts to embed, one vector each.", min_length=1)],
        model: Annotated[
            str | None,
            Field(description="Embedding model (e.g. nomic-embed-text); the server's default if omitted."),
        ] = None,
    ) -> dict[str, Any]:
        """Turn texts into embedding vectors; returns the model, the dimension and one vector per text."""
        body: dict[str, Any] = {"texts": texts}
        if model:
            body["model"] = model
        result: dict[str, Any] = await call("POST", "/v1/embed", json_body=body)
        return result

    @server.tool(annotations=READS)
    async def search_vectors(
        index: Annotated[str, Field(description="Name of the vector index to search.")],
        text: Annotated[
            str | None, Field(description="Query text, embedded with the index's model; or give vector.")
        ] = None,
        vector: Annotated[
            list[float] | None, Field(description="Query vector of the index's dimension; or give text.")
        ] = None,
        k: Annotated[int, Field(description="How many hits to return.", ge=1, le=1000)] = 10,
        filter: Annotated[
            dict[str, Any] | None,
            Field(description="Keep only items whose metadata equals every given field: {'city': 'Oslo'}"),
        ] = None,
    ) -> dict[str, Any]:
        """Nearest neighbours in a vector index, best first: each hit's id, score and metadata."""
        if (text is None) == (vector is None):
            raise ToolError("give exactly one of text or vector")
        body: dict[str, Any] = {"k": k}
        if text is not None:
            body["text"] = text
        else:
            body["vector"] = vector
        if filter:
            body["filter"] = filter
        path = f"/v1/vectors/index/{quote(index, safe='')}/search"
        result: dict[str, Any] = await call("POST", path, json_body=body)
        return result

    @server.tool(annotations=REACHES_OUT)
    async def chat(
        model: Annotated[
            str,
            Field(
                description=(
                    "Model name: bare names go to local Ollama; prefixes ollama/, ollama_cloud/, "
                    "openrouter/<vendor>/, opencode/, kimi/ or a :cloud suffix pick another provider."
                )
            ),
        ],
        prompt: Annotated[str, Field(description="The user message.", min_length=1)],
        system: Annotated[str | None, Field(description="An optional system message.")] = None,
        max_tokens: Annotated[int | None, Field(description="Most tokens to generate.", ge=1)] = None,
    ) -> dict[str, Any]:
        """Ask a language model through the lakehouse's router; returns its answer and token counts."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        body: dict[str, Any] = {"model": model, "messages": messages}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        result: dict[str, Any] = await call("POST", "/v1/chat", json_body=body)
        return result

    @server.resource(
        RESOURCE_PREFIX + "{name}",
        name="dataset",
        description="A dataset's schema and a sample of its rows.",
        mime_type="application/json",
    )
    async def dataset(name: str) -> str:
        return json.dumps(await dataset_overview(gateway, name), default=str)

    return server
