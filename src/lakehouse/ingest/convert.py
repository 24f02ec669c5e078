"""An upload to Parquet with DuckDB: format chosen, types inferred, shape checked, zstd on the way out.

Runs on a worker thread (`run_blocking`); each call has its own short-lived
in-memory DuckDB that loads no extension on its own (XLSX loads `excel` from
its package's file), so conversions never share state with the query engine,
whose sandbox keeps extensions off. The readers (`csv_reader`, `json_reader`,
`xlsx_reader`, Parquet here) check what DuckDB would choke on before it reads
and turn DuckDB's errors into sentences; none may name a server path, so
every error leaving `to_parquet` has the spool's paths cut out as well.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lakehouse.catalog import Column, normalize_schema, schema_drift
from lakehouse.catalog.iceberg import field_ids_sql
from lakehouse.errors import InvalidCsv, InvalidFile, InvalidRequest, LakehouseError, TooLarge, Unavailable
from lakehouse.extensions import NO_AUTOLOAD, load_extension
from lakehouse.ingest import csv_reader, json_reader, xlsx_reader
from lakehouse.ingest.csv_reader import literal
from lakehouse.ingest.formats import TEXT_TABLES, Format, sniff_file


@dataclass(frozen=True)
class Converted:
    """The Parquet file's schema and row count, and the format the upload was read as."""

    schema: list[Column]
    rows: int
    format: Format


@dataclass(frozen=True)
class _Reader:
    """How DuckDB reads one upload: the table function, its errors, and which errors a full sample fixes."""

    sql: Callable[[int | None], str]
    invalid: Callable[[duckdb.Error], LakehouseError]
    resample_on: tuple[str, ...] = ()
    skip_blank_rows: bool = False


def to_parquet(
    source: Path,
    target: Path,
    *,
    declared: Format | None = None,
    sheet: str | None = None,
    threads: int,
    memory_limit: str,
    dataset: str,
    current: Sequence[Column] | None = None,
) -> Converted:
    """Convert `source` (in format `declared`, else the one its bytes show) into `target` (Parquet, zstd).

    The columns are written in `current`'s order when the dataset has a version.

    Raises:
        InvalidCsv: a CSV or TSV that is not well-formed UTF-8 with a header and rows;
            `line` names the line DuckDB stopped at when it says.
        InvalidFile: a Parquet, JSON, NDJSON or XLSX file that cannot be read, holds no
            rows, nests too deep, or has columns no dataset may have.
        InvalidRequest: `sheet` given for a file that is not a workbook.
        TooLarge: a JSON value, a workbook's unpacked size or the conversion's memory
            passed its limit.
        SchemaDrift: the columns differ from `current` (checked before writing).
    """
    fmt = declared or sniff_file(source)
    if sheet is not None and fmt != "xlsx":
        raise InvalidRequest(f"sheet applies to XLSX workbooks only; this upload was read as {fmt}")
    spill = target.with_name(target.name + ".spill")
    config: dict[str, str | bool | int | float | list[str]] = {
        **NO_AUTOLOAD,
        "memory_limit": memory_limit,
        "preserve_insertion_order": True,
        "temp_directory": str(spill),
    }
    if threads > 0:
        config["threads"] = threads
    hidden = [str(source), str(source.resolve()), str(target), str(spill), str(source.parent), source.name]
    try:
        with duckdb.connect(":memory:", config=config) as conn:
            conn.execute("SET enable_progress_bar = false")
            reader = _reader(conn, fmt, source, sheet)
            try:
                return _convert(conn, reader, fmt, target, dataset, current, sample_size=None)
            except duckdb.Error as exc:
                if not any(marker in str(exc) for marker in reader.resample_on):
                    raise _as_error(reader, exc) from None
            # A value past the sniffing sample did not fit the guessed type: sniff the whole file.
            try:
                return _convert(conn, reader, fmt, target, dataset, current, sample_size=-1)
            except duckdb.Error as exc:
                raise _as_error(reader, exc) from None
    except LakehouseError as exc:
        raise _without_paths(exc, hidden) from None
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _reader(conn: duckdb.DuckDBPyConnection, fmt: Format, source: Path, sheet: str | None) -> _Reader:
    """The reader for `fmt`, after the checks that must run before DuckDB opens the file."""
    if fmt in TEXT_TABLES:
        delimiter = "\t" if fmt == "tsv" else csv_reader.detect_delimiter(source)
        return _Reader(
            lambda sample: csv_reader.reader_sql(source, delimiter, sample_size=sample),
            lambda exc: csv_reader.invalid_csv(conn, source, delimiter, exc),
            csv_reader.CAST_ERRORS,
        )
    if fmt in ("json", "ndjson"):
        json_reader.check_nesting(source)
        return _Reader(
            lambda sample: json_reader.reader_sql(source, sample_size=sample),
            json_reader.invalid_json,
            json_reader.CAST_ERRORS,
        )
    if fmt == "xlsx":
        sheets = xlsx_reader.check_workbook(source, sheet)
        try:
            load_extension(conn, "excel")
        except (RuntimeError, duckdb.Error) as exc:
            raise Unavailable(f"XLSX ingest is not available here: {exc}") from None
        chosen = sheet if sheet is not None else sheets[0]
        return _Reader(
            lambda _: xlsx_reader.reader_sql(source, chosen), xlsx_reader.invalid_xlsx, skip_blank_rows=True
        )
    return _Reader(lambda _: f"read_parquet({literal(str(source))})", _invalid_parquet)


def _convert(
    conn: duckdb.DuckDBPyConnection,
    reader: _Reader,
    fmt: Format,
    target: Path,
    dataset: str,
    current: Sequence[Column] | None,
    sample_size: int | None,
) -> Converted:
    source = reader.sql(sample_size)
    described = conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    schema = _checked_schema([Column(str(row[0]), str(row[1])) for row in described], fmt)
    if current is not None:
        drift = schema_drift(dataset, current, schema)
        if drift is not None:
            raise drift
        # Same columns, maybe in another order: write them in the dataset's order.
        schema = list(current)
    names = [_identifier(c.name) for c in schema]
    relation = f"SELECT {', '.join(names)} FROM {source}"
    if reader.skip_blank_rows:
        relation += " WHERE " + " OR ".join(f"{name} IS NOT NULL" for name in names)
    copied = conn.execute(
        f"COPY ({relation}) TO {literal(str(target))} (FORMAT parquet, COMPRESSION zstd, "
        # The Iceberg field ids of the dataset's table, so engines that match columns by id read it.
        f"{field_ids_sql(schema)})"
    ).fetchone()
    rows = int(copied[0]) if copied else 0
    if rows == 0:
        if fmt in TEXT_TABLES:
            raise InvalidCsv("the CSV has a header but no rows", line=2)
        raise InvalidFile(f"the {_NAMES[fmt]} holds no rows")
    return Converted(schema, rows, fmt)


def _checked_schema(schema: list[Column], fmt: Format) -> list[Column]:
    """The columns in canonical form, refused as the upload's fault when no dataset may have them."""
    try:
        return list(normalize_schema(schema))
    except InvalidRequest as exc:
        if fmt in TEXT_TABLES:
            raise InvalidCsv(
                f"the CSV's header cannot name a dataset's columns: {exc.message}", line=1
            ) from None
        raise InvalidFile(f"the {_NAMES[fmt]}'s columns cannot be a dataset's: {exc.message}") from None


def _as_error(reader: _Reader, exc: duckdb.Error) -> LakehouseError:
    if isinstance(exc, duckdb.OutOfMemoryException):
        return TooLarge(
            "converting this file needs more memory than [ingestd] memory_limit allows "
            "(very many columns, or very large values)"
        )
    return reader.invalid(exc)


def _invalid_parquet(exc: duckdb.Error) -> LakehouseError:
    message = str(exc).strip()
    first = message.splitlines()[0] if message else "unknown error"
    if "magic bytes" in first or "too small" in first:
        return InvalidFile("the file is not a complete Parquet file (its footer is missing or damaged)")
    return InvalidFile("the Parquet file cannot be read: " + first.split(" Error: ", 1)[-1])


def _without_paths(exc: LakehouseError, hidden: list[str]) -> LakehouseError:
    """`exc` with every server path it holds cut out (DuckDB puts file names in its messages)."""
    cut = sorted((h for h in hidden if h), key=len, reverse=True)
    message = exc.message
    for path in cut:
        message = message.replace(f'"{path}"', "the upload").replace(path, "the upload")
    if message != exc.message:
        exc.message = message
        exc.args = (message,)
    return exc


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_NAMES: dict[Format, str] = {
    "csv": "CSV",
    "tsv": "TSV",
    "parquet": "Parquet file",
    "json": "JSON",
    "ndjson": "NDJSON",
    "xlsx": "sheet",
}
