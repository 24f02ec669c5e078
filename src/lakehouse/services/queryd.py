"""queryd routes: `POST /v1/sql`, answered as JSON or as an Arrow IPC stream."""

from __future__ import annotations

from typing import Any

# DuckDB has to load before usearch (vectord): loaded after it, DuckDB's error
# messages are cut at their first formatted number. Routers import in service order.
import duckdb  # noqa: F401
from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.media_types import ARROW_STREAM
from lakehouse.services.deps import Deps, DepsDep
from lakehouse.services.http import FastJSONResponse
from lakehouse.services.negotiation import wants

router = APIRouter(tags=["sql"])


class SqlRequest(BaseModel):
    """One read-only statement and an optional row cap."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, description="Exactly one SELECT, WITH, VALUES, DESCRIBE, SHOW or EXPLAIN.")
    max_rows: int | None = Field(
        default=None, ge=0, description="Rows to return at most; capped by `[queryd] max_rows`."
    )


class ColumnOut(BaseModel):
    """A result column."""

    name: str
    type: str


class SqlResponse(BaseModel):
    """A JSON result: decimals as exact strings, NaN/inf as null, BLOBs base64, times ISO 8601."""

    columns: list[ColumnOut]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    elapsed_ms: float


@router.post(
    "/v1/sql",
    summary="Run one read-only SQL statement over the datasets",
    response_model=SqlResponse,
    responses={200: {"content": {ARROW_STREAM: {}}, "description": "JSON, or Arrow IPC when asked for"}},
)
async def run_sql(body: SqlRequest, deps: DepsDep, accept: str = Header(default="")) -> Any:
    """Every dataset is a view by its name, and version N of it the view `"<name>@<N>"`."""
    if wants(accept, ARROW_STREAM):
        stream = await deps.query.arrow(body.sql)
        return StreamingResponse(stream.chunks(), media_type=ARROW_STREAM)
    result = await deps.query.run(body.sql, body.max_rows)
    # Rows are JSON-safe already; skipping response-model validation keeps latency low.
    return FastJSONResponse(
        {
            "columns": [{"name": c.name, "type": c.type} for c in result.columns],
            "rows": result.rows,
            "row_count": result.row_count,
            "truncated": result.truncated,
            "elapsed_ms": result.elapsed_ms,
        }
    )


async def startup(deps: Deps) -> None:
    """Start the query workers in the background: /health answers while they start."""
    deps.query.start()
