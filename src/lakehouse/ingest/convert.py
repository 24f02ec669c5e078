"""CSV to Parquet with DuckDB: types sniffed, rows checked strictly, zstd on the way out.

Runs on a worker thread (`run_blocking`); each call has its own short-lived
in-memory DuckDB, so conversions never share state with the query engine.
"""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lakehouse.catalog import Column, schema_drift
from lakehouse.catalog.iceberg import field_ids_sql
from lakehouse.errors import InvalidCsv

_LINE = re.compile(r"CSV Error on Line: (\d+)")
_NOISE = ("CSV Error on Line", "Original Line", "Possible", "LINE ", "^", "*")
_CAST = ("Could not convert", "Error when converting column")


@dataclass(frozen=True)
class Converted:
    """The Parquet file's schema and row count."""

    schema: list[Column]
    rows: int


def reader_sql(path: Path, *, sample_size: int | None = None) -> str:
    """`read_csv` over an RFC 4180 file: comma, double quotes, header row, strict row shape."""
    options = [
        "header = true",
        "skip = 0",
        "delim = ','",
        "quote = '\"'",
        "escape = '\"'",
        "comment = ''",
        "strict_mode = true",
        "null_padding = false",
        "encoding = 'utf-8'",
    ]
    if sample_size is not None:
        options.append(f"sample_size = {sample_size}")
    return f"read_csv({_literal(str(path))}, {', '.join(options)})"


def csv_to_parquet(
    source: Path,
    target: Path,
    *,
    threads: int,
    memory_limit: str,
    dataset: str,
    current: Sequence[Column] | None = None,
) -> Converted:
    """Convert `source` (CSV) into `target` (Parquet, zstd), in `current`'s column order.

    Raises:
        InvalidCsv: the file is not a well-formed UTF-8 CSV with a header and rows;
            `line` names the line DuckDB stopped at when it says.
        SchemaDrift: the sniffed columns differ from `current` (checked before writing).
    """
    spill = target.with_name(target.name + ".spill")
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": memory_limit,
        "preserve_insertion_order": True,
        "temp_directory": str(spill),
    }
    if threads > 0:
        config["threads"] = threads
    try:
        with duckdb.connect(":memory:", config=config) as conn:
            conn.execute("SET enable_progress_bar = false")
            try:
                return _convert(conn, source, target, dataset, current, sample_size=None)
            except duckdb.Error as exc:
                if not any(marker in str(exc) for marker in _CAST):
                    raise _invalid(conn, source, exc) from None
            # A value past the sniffing sample did not fit the guessed type: sniff the whole file.
            try:
                return _convert(conn, source, target, dataset, current, sample_size=-1)
            except duckdb.Error as exc:
                raise _invalid(conn, source, exc) from None
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _convert(
    conn: duckdb.DuckDBPyConnection,
    source: Path,
    target: Path,
    dataset: str,
    current: Sequence[Column] | None,
    sample_size: int | None,
) -> Converted:
    relation = f"SELECT * FROM {reader_sql(source, sample_size=sample_size)}"
    described = conn.execute(f"DESCRIBE {relation}").fetchall()
    schema = [Column(str(row[0]), str(row[1])) for row in described]
    if current is not None:
        drift = schema_drift(dataset, current, schema)
        if drift is not None:
            raise drift
        # Same columns, maybe in another order: write them in the dataset's order.
        schema = list(current)
        names = ", ".join('"' + c.name.replace('"', '""') + '"' for c in schema)
        relation = f"SELECT {names} FROM {reader_sql(source, sample_size=sample_size)}"
    copied = conn.execute(
        f"COPY ({relation}) TO {_literal(str(target))} (FORMAT parquet, COMPRESSION zstd, "
        # The Iceberg field ids of the dataset's table, so id-matching engines read the file.
        f"{field_ids_sql(schema)})"
    ).fetchone()
    rows = int(copied[0]) if copied else 0
    if rows == 0:
        raise InvalidCsv("the CSV has a header but no rows", line=2)
    return Converted(schema, rows)


def _invalid(conn: duckdb.DuckDBPyConnection, source: Path, exc: duckdb.Error) -> InvalidCsv:
    """The error as invalid_csv, with the line: from DuckDB's message, else from a strict re-read."""
    message = str(exc).strip()
    line = _line_of(message)
    if line is None and "sniffing" in message:
        # The sniffer reports no line; a plain all-text read with the header's width does.
        line, message = _strict_reread(conn, source, message)
    if line is None and "CSV Error" in message:
        # DuckDB knew the line but its message lost it (seen when another native library
        # loaded first): find the first bad row ourselves.
        line = _scan_for_line(source)
    summary = _summary(message)
    where = f" at line {line}" if line is not None else ""
    return InvalidCsv(f"the CSV cannot be read{where}: {summary}", line=line)


def _strict_reread(conn: duckdb.DuckDBPyConnection, source: Path, fallback: str) -> tuple[int | None, str]:
    try:
        with open(source, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error):
        return 1, "the header line is not valid UTF-8 CSV"
    if not header:
        return 1, "the first line holds no column names"
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
    sql = (
        f"SELECT count(*) FROM read_csv({_literal(str(source))}, auto_detect = false, header = true, "
        f"delim = ',', quote = '\"', escape = '\"', strict_mode = true, null_padding = false, "
        f"columns = {columns})"
    )
    try:
        conn.execute(sql).fetchall()
    except duckdb.Error as exc:
        return _line_of(str(exc)), str(exc).strip()
    return None, fallback


def _scan_for_line(source: Path) -> int | None:
    """The line of the first row that is not valid UTF-8 CSV of the header's width."""
    with open(source, "rb") as raw:
        for number, physical in enumerate(raw, start=1):
            try:
                physical.decode("utf-8")
            except UnicodeDecodeError:
                return number
    width = None
    line = 1
    with open(source, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            for row in reader:
                if width is None:
                    width = len(row)
                elif row and len(row) != width:
                    return line
                line = reader.line_num + 1
        except csv.Error:
            return line
    return None


def _line_of(message: str) -> int | None:
    found = _LINE.search(message)
    return int(found.group(1)) if found else None


def _summary(message: str) -> str:
    """The telling sentence of DuckDB's long CSV error."""
    for ln in message.splitlines():
        ln = ln.strip().removeprefix("Invalid Input Error: ")
        if ln and not ln.startswith(_NOISE):
            return ln
    return "a row does not match the header, a quote is never closed, or the text is not UTF-8"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
