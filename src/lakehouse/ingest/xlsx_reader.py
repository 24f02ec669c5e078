"""XLSX workbooks for DuckDB's excel extension: checked as a zip first, one sheet read as a table.

The extension loops forever on bytes that start like a zip but have no
central directory, so Python's zipfile opens the workbook first; it also
bounds what the workbook unpacks to (a zip bomb would otherwise keep the
converter busy for hours) and lists the sheets for the error that names an
unknown one. Every XML part is streamed through `xlsx_extent` too, so a
cell far beyond Excel's bounds is refused before DuckDB sizes a sheet by
it. Rows of a sheet are read past blank rows (the extension would
stop at the first one and drop the rest silently); rows that are blank in
every column are not data and are left out.
"""

from __future__ import annotations

import html
import re
import zipfile
import zlib
from pathlib import Path

import duckdb

from lakehouse.catalog.manifest import MAX_COLUMNS
from lakehouse.errors import InvalidFile, LakehouseError, TooLarge
from lakehouse.ingest.csv_reader import literal
from lakehouse.ingest.xlsx_extent import check_extent

# What a workbook may unpack to: a generous ratio to its packed size, with a floor for small files.
MAX_RATIO = 200
MIN_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_UNPACKED_BYTES = 16 * 1024 * 1024 * 1024
MAX_WORKBOOK_XML = 4 * 1024 * 1024
REQUIRED = ("[Content_Types].xml", "xl/workbook.xml")
_SHEET = re.compile(rb"<(?:\w+:)?sheet\b[^>]*?\bname=\"([^\"]*)\"")


def check_workbook(path: Path, sheet: str | None) -> list[str]:
    """The workbook's sheet names, after checking it is a zip DuckDB can safely read.

    The sheet DuckDB will read (`sheet`, else the first) must reach no farther
    than Excel's bounds and the dataset's column cap.

    Raises:
        InvalidFile: not a zip, not a workbook, no sheet by the name `sheet`,
            or a cell of the sheet beyond those bounds.
        TooLarge: the workbook unpacks to more than its size allows.
    """
    try:
        with zipfile.ZipFile(path) as workbook:
            entries = workbook.infolist()
            names = {entry.filename for entry in entries}
            missing = [name for name in REQUIRED if name not in names]
            if missing:
                raise InvalidFile(f"the zip is not an XLSX workbook: it has no {missing[0]}")
            _check_size(path.stat().st_size, sum(entry.file_size for entry in entries))
            info = workbook.getinfo("xl/workbook.xml")
            if info.file_size > MAX_WORKBOOK_XML:
                raise InvalidFile("the workbook's sheet list (xl/workbook.xml) is implausibly large")
            listing = workbook.read(info)
            sheets = _sheet_names(listing)
            if len(names) != len(entries):
                raise InvalidFile(
                    "the zip holds two parts of one name, so readers could disagree on the sheet"
                )
            if sheets and (sheet is None or sheet in sheets):
                # Every XML part, not only the one the sheet's relationship names: which part
                # the excel extension reads is its own reading of the workbook, and a crafted
                # one (two sheets of one name, a duplicate relationship id, odd quoting) could
                # make that differ from any reading here.
                for entry in entries:
                    if _xml_part(workbook, entry):
                        with workbook.open(entry) as stream:
                            check_extent(stream, MAX_COLUMNS)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        ValueError,
        NotImplementedError,
    ) as exc:
        raise InvalidFile(f"the file is not a readable XLSX workbook (a zip archive): {exc}") from None
    if not sheets:
        raise InvalidFile("the workbook has no sheets")
    if sheet is not None and sheet not in sheets:
        listed = ", ".join(repr(s) for s in sheets[:20])
        raise InvalidFile(
            f"the workbook has no sheet {sheet!r}; its sheets are {listed}", sheets=sheets[:100]
        )
    return sheets


def _xml_part(workbook: zipfile.ZipFile, entry: zipfile.ZipInfo) -> bool:
    """Whether a part could be XML (a sheet among them): it opens with markup, or in UTF-16/32."""
    if entry.is_dir():
        return False
    with workbook.open(entry) as stream:
        head = stream.read(64)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head[:4]:
        return True  # `check_extent` refuses a sheet not in UTF-8
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def _sheet_names(xml: bytes) -> list[str]:
    return [html.unescape(m.decode("utf-8", "replace")) for m in _SHEET.findall(xml)]


def _check_size(packed: int, unpacked: int) -> None:
    cap = min(MAX_UNPACKED_BYTES, max(MIN_UNPACKED_BYTES, MAX_RATIO * packed))
    if unpacked > cap:
        raise TooLarge(
            f"the workbook unpacks to {unpacked} bytes, more than the {cap} a {packed}-byte upload may",
            limit=cap,
        )


def reader_sql(path: Path, sheet: str) -> str:
    """`read_xlsx` over one sheet, past blank rows, types inferred."""
    return f"read_xlsx({literal(str(path))}, sheet = {literal(sheet)}, stop_at_empty = false)"


def invalid_xlsx(exc: duckdb.Error) -> LakehouseError:
    """The excel extension's error as a sentence that names no file."""
    message = str(exc).strip()
    first = message.splitlines()[0] if message else "unknown error"
    first = re.sub(r'\s*in xlsx file(?: "[^"]*")?', "", first)
    first = first.split(" Error: ", 1)[-1]
    if "No rows found" in first:
        return InvalidFile("the sheet holds no rows")
    return InvalidFile(f"the XLSX workbook cannot be read: {first}")
