"""Query results as the contract's JSON, or as an Arrow IPC stream.

JSON choices: dates, times and timestamps are ISO 8601 strings; DECIMAL and
HUGEINT values are strings holding the exact digits (a JSON number would be
read back as a float by most clients); NaN and the infinities become null;
BLOBs are base64; intervals are `{"months", "days", "nanoseconds"}`; lists,
structs and maps keep their shape.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    """A result column: its name and DuckDB type."""

    name: str
    type: str


@dataclass(frozen=True)
class QueryResult:
    """A JSON-ready result capped at max_rows."""

    columns: list[Column]
    rows: list[list[Any]]
    truncated: bool
    elapsed_ms: float

    @property
    def row_count(self) -> int:
        """Rows returned (after the cap)."""
        return len(self.rows)


def json_value(value: Any) -> Any:
    """One value as JSON-safe data (see the module docstring)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        micros = value.seconds * 10**6 + value.microseconds
        return {"months": 0, "days": value.days, "nanoseconds": micros * 1000}
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, pa.MonthDayNano):
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # Arrow hands MAP values over as a list of (key, value) pairs.
        return [json_value(v) for v in value]
    return str(value)


def json_rows(batch: pa.RecordBatch) -> list[list[Any]]:
    """A record batch as rows of JSON-safe values."""
    columns = [col.to_pylist() for col in batch.columns]
    return [[json_value(col[i]) for col in columns] for i in range(batch.num_rows)]


class IpcChunks:
    """A write-only file that collects what the Arrow IPC writer emits, for streaming."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        """Keep a copy of `data`."""
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def flush(self) -> None:
        """Nothing to flush: chunks are drained by `take`."""

    def take(self) -> bytes:
        """Everything written since the last call."""
        data = b"".join(self._parts)
        self._parts.clear()
        return data
