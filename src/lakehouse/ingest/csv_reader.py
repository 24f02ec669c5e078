"""CSV and TSV for DuckDB: the delimiter detected from the first lines, rows checked strictly.

DuckDB's own sniffer is not used for the delimiter: it may settle on a
quote-less one-column reading of a `;` file. Instead the first lines are
split with each of `,` tab `;` `|`; the delimiter that gives the header more
than one column and every sampled row the header's width wins (ties go to
the earlier one in that list), so the choice depends only on the bytes.
Everything else stays RFC 4180 and strict: double quotes, a header row, a
row of another width is an error that names its line.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import duckdb

from lakehouse.errors import InvalidCsv

DELIMITERS = (",", "\t", ";", "|")
SNIFF_BYTES = 256 * 1024
SNIFF_ROWS = 50
_BOM = b"\xef\xbb\xbf"
_LINE = re.compile(r"CSV Error on Line: (\d+)")
_NOISE = ("CSV Error on Line", "Original Line", "Possible", "LINE ", "^", "*")
# A value past the sniffing sample did not fit the guessed type.
CAST_ERRORS = ("Could not convert", "Error when converting column")


def detect_delimiter(path: Path) -> str:
    """The delimiter of the CSV at `path`: `,` unless another splits its first lines more consistently."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES).removeprefix(_BOM)
    if len(head) >= SNIFF_BYTES - len(_BOM) and b"\n" in head:
        head = head[: head.rindex(b"\n")]  # whole lines only
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = head[: exc.start].decode("utf-8")  # DuckDB names the bad line later
    best, best_key = ",", (False, 1, 0)
    for order, delimiter in enumerate(DELIMITERS):
        rows = _sample(text, delimiter)
        width = len(rows[0]) if rows else 0
        if width < 2:
            continue
        key = (all(len(row) == width for row in rows[1:]), width, -order)
        if key > best_key:
            best, best_key = delimiter, key
    return best


def _sample(text: str, delimiter: str) -> list[list[str]]:
    rows: list[list[str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"')
    try:
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) >= SNIFF_ROWS:
                break
    except csv.Error:
        pass
    return rows


def reader_sql(path: Path, delimiter: str = ",", *, sample_size: int | None = None) -> str:
    """`read_csv` over an RFC 4180 file: this delimiter, double quotes, header row, strict row shape."""
    options = [
        "header = true",
        "skip = 0",
        f"delim = {literal(delimiter)}",
        "quote = '\"'",
        "escape = '\"'",
        "comment = ''",
        "strict_mode = true",
        "null_padding = false",
        "encoding = 'utf-8'",
    ]
    if sample_size is not None:
        options.append(f"sample_size = {sample_size}")
    return f"read_csv({literal(str(path))}, {', '.join(options)})"


def invalid_csv(
    conn: duckdb.DuckDBPyConnection, source: Path, delimiter: str, exc: duckdb.Error
) -> InvalidCsv:
    """The error as invalid_csv, with the line: from DuckDB's message, else from a strict re-read."""
    message = str(exc).strip()
    line = _line_of(message)
    if line is None and "sniffing" in message:
        # The sniffer reports no line; a plain all-text read with the header's width does.
        line, message = _strict_reread(conn, source, delimiter, message)
    if line is None and "CSV Error" in message:
        # DuckDB knew the line but its message lost it (seen when another native library
        # loaded first): find the first bad row ourselves.
        line = _scan_for_line(source, delimiter)
    summary = _summary(message)
    where = f" at line {line}" if line is not None else ""
    return InvalidCsv(f"the CSV cannot be read{where}: {summary}", line=line)


def _strict_reread(
    conn: duckdb.DuckDBPyConnection, source: Path, delimiter: str, fallback: str
) -> tuple[int | None, str]:
    try:
        with open(source, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh, delimiter=delimiter), [])
    except (UnicodeDecodeError, csv.Error):
        return 1, "the header line is not valid UTF-8 CSV"
    if not header:
        return 1, "the first line holds no column names"
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
    sql = (
        f"SELECT count(*) FROM read_csv({literal(str(source))}, auto_detect = false, header = true, "
        f"delim = {literal(delimiter)}, quote = '\"', escape = '\"', strict_mode = true, "
        f"null_padding = false, columns = {columns})"
    )
    try:
        conn.execute(sql).fetchall()
    except duckdb.Error as exc:
        return _line_of(str(exc)), str(exc).strip()
    return None, fallback


def _scan_for_line(source: Path, delimiter: str) -> int | None:
    """The line of the first row that is not valid UTF-8 CSV of the header's width."""
    with open(source, "rb") as raw:
        for number, physical in enumerate(raw, start=1):
            try:
                physical.decode("utf-8")
            except UnicodeDecodeError:
                return number
    width = None
    line = 1
    with open(source, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
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
    """The telling sentence of DuckDB's long CSV error (never one naming the file)."""
    for ln in message.splitlines():
        ln = ln.strip().removeprefix("Invalid Input Error: ")
        if ln.startswith("Error when sniffing file"):
            break  # it names the server's spool file, and says nothing else
        if ln and not ln.startswith(_NOISE):
            return ln
    return "a row does not match the header, a quote is never closed, or the text is not UTF-8"


def literal(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
