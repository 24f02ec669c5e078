"""The Iceberg REST catalog routes at `/iceberg/v1`, served with catalogd, and their error shape.

Base URI for Iceberg clients: `http://HOST:PORT/iceberg`. pyiceberg:
`load_catalog("lh", type="rest", uri=".../iceberg")`; DuckDB: `ATTACH ''
AS lh (TYPE iceberg, ENDPOINT '.../iceberg', AUTHORIZATION_TYPE 'none')`.

Iceberg clients parse errors as `{"error": {"message", "type", "code"}}`, so
`IcebergErrors` rewrites every error answered under `/iceberg` (by a route,
the token check, the body limits or the gateway) into that shape.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakehouse.catalog.rest import IcebergRest
from lakehouse.services.deps import DepsDep

PREFIX = "/iceberg"
router = APIRouter(prefix=f"{PREFIX}/v1", tags=["iceberg"])

_TYPES = {
    400: "BadRequestException",
    401: "NotAuthorizedException",
    403: "ForbiddenException",
    404: "NoSuchTableException",
    405: "BadRequestException",
    406: "UnsupportedOperationException",
    408: "BadRequestException",
    409: "CommitFailedException",
    413: "BadRequestException",
    429: "ServiceUnavailableException",
    500: "ServerErrorException",
    501: "UnsupportedOperationException",
    502: "ServerErrorException",
    503: "ServiceUnavailableException",
    504: "ServiceUnavailableException",
}


def _rest(deps: Any) -> IcebergRest:
    return IcebergRest(deps.catalog)


@router.get("/config", summary="Iceberg REST catalog configuration")
async def config(deps: DepsDep, warehouse: str | None = None) -> dict[str, Any]:
    """No prefix; the endpoints this catalog implements."""
    return _rest(deps).config()


@router.get("/namespaces", summary="Iceberg namespaces: `default` holds every dataset")
async def namespaces(parent: str | None = None) -> dict[str, Any]:
    """The one namespace (nested namespaces: none)."""
    return {"namespaces": [] if parent else [["default"]], "next-page-token": None}


@router.get("/namespaces/{namespace}", summary="An Iceberg namespace")
async def namespace(namespace: str) -> dict[str, Any]:
    """`default` and its (empty) properties; any other: 404 NoSuchNamespaceException."""
    IcebergRest.check_namespace(namespace)
    return {"namespace": [namespace], "properties": {}}


@router.head("/namespaces/{namespace}", status_code=204, summary="Whether an Iceberg namespace exists")
async def namespace_exists(namespace: str) -> Response:
    """204 for `default`, 404 otherwise."""
    IcebergRest.check_namespace(namespace)
    return Response(status_code=204)


@router.get("/namespaces/{namespace}/tables", summary="The tables (datasets) of a namespace")
async def tables(
    namespace: str,
    deps: DepsDep,
    page_size: Annotated[int | None, Query(alias="pageSize", ge=1)] = None,
    page_token: Annotated[str | None, Query(alias="pageToken")] = None,
) -> dict[str, Any]:
    """Every dataset as a table identifier, by name, paged."""
    return await _rest(deps).tables(namespace, page_size, page_token)


@router.get("/namespaces/{namespace}/tables/{table}", summary="Load a table: its current metadata")
async def load_table(
    namespace: str, table: str, deps: DepsDep, snapshots: str | None = None
) -> dict[str, Any]:
    """The current version's metadata location and metadata."""
    loaded = await _rest(deps).load(namespace, table)
    return {"metadata-location": loaded.metadata_location, "metadata": loaded.metadata, "config": {}}


@router.head("/namespaces/{namespace}/tables/{table}", status_code=204, summary="Whether a table exists")
async def table_exists(namespace: str, table: str, deps: DepsDep) -> Response:
    """204 when the dataset exists, 404 otherwise."""
    await _rest(deps).load(namespace, table)
    return Response(status_code=204)


@router.post("/namespaces/{namespace}/tables/{table}", summary="Commit to a table: a new dataset version")
async def commit_table(
    namespace: str, table: str, deps: DepsDep, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """Apply `requirements` and `updates`; an append or overwrite becomes the next version."""
    committed = await _rest(deps).commit(namespace, table, body)
    return {"metadata-location": committed.metadata_location, "metadata": committed.metadata}


@router.post("/namespaces/{namespace}/tables/{table}/metrics", status_code=204, summary="Scan metrics report")
async def metrics_report(namespace: str, table: str) -> Response:
    """Accepted and dropped: clients send these after scans."""
    IcebergRest.check_namespace(namespace)
    return Response(status_code=204)


class IcebergErrors:
    """ASGI middleware: errors under `/iceberg` in the Iceberg REST shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                if message["status"] < 400 or b"content-encoding" in names:
                    await send(message)
                    return
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = iceberg_error(start["status"], b"".join(chunks))
            kept = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            kept.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": kept})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


def iceberg_error(status: int, body: bytes) -> bytes:
    """A lakehouse error body (or any body) as the Iceberg REST error body."""
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and "type" in error and isinstance(error.get("code"), int):
        return body
    error = error if isinstance(error, dict) else {}
    kind = error.get("iceberg_type")
    if not isinstance(kind, str):
        kind = _TYPES.get(status, "BadRequestException" if status < 500 else "ServerErrorException")
    message = error.get("message") if isinstance(error.get("message"), str) else f"HTTP {status}"
    return json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
