"""Query results as the contract's JSON, or as an Arrow IPC stream.

JSON choices: integers of every width, HUGEINT and UHUGEINT included (so
`sum(bigint_col)`), are JSON integers with every digit (JSON puts no limit on
a number's size; clients that read numbers as doubles may round past 2**53).
DECIMAL values are strings holding the exact digits (a JSON number would be
read back as a float by most clients, losing the scale). Dates, times and
timestamps are ISO 8601 strings; NaN and the infinities become null; BLOBs
are base64; intervals are `{"months", "days", "nanoseconds"}`; lists, structs
and maps (as `[key, value]` pairs) keep their shape.

Arrow carries HUGEINT and UHUGEINT as decimal128(38, 0), the same as
DECIMAL(38, 0), so the DuckDB column types (not the Arrow ones) decide which
values are integers.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from duckdb.sqltypes import DuckDBPyType

Render = Callable[[Any], Any]


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


def renderer(kind: DuckDBPyType) -> Render:
    """How values of the DuckDB type `kind` become JSON: `json_value`, 128-bit integers as ints."""
    ident = kind.id
    if ident == "hugeint":
        return _nullable(int)
    if ident == "uhugeint":
        # Arrow hands it over as a signed 128-bit decimal: values past 2**127 come back negative.
        return _nullable(lambda value: int(value) % 2**128)
    nested = ident in {"list", "array", "struct", "map"}
    typed = (
        [(name, child) for name, child in kind.children if isinstance(child, DuckDBPyType)] if nested else []
    )
    inner = [renderer(child) for _, child in typed]
    if all(render is json_value for render in inner):
        return json_value
    if ident in {"list", "array"}:
        return _nullable(lambda value: [inner[0](item) for item in value])
    if ident == "struct":
        fields = {name: render for (name, _), render in zip(typed, inner, strict=True)}
        return _nullable(lambda value: {str(k): fields[k](v) for k, v in value.items()})
    # A map: Arrow gives (key, value) pairs.
    return _nullable(lambda value: [[inner[0](k), inner[1](v)] for k, v in value])


def _nullable(render: Render) -> Render:
    return lambda value: None if value is None else render(value)


def json_rows(batch: pa.RecordBatch, types: Sequence[DuckDBPyType] | None = None) -> list[list[Any]]:
    """A record batch as rows of JSON-safe values; `types` are its columns' DuckDB types."""
    renders = [renderer(kind) for kind in types] if types is not None else [json_value] * batch.num_columns
    columns = [
        [render(v) for v in col.to_pylist()] for render, col in zip(renders, batch.columns, strict=True)
    ]
    return [[col[i] for col in columns] for i in range(batch.num_rows)]


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
