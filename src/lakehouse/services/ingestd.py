"""ingestd routes: `POST /v1/ingest/{name}`, an uploaded file streamed into a new dataset version."""

from __future__ import annotations

from typing import Literal

# DuckDB has to load before usearch (vectord): loaded after it, DuckDB's error
# messages are cut at their first formatted number. Routers import in service order.
import duckdb  # noqa: F401
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lakehouse.ingest.formats import FORMATS, MEDIA_TYPES
from lakehouse.services.deps import Deps, DepsDep

router = APIRouter(tags=["ingest"])


class ColumnOut(BaseModel):
    """A dataset column."""

    name: str
    type: str


class IngestResponse(BaseModel):
    """The version the upload produced (201) or already was (200); `rows` counts this upload."""

    dataset: str
    version: int
    rows: int
    row_count: int
    columns: list[ColumnOut] = Field(alias="schema")
    created: bool


_FILE = {"schema": {"type": "string", "format": "binary"}}
# One media type per format (the first MEDIA_TYPES names), then any bytes, then a form.
_MEDIA = [next(mime for mime, named in MEDIA_TYPES.items() if named == fmt) for fmt in FORMATS]
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            **{mime: _FILE for mime in _MEDIA},
            "application/octet-stream": _FILE,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post(
    "/v1/ingest/{name}",
    summary="Ingest a file (CSV, TSV, Parquet, JSON, NDJSON or XLSX) as a new version of a dataset",
    status_code=201,
    responses={
        201: {"model": IngestResponse, "description": "A new version"},
        200: {"model": IngestResponse, "description": "The same bytes again: the existing version"},
    },
    openapi_extra=_BODY,
)
async def ingest(
    name: str,
    request: Request,
    deps: DepsDep,
    mode: Literal["append", "replace"] = Query("append", description="Add to the data, or replace it."),
    sheet: str | None = Query(
        None,
        min_length=1,
        max_length=31,
        description="An XLSX workbook's sheet to read (default: the first).",
    ),
) -> JSONResponse:
    """The body is the file, or a multipart form with a `file` field, streamed to disk.

    The format comes from the Content-Type, else the multipart filename's extension, else the bytes.
    """
    content_type = request.headers.get("content-type", "")
    result = await deps.ingester.ingest(name, request.stream(), content_type, mode, sheet)
    body = {
        "dataset": result.manifest.name,
        "version": result.manifest.version,
        "rows": result.rows,
        "row_count": result.manifest.row_count,
        "schema": [c.to_dict() for c in result.schema],
        "created": result.created,
    }
    return JSONResponse(body, status_code=201 if result.created else 200)


async def startup(deps: Deps) -> None:
    """Remove dataset files a crashed ingest left behind."""
    await deps.ingester.sweep()
