"""Which format an upload is: from its Content-Type, else its filename's extension, else its bytes.

A media type or extension we do not know (`application/octet-stream`,
`text/plain`, curl's default form encoding) says nothing, so the bytes decide:
Parquet starts with `PAR1`, an XLSX workbook is a zip (`PK\\x03\\x04`), JSON
starts with `[` and NDJSON with `{` (after any BOM and whitespace), and
anything else is read as CSV.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from python_multipart.multipart import parse_options_header

Format = Literal["csv", "tsv", "parquet", "json", "ndjson", "xlsx"]
FORMATS: tuple[Format, ...] = ("csv", "tsv", "parquet", "json", "ndjson", "xlsx")
# Formats whose malformed files answer invalid_csv (with the line) rather than invalid_file.
TEXT_TABLES: frozenset[Format] = frozenset({"csv", "tsv"})

MEDIA_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/x-csv": "csv",
    "text/tab-separated-values": "tsv",
    "text/tsv": "tsv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
    "application/json": "json",
    "text/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "application/jsonlines": "ndjson",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".xlsx": "xlsx",
}
# Bytes read from the start of a file to recognise it.
HEAD_BYTES = 4096
_BOM = b"\xef\xbb\xbf"
_BLANK = b" \t\r\n"


def from_media_type(content_type: str | bytes | None) -> Format | None:
    """The format a Content-Type names (parameters ignored), or None when it names none we read."""
    if not content_type:
        return None
    raw = content_type.encode("latin-1", "replace") if isinstance(content_type, str) else content_type
    mime, _ = parse_options_header(raw)
    return MEDIA_TYPES.get(mime.decode("latin-1").strip().lower())


def from_filename(filename: str | bytes | None) -> Format | None:
    """The format a file name's extension names, or None."""
    if not filename:
        return None
    text = filename.decode("utf-8", "replace") if isinstance(filename, bytes) else filename
    # Browsers send a bare name, some clients a Windows path: only the last part counts.
    suffix = PurePosixPath(text.replace("\\", "/")).suffix.lower()
    return EXTENSIONS.get(suffix)


def sniff(head: bytes) -> Format:
    """The format of a file that starts with `head`."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "xlsx"
    text = head.removeprefix(_BOM).lstrip(_BLANK)
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        return "ndjson"
    return "csv"


def sniff_file(path: Path) -> Format:
    """The format of the file at `path`, from its first bytes."""
    with open(path, "rb") as fh:
        return sniff(fh.read(HEAD_BYTES))
